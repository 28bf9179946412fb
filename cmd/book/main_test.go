package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/chassis/chassistest"
)

func TestRunRejectsArguments(t *testing.T) {
	if err := run(context.Background(), []string{"book", "extra"}, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
}

// TestRunRejectsBadSettings checks that each setting the book service reads is
// refused, by name, when it makes no sense.
func TestRunRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_PEER_TIMEOUT", "0s"},
		{"FOLIO_PEER_TIMEOUT", "-1s"},
		{"FOLIO_BROKER_STALE_AFTER", "0s"},
		{"FOLIO_SHUTDOWN_TIMEOUT", "0s"},
		{"FOLIO_TRUSTED_PROXIES", "not-an-address"},
		{"FOLIO_DISCOVERY", "dns"},
		{"FOLIO_EVENTS_MAX_AGE", "1s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "book", tc.name, tc.value)
		})
	}
}

// TestRunOpensNothingBeforeItsSettingsAreChecked: a rejected setting stops the
// program before its database is created, and before it says it is starting.
func TestRunOpensNothingBeforeItsSettingsAreChecked(t *testing.T) {
	logs := chassistest.WantRefusedBeforeOpening(t, run, "book", map[string]string{"FOLIO_PEER_TIMEOUT": "0s"}, "FOLIO_PEER_TIMEOUT")
	if logs != "" {
		t.Errorf("got logs %q after a rejected setting, want none", logs)
	}
}

// TestRunChecksTokens replays direct writes to the book service: without a token,
// or with one it must not accept, they are refused and change nothing; with an
// editor's token from the configured JWKS they are served. Reads stay public.
func TestRunChecksTokens(t *testing.T) {
	iss := authntest.New(t)
	// The author service knows every author.
	authors := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer authors.Close()
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0",
		"FOLIO_AUTHOR_URL": authors.URL, "FOLIO_NATS_URL": "nats://127.0.0.1:1", "FOLIO_JWKS_URL": iss.JWKSURL()}
	p := chassistest.Start(t, run, []string{"book"}, vars)

	do := func(method, path, token, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, p.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", authntest.Bearer(token))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const body = `{"title":"Direct","author_id":"01890a5d-ac96-774b-bcce-b302099a8057","genre":"fiction"}`
	editor := iss.Token("editor-1", authn.RoleEditor)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token from a foreign key", authntest.New(t).Token("editor-1", authn.RoleEditor), http.StatusUnauthorized},
		{"a reader's token", iss.Token("reader-1", authn.RoleReader), http.StatusForbidden},
	} {
		if got := do(http.MethodPost, "/books", tc.token, body); got != tc.want {
			t.Errorf("POST /books with %s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := do(http.MethodPost, "/books", editor, body); got != http.StatusCreated {
		t.Fatalf("POST /books with an editor's token: got %d, want 201", got)
	}
	// Reads are public, and the refused writes created nothing.
	resp, err := http.Get(p.URL + "/books?genre=fiction")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct{ Items []json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /books without a token: got %d (%v), want 200", resp.StatusCode, err)
	}
	if len(page.Items) != 1 {
		t.Errorf("got %d books, want only the editor's", len(page.Items))
	}
	p.Stop()
}

// TestRunReportsItsOutboxWhenReady checks that run serves /readyz with the relay's
// outbox beside the database, and stops cleanly when its context ends.
func TestRunReportsItsOutboxWhenReady(t *testing.T) {
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0",
		"FOLIO_NATS_URL": "nats://127.0.0.1:1", "FOLIO_JWKS_URL": authntest.New(t).JWKSURL()}
	p := chassistest.Start(t, run, []string{"book"}, vars)
	resp, err := http.Get(p.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready struct {
		Detail map[string]json.RawMessage `json:"detail"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz: got %d (%v), want 200 and JSON", resp.StatusCode, err)
	}
	for _, part := range []string{"outbox", "broker"} {
		if _, ok := ready.Detail[part]; !ok {
			t.Errorf("GET /readyz: got detail %v, want the %s in it", ready.Detail, part)
		}
	}
	p.Stop()
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "book") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready (chassis.Healthcheck) instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"book", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("book --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
