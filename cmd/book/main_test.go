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
