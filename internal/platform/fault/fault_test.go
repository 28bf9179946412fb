package fault_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"folio/internal/platform/fault"
)

func TestKindOf(t *testing.T) {
	cause := errors.New("dial tcp: refused")
	tests := []struct {
		name string
		err  error
		want fault.Kind
	}{
		{"nil", nil, fault.Internal},
		{"plain", errors.New("x"), fault.Internal},
		{"new", fault.New(fault.NotFound, "none"), fault.NotFound},
		{"wrap", fault.Wrap(fault.Unavailable, cause, "down"), fault.Unavailable},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", fault.New(fault.Conflict, "taken"))), fault.Conflict},
		{"fields", (&fault.Fields{{Field: "title", Message: "is required"}}).Err(), fault.Invalid},
	}
	for _, tt := range tests {
		if got := fault.KindOf(tt.err); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestError(t *testing.T) {
	cause := errors.New("dial tcp: refused")
	err := fault.Wrap(fault.Unavailable, cause, "the peer is down")
	if got, want := err.Error(), "the peer is down: dial tcp: refused"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is not in the chain")
	}
	if got, want := fault.New(fault.Invalid, "bad %s", "isbn").Error(), "bad isbn"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	var fields fault.Fields
	if fields.Err() != nil {
		t.Error("no fields: got an error, want nil")
	}
	fields.Add("title", "is required")
	fields.Add("genre", "must be a slug")
	var fe *fault.Error
	if !errors.As(fields.Err(), &fe) || len(fe.Fields) != 2 || fe.Fields[1].Field != "genre" {
		t.Errorf("got %v, want an Invalid error naming title and genre", fields.Err())
	}
}

// notFoundHere is an error of a lower layer that only a registered classifier knows.
type notFoundHere struct{}

func (notFoundHere) Error() string { return "no such row" }

// TestClassify: the first *Error in the chain wins, unless it is Internal (nobody
// classified it); then, or with none, a registered classifier may.
func TestClassify(t *testing.T) {
	fault.RegisterClassifier(func(err error) *fault.Error {
		if errors.As(err, new(notFoundHere)) {
			return fault.Wrap(fault.NotFound, err, "none here")
		}
		return nil
	})
	tests := []struct {
		name string
		err  error
		want fault.Kind
	}{
		{"nil", nil, fault.Internal},
		{"unknown", errors.New("x"), fault.Internal},
		{"classifier", fmt.Errorf("get: %w", notFoundHere{}), fault.NotFound},
		{"own kind first", fault.Wrap(fault.Conflict, notFoundHere{}, "taken"), fault.Conflict},
		{"internal falls through", fault.Wrap(fault.Internal, notFoundHere{}, "oops"), fault.NotFound},
	}
	for _, tt := range tests {
		if got := fault.KindOf(tt.err); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	if fe := fault.Classify(fault.Wrap(fault.Internal, errors.New("x"), "oops")); fe == nil || fe.Kind != fault.Internal {
		t.Errorf("an Internal error nobody else knows: got %v, want it back", fe)
	}
}

func TestKindString(t *testing.T) {
	seen := map[string]fault.Kind{}
	for k := fault.Internal; k <= fault.Overloaded; k++ {
		name := k.String()
		if name == "" || strings.HasPrefix(name, "fault.Kind(") {
			t.Errorf("kind %d has no name", int(k))
		}
		if other, dup := seen[name]; dup {
			t.Errorf("kinds %d and %d are both named %q", int(other), int(k), name)
		}
		seen[name] = k
	}
	if got := fault.Kind(99).String(); got != "fault.Kind(99)" {
		t.Errorf("Kind(99).String() = %q", got)
	}
}
