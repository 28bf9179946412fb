package broker

import (
	"slices"
	"testing"
)

func TestParseEnvelope(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"whole", `{"id":"e1","type":"book.created","occurred_at":"2026-12-02T10:00:00Z","data":{"id":"b1"}}`, true},
		{"not JSON", `{"id":`, false},
		{"no id", `{"type":"book.created","data":{}}`, false},
		{"no type", `{"id":"e1","data":{}}`, false},
		{"no data", `{"id":"e1","type":"book.created"}`, false},
		{"null data", `{"id":"e1","type":"book.created","data":null}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := ParseEnvelope([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseEnvelope(%s) = %+v, %v; want ok=%v", tc.body, env, err, tc.ok)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	got := Subjects("folio", "book.created", "book.deleted")
	if want := []string{"folio.book.created", "folio.book.deleted"}; !slices.Equal(got, want) {
		t.Errorf("Subjects = %q, want %q", got, want)
	}
}
