// Package fault classifies the errors Folio's services return, so that one place
// (package problem) can turn them into HTTP answers without the domain knowing HTTP.
package fault

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Kind says what went wrong, in terms a client can act on.
type Kind int

// The kinds of error a service reports. Internal is the zero value on purpose:
// an error nobody classified is never shown to a client.
const (
	Internal           Kind = iota
	Malformed               // the request cannot be read (bad JSON, bad query parameter): 400
	Invalid                 // the request reads but breaks a rule: 422
	NotFound                // 404
	Conflict                // the request clashes with the current state: 409
	PreconditionFailed      // If-Match did not match: 412
	Unavailable             // a peer this request needs cannot answer now: 503
	TooLarge                // the request body is over the limit: 413
	UnsupportedMedia        // the request body is not of a type the route reads: 415
	// StorageUnavailable: the service's own database cannot take the request now
	// (its disk is full, it is out of memory or connections) and did nothing. It
	// passes once an operator or the load frees the resource: 503, like
	// Unavailable, but no peer is at fault.
	StorageUnavailable
	Unauthorized // the credentials or the token identify nobody: 401
	Forbidden    // the caller is known but may not do this: 403
	// RateLimited: the caller sent too many requests of this kind; RetryAfter says
	// when its budget allows the next: 429.
	RateLimited
	// Overloaded: the service has too much of this work in flight to take more now
	// (password hashing, say) and did nothing: 503 with RetryAfter.
	Overloaded
)

var kindNames = [...]string{
	Internal: "internal", Malformed: "malformed", Invalid: "invalid", NotFound: "not found",
	Conflict: "conflict", PreconditionFailed: "precondition failed", Unavailable: "unavailable",
	TooLarge: "too large", UnsupportedMedia: "unsupported media", StorageUnavailable: "storage unavailable",
	Unauthorized: "unauthorized", Forbidden: "forbidden", RateLimited: "rate limited", Overloaded: "overloaded",
}

// String names the kind, for logs and test failures.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("fault.Kind(%d)", int(k))
}

// FieldError names one broken field of a request and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with a kind and a message that is safe to show to clients.
type Error struct {
	Kind    Kind
	Message string
	Fields  []FieldError
	Err     error // the cause, for logs only
	// RetryAfter is how long a client should wait before it tries again, for the
	// kinds that pass by themselves; zero leaves it to the transport's default.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind Classify finds for err, or Internal.
func KindOf(err error) Kind {
	if fe := Classify(err); fe != nil {
		return fe.Kind
	}
	return Internal
}

// Classify returns what err is: the first *Error in its chain, unless that is of
// kind Internal (nobody classified it), in which case, or when the chain has none,
// what a registered Classifier makes of err; nil when nothing knows it.
func Classify(err error) *Error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) && fe.Kind != Internal {
		return fe
	}
	classifiers.RLock()
	defer classifiers.RUnlock()
	for _, c := range classifiers.list {
		if ce := c(err); ce != nil {
			return ce
		}
	}
	return fe
}

// A Classifier recognises errors of a lower layer that carry no *Error, a database
// driver's say, and returns their classification with a client-safe message and
// err as the cause; nil for an error it does not know.
type Classifier func(err error) *Error

var classifiers struct {
	sync.RWMutex
	list []Classifier
}

// RegisterClassifier adds c to those Classify consults. The package that knows
// a kind of error registers its classifier when it is loaded (package sqldb does,
// for its drivers' errors), so that an error of that kind is classified wherever
// it surfaces, wrapped with %w, without fault importing the drivers or every
// caller converting it.
func RegisterClassifier(c Classifier) {
	classifiers.Lock()
	defer classifiers.Unlock()
	classifiers.list = append(classifiers.list, c)
}

// New returns an error of the given kind with a client-safe message.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of the given kind whose cause is err; only message reaches clients.
func Wrap(kind Kind, err error, message string) *Error {
	return &Error{Kind: kind, Message: message, Err: err}
}

// Fields collects field errors while a request is validated.
type Fields []FieldError

// Add records that field breaks a rule.
func (f *Fields) Add(field, message string) { *f = append(*f, FieldError{field, message}) }

// Err returns nil when no field was added, else an Invalid error naming every field.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return &Error{Kind: Invalid, Message: "the request breaks one or more rules", Fields: f}
}
