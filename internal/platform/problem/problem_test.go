package problem_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/logging"
	"folio/internal/platform/problem"
)

func TestWriteError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantType   string
		wantDetail string
	}{
		{"malformed", fault.New(fault.Malformed, "bad %s", "json"), 400, problem.TypeMalformed, "bad json"},
		{"invalid", fault.New(fault.Invalid, "broken"), 422, problem.TypeValidation, "broken"},
		{"not found", fault.New(fault.NotFound, "none"), 404, problem.TypeNotFound, "none"},
		{"conflict", fault.New(fault.Conflict, "taken"), 409, problem.TypeConflict, "taken"},
		{"precondition", fault.New(fault.PreconditionFailed, "moved"), 412, problem.TypePreconditionFailed, "moved"},
		{"unavailable", fault.Wrap(fault.Unavailable, errors.New("dial 10.1.2.3:8082"), "peer down"), 503, problem.TypeUpstreamUnavailable, "peer down"},
		{"storage unavailable", &fault.Error{Kind: fault.StorageUnavailable, Message: "storage full", Err: errors.New("SELECT secret: disk full")}, 503, problem.TypeStorageUnavailable, "storage full"},
		{"too large", fault.New(fault.TooLarge, "big"), 413, problem.TypeTooLarge, "big"},
		{"unsupported media", fault.New(fault.UnsupportedMedia, "not JSON"), 415, problem.TypeUnsupportedMedia, "not JSON"},
		{"unauthorized", fault.New(fault.Unauthorized, "who?"), 401, problem.TypeUnauthorized, "who?"},
		{"forbidden", fault.New(fault.Forbidden, "admins only"), 403, problem.TypeForbidden, "admins only"},
		{"rate limited", fault.New(fault.RateLimited, "slow down"), 429, problem.TypeTooManyRequests, "slow down"},
		{"overloaded", fault.New(fault.Overloaded, "busy"), 503, problem.TypeBusy, "busy"},
		{"wrapped fault", fmt.Errorf("op: %w", fault.New(fault.NotFound, "none")), 404, problem.TypeNotFound, "none"},
		{"plain error", errors.New(`pq: SELECT secret FROM users at 10.1.2.3`), 500, problem.TypeInternal, ""},
		{"internal fault", fault.Wrap(fault.Internal, errors.New("SELECT secret"), "oops"), 500, problem.TypeInternal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			rec := httptest.NewRecorder()
			rec.Header().Set("ETag", `"1"`)
			r := httptest.NewRequest(http.MethodGet, "/things/1?x=y", nil)
			problem.WriteError(rec, r, log, tt.err)

			if rec.Code != tt.wantStatus {
				t.Fatalf("got status %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("got Content-Type %q, want %q", ct, problem.ContentType)
			}
			if rec.Header().Get("ETag") != "" {
				t.Error("an error answer kept the ETag")
			}
			if got := rec.Header().Get("Retry-After") != ""; got != (tt.wantStatus == 503) {
				t.Errorf("Retry-After present: got %v, want %v", got, tt.wantStatus == 503)
			}
			var p problem.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != tt.wantType || p.Status != tt.wantStatus || p.Title != http.StatusText(tt.wantStatus) || p.Instance != "/things/1" {
				t.Errorf("got %+v, want type %s, status %d, its title and instance /things/1", p, tt.wantType, tt.wantStatus)
			}
			if tt.wantDetail != "" && p.Detail != tt.wantDetail {
				t.Errorf("got detail %q, want %q", p.Detail, tt.wantDetail)
			}
			for _, leak := range []string{"SELECT", "10.1.2.3", "secret"} {
				if strings.Contains(rec.Body.String(), leak) {
					t.Errorf("body %s leaks %q", rec.Body, leak)
				}
			}
			// Internal errors, unavailable peers and storage are logged with their
			// cause; client errors are not (the access log has them), nor is an
			// overload, which would flood the log when it matters most.
			wantLogged := tt.wantStatus == 500 || tt.wantType == problem.TypeUpstreamUnavailable || tt.wantType == problem.TypeStorageUnavailable
			if logged := logs.Len() > 0; logged != wantLogged {
				t.Errorf("logged: got %v, want %v", logged, wantLogged)
			}
		})
	}
}

// TestRetryAfter: every 503 says when to try again: the error's own RetryAfter,
// rounded up to whole seconds, or one second.
func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"peer", fault.New(fault.Unavailable, "peer down"), "1"},
		{"storage, no hint", fault.New(fault.StorageUnavailable, "no connection"), "1"},
		{"storage full", &fault.Error{Kind: fault.StorageUnavailable, Message: "full", RetryAfter: 10 * time.Second}, "10"},
		{"rounded up", &fault.Error{Kind: fault.StorageUnavailable, Message: "full", RetryAfter: 1500 * time.Millisecond}, "2"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		problem.WriteError(rec, httptest.NewRequest(http.MethodPost, "/things", nil), nil, tt.err)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != tt.want {
			t.Errorf("%s: status %d, Retry-After %q; want 503 and %q", tt.name, rec.Code, rec.Header().Get("Retry-After"), tt.want)
		}
	}
}

// driverFull stands for a database driver's error that only a registered
// classifier knows.
type driverFull struct{}

func (driverFull) Error() string { return "database or disk is full (13) at /var/lib/secret.db" }

// TestClassifiedDriverErrors: an error no caller converted, which a package
// registered a classifier for, gets that classifier's answer: a full disk is a 503
// with Retry-After, not a 500, and its text stays in the log.
func TestClassifiedDriverErrors(t *testing.T) {
	fault.RegisterClassifier(func(err error) *fault.Error {
		if errors.As(err, new(driverFull)) {
			return &fault.Error{Kind: fault.StorageUnavailable, Message: "storage full", RetryAfter: 10 * time.Second, Err: err}
		}
		return nil
	})
	var logs bytes.Buffer
	rec := httptest.NewRecorder()
	problem.WriteError(rec, httptest.NewRequest(http.MethodPost, "/books", nil), slog.New(slog.NewJSONHandler(&logs, nil)),
		fmt.Errorf("create book: %w", driverFull{}))
	var p problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 503 || p.Type != problem.TypeStorageUnavailable || rec.Header().Get("Retry-After") != "10" {
		t.Errorf("got %d %+v, Retry-After %q; want 503 %s, 10", rec.Code, p, rec.Header().Get("Retry-After"), problem.TypeStorageUnavailable)
	}
	if strings.Contains(rec.Body.String(), "secret") || !strings.Contains(logs.String(), "secret.db") {
		t.Errorf("body %s, log %s: want the cause in the log only", rec.Body, logs.String())
	}
}

func TestValidationErrorsAlwaysPresent(t *testing.T) {
	for _, err := range []error{
		fault.New(fault.Invalid, "no fields"),
		(&fault.Fields{{Field: "title", Message: "is required"}}).Err(),
	} {
		rec := httptest.NewRecorder()
		problem.WriteError(rec, httptest.NewRequest(http.MethodPost, "/things", nil), nil, err)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
			t.Fatal(err)
		}
		if e, ok := raw["errors"]; !ok || !bytes.HasPrefix(e, []byte("[")) {
			t.Errorf("got %s, want errors as an array", rec.Body)
		}
	}
	var none fault.Fields
	if none.Err() != nil {
		t.Error("no fields: got an error, want nil")
	}
}

func TestRateLimitedSaysWhen(t *testing.T) {
	rec := httptest.NewRecorder()
	problem.WriteError(rec, httptest.NewRequest(http.MethodPost, "/auth/token", nil), nil,
		&fault.Error{Kind: fault.RateLimited, Message: "slow down", RetryAfter: 2500 * time.Millisecond})
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "3" {
		t.Errorf("got %d with Retry-After %q, want 429 with 3", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestHandlerAnswersTheReturnedError(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	h := problem.Handler(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Query().Get("fail") == "" {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return errors.New("SELECT secret FROM users")
	})
	for _, tc := range []struct {
		target string
		want   int
	}{{"/things", 204}, {"/things?fail=1", 500}} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		h.ServeHTTP(rec, r.WithContext(logging.WithLogger(r.Context(), log)))
		if rec.Code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.target, rec.Code, tc.want)
		}
	}
	if !strings.Contains(logs.String(), "SELECT secret") {
		t.Errorf("the internal error was not logged with the request's logger: %s", logs.String())
	}
}
