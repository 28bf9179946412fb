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

	"folio/internal/platform/fault"
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
		{"too large", fault.New(fault.TooLarge, "big"), 413, problem.TypeTooLarge, "big"},
		{"unsupported media", fault.New(fault.UnsupportedMedia, "not JSON"), 415, problem.TypeUnsupportedMedia, "not JSON"},
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
			// Internal errors and unavailable peers are logged with their cause; client
			// errors are not (the access log has them).
			wantLogged := tt.wantStatus == 500 || tt.wantStatus == 503
			if logged := logs.Len() > 0; logged != wantLogged {
				t.Errorf("logged: got %v, want %v", logged, wantLogged)
			}
		})
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
