package book

import (
	"context"
	"log/slog"
)

// AuthorStatus is what the book database knows about an author id.
type AuthorStatus int

const (
	AuthorUnseen  AuthorStatus = iota // neither an event nor the author service told of it
	AuthorKnown                       // it exists
	AuthorDeleted                     // it existed and was deleted: it never comes back
)

// KnownAuthors is the part of the book database that keeps the author ids learnt from
// author events and from the author service's earlier answers.
type KnownAuthors interface {
	AuthorStatus(ctx context.Context, id string) (AuthorStatus, error)
	// RememberAuthor records that the author id exists, unless it was deleted.
	RememberAuthor(ctx context.Context, id string) error
}

// AuthorDirectory answers Exists from the known authors and asks the author service
// only about ids it has not seen. An id an author.deleted event named is unknown for
// good, without asking.
type AuthorDirectory struct {
	known  KnownAuthors
	remote Authors
	log    *slog.Logger
}

var _ Authors = (*AuthorDirectory)(nil)

// NewAuthorDirectory returns a directory kept in known that falls back to remote.
func NewAuthorDirectory(known KnownAuthors, remote Authors, log *slog.Logger) *AuthorDirectory {
	return &AuthorDirectory{known: known, remote: remote, log: log}
}

// Exists reports whether the author exists. Errors: Unavailable when the author
// service is needed and cannot answer.
func (d *AuthorDirectory) Exists(ctx context.Context, id string) (bool, error) {
	switch st, err := d.known.AuthorStatus(ctx, id); {
	case err != nil:
		return false, err
	case st == AuthorKnown:
		return true, nil
	case st == AuthorDeleted:
		return false, nil
	}
	ok, err := d.remote.Exists(ctx, id)
	if err != nil || !ok {
		return ok, err
	}
	if err := d.known.RememberAuthor(ctx, id); err != nil {
		// The answer stands; the next request for this author asks again.
		d.log.WarnContext(ctx, "remember author", "err", err)
	}
	return true, nil
}
