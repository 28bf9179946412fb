// Package problem writes errors as RFC 9457 problem+json documents, the one error
// format every Folio service speaks.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/logging"
)

// ContentType is the media type of every error response.
const ContentType = "application/problem+json"

// Type URIs are relative references; their last segment is the stable part clients match on.
const (
	TypeMalformed           = "/problems/malformed-request"
	TypeValidation          = "/problems/validation"
	TypeNotFound            = "/problems/not-found"
	TypeConflict            = "/problems/conflict"
	TypePreconditionFailed  = "/problems/precondition-failed"
	TypeUpstreamUnavailable = "/problems/upstream-unavailable"
	TypeStorageUnavailable  = "/problems/storage-unavailable"
	TypeTooLarge            = "/problems/payload-too-large"
	TypeUnsupportedMedia    = "/problems/unsupported-media-type"
	TypeMethodNotAllowed    = "/problems/method-not-allowed"
	TypeInternal            = "/problems/internal"
	TypeUnauthorized        = "/problems/unauthorized"
	TypeForbidden           = "/problems/forbidden"
	TypeTooManyRequests     = "/problems/too-many-requests"
	TypeBusy                = "/problems/busy"
)

// Problem is an RFC 9457 problem details document.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors is left out when nil but sent when empty ([]): a 422 always carries it.
	Errors []fault.FieldError `json:"errors,omitzero"`
	// RetryAfter, on a 503, is sent as Retry-After (rounded up to whole seconds);
	// zero sends the default of one second.
	RetryAfter time.Duration `json:"-"`
}

// Write sends p, filling in the instance from the request path.
func Write(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Status == http.StatusUnprocessableEntity && p.Errors == nil {
		p.Errors = []fault.FieldError{}
	}
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("ETag")
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}

// FromError maps err to a problem. Errors of kind Internal get a generic message and
// are logged with their cause; every other kind shows only its safe message. err is
// classified by fault.Classify, so that a database driver's error that package
// sqldb knows (a full disk, say) gets its kind without the caller converting it.
func FromError(r *http.Request, log *slog.Logger, err error) Problem {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client hung up; nobody reads this answer and nothing failed on our side.
		return ClientClosed()
	}
	fe := fault.Classify(err)
	if fe == nil || fe.Kind == fault.Internal {
		if log != nil {
			log.ErrorContext(r.Context(), "internal error", "err", err, "method", r.Method, "path", r.URL.Path)
		}
		return Problem{Type: TypeInternal, Status: http.StatusInternalServerError,
			Detail: "the server could not complete the request; it has been logged"}
	}
	if log != nil {
		switch fe.Kind {
		case fault.Unavailable:
			// The client sees only that a peer is unavailable; the log keeps why.
			log.WarnContext(r.Context(), "upstream unavailable", "err", err, "method", r.Method, "path", r.URL.Path)
		case fault.StorageUnavailable:
			// It lasts until an operator frees disk space (or the database's load
			// drops): the log says which, the client only that it may retry.
			log.ErrorContext(r.Context(), "storage unavailable", "err", err, "method", r.Method, "path", r.URL.Path)
		}
	}
	p := Problem{Detail: fe.Message, Errors: fe.Fields, RetryAfter: fe.RetryAfter}
	switch fe.Kind {
	case fault.Malformed:
		p.Type, p.Status = TypeMalformed, http.StatusBadRequest
	case fault.Invalid:
		p.Type, p.Status = TypeValidation, http.StatusUnprocessableEntity
	case fault.NotFound:
		p.Type, p.Status = TypeNotFound, http.StatusNotFound
	case fault.Conflict:
		p.Type, p.Status = TypeConflict, http.StatusConflict
	case fault.PreconditionFailed:
		p.Type, p.Status = TypePreconditionFailed, http.StatusPreconditionFailed
	case fault.Unavailable:
		p.Type, p.Status = TypeUpstreamUnavailable, http.StatusServiceUnavailable
	case fault.StorageUnavailable:
		p.Type, p.Status = TypeStorageUnavailable, http.StatusServiceUnavailable
	case fault.TooLarge:
		p.Type, p.Status = TypeTooLarge, http.StatusRequestEntityTooLarge
	case fault.UnsupportedMedia:
		p.Type, p.Status = TypeUnsupportedMedia, http.StatusUnsupportedMediaType
	case fault.Unauthorized:
		p.Type, p.Status = TypeUnauthorized, http.StatusUnauthorized
	case fault.Forbidden:
		p.Type, p.Status = TypeForbidden, http.StatusForbidden
	case fault.RateLimited:
		p.Type, p.Status = TypeTooManyRequests, http.StatusTooManyRequests
	case fault.Overloaded:
		p.Type, p.Status = TypeBusy, http.StatusServiceUnavailable
	}
	return p
}

// ClientClosed is the answer to a request whose client hung up before it was
// answered: nobody reads it, but access logs and metrics show 499 rather than an error
// of the server.
func ClientClosed() Problem {
	return Problem{Type: TypeInternal, Status: 499, Title: "Client Closed Request", Detail: "the client closed the request"}
}

// WriteError maps err with FromError and writes it. A 503 always carries
// Retry-After, a 429 when the error says when.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := FromError(r, log, err)
	if p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests && p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(p.RetryAfter)))
	}
	Write(w, r, p)
}

// Handler is an HTTP handler that returns its error instead of answering it:
// ServeHTTP answers the error as a problem (WriteError), logged with the logger
// the request's context carries (the chassis puts the program's there). A handler
// that has started its answer returns nil.
type Handler func(w http.ResponseWriter, r *http.Request) error

func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		WriteError(w, r, logging.FromContext(r.Context()), err)
	}
}

// retryAfterSeconds is d in whole seconds, rounded up, and at least one.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
