// Package resttest serves requests to a service's handler in tests and checks the
// answers: JSON bodies, and problem+json documents for errors.
package resttest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"folio/internal/platform/problem"
)

// NewRequest returns a request for a handler: body, when not empty, is sent as
// JSON, and header holds name, value pairs set after that; the pseudo-header
// "RemoteAddr" sets the client address instead of a header.
func NewRequest(method, target, body string, header ...string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "RemoteAddr" {
			req.RemoteAddr = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// Do serves one request, made as NewRequest makes it, with h and returns the
// recorded answer.
func Do(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, NewRequest(method, target, body, header...))
	return rec
}

// Decode fails tb unless rec holds a JSON body (Content-Type application/json), and
// returns the body decoded as a T.
func Decode[T any](tb testing.TB, rec *httptest.ResponseRecorder) T {
	tb.Helper()
	var v T
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("got Content-Type %q, want application/json (status %d: %s)", ct, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		tb.Fatalf("decode %s: %v", rec.Body, err)
	}
	return v
}

// WantProblem checks that rec is a problem+json document with the status and type,
// a title, and a message for each field error, naming the fields given (in any
// order, at least these), and returns it.
func WantProblem(tb testing.TB, rec *httptest.ResponseRecorder, status int, typ string, fields ...string) problem.Problem {
	tb.Helper()
	if rec.Code != status {
		tb.Fatalf("got status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
		tb.Fatalf("got Content-Type %q, want %q", ct, problem.ContentType)
	}
	var p problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		tb.Fatalf("decode problem %s: %v", rec.Body, err)
	}
	if p.Type != typ || p.Status != status || p.Title == "" {
		tb.Errorf("got problem type %q status %d title %q, want type %q status %d", p.Type, p.Status, p.Title, typ, status)
	}
	named := map[string]bool{}
	for _, e := range p.Errors {
		named[e.Field] = true
		if e.Message == "" {
			tb.Errorf("field %q has an empty message", e.Field)
		}
	}
	for _, f := range fields {
		if !named[f] {
			tb.Errorf("problem errors %+v do not name %q", p.Errors, f)
		}
	}
	return p
}

// PostJSON posts v as JSON to url over the network, fails tb unless the answer has
// status want, and returns its body decoded as a T.
func PostJSON[T any](tb testing.TB, url string, v any, want int) T {
	tb.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("POST %s: got status %d, want %d: %s", url, resp.StatusCode, want, b)
	}
	var out T
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		tb.Fatalf("POST %s: decode the answer: %v", url, err)
	}
	return out
}

// ClosedURL returns a URL of scheme at a local port nothing listens on, to stand for
// a peer that is down: port 1, which no test binds, rather than a port just closed,
// which another test running in parallel may take before this one dials it.
func ClosedURL(tb testing.TB, scheme string) string {
	tb.Helper()
	return scheme + "://127.0.0.1:1"
}
