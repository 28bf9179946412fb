// Package id makes and checks the ids Folio gives its resources: time-ordered
// UUIDs (version 7) in canonical lower-case form.
package id

import "github.com/google/uuid"

// New returns a new time-ordered id.
func New() string { return uuid.Must(uuid.NewV7()).String() }

// Valid reports whether s is an id as Folio issues them: a UUID in canonical
// lower-case form. Anything else can name no resource.
func Valid(s string) bool {
	if len(s) != 36 {
		return false
	}
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
