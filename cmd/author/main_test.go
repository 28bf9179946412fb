package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/chassis/chassistest"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"author", "extra"}, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_BOOK_URL", "ftp://book"},
		{"FOLIO_BOOK_URL", "book:8081"},
		{"FOLIO_PEER_TIMEOUT", "0s"},
		{"FOLIO_UPSTREAM_BUDGET", "-1s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "author", tc.name, tc.value)
		})
	}
}

func TestRunRejectsUnparsableConfiguration(t *testing.T) {
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_UPSTREAM_BUDGET": "soon"}
	if err := run(context.Background(), []string{"author"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
		t.Error("got nil, want an error")
	}
}

// refusedURL is a URL nobody serves (port 1 is privileged and unassigned on a test
// machine), which no other test's server can take while this one runs.
const refusedURL = "http://127.0.0.1:1"

func TestRunServesUntilCancelled(t *testing.T) {
	// No broker either: the service serves all the same, its outbox keeping the events.
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0",
		"FOLIO_BOOK_URL": refusedURL, "FOLIO_NATS_URL": "nats://127.0.0.1:1"}
	p := chassistest.Start(t, run, []string{"author"}, vars)

	for path, want := range map[string]int{
		"/readyz":                     http.StatusOK,
		"/authors":                    http.StatusOK,
		"/authors/books?genre=poetry": http.StatusServiceUnavailable, // the book service is down
	} {
		resp, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	p.Stop()
}

// TestRunChecksTokens replays a direct write to the author service: without a token
// it is refused, with an editor's token from the configured JWKS it is served.
func TestRunChecksTokens(t *testing.T) {
	iss := authntest.New(t)
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0",
		"FOLIO_BOOK_URL": refusedURL, "FOLIO_NATS_URL": "nats://127.0.0.1:1",
		"FOLIO_JWKS_URL": iss.JWKSURL()}
	p := chassistest.Start(t, run, []string{"author"}, vars)
	defer p.Stop()

	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token from a foreign key", authntest.New(t).Token("editor-1", authn.RoleEditor), http.StatusUnauthorized},
		{"a reader's token", iss.Token("reader-1", authn.RoleReader), http.StatusForbidden},
		{"an editor's token", iss.Token("editor-1", authn.RoleEditor), http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, p.URL+"/authors", strings.NewReader(`{"name":"Direct"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", authntest.Bearer(tc.token))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("POST /authors: got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
