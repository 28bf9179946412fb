package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// specServer is a book service that serves only its OpenAPI document.
func specServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/openapi.json" || r.Header.Get("Authorization") != "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"openapi": "3.1.0", "info": {"title": "Folio docs test service", "version": "1"},
			"paths": {"/books/{id}": {"get": {"summary": "Get a test book", "responses": {"200": {"description": "ok"}}}}}}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDocs(t *testing.T) {
	book := specServer(t)
	h := newHarness(t, func(c *Config) { c.Instances[ServiceBook] = []string{book} })

	r := h.do(http.MethodGet, "/docs", "", "", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "/docs/swagger-ui-bundle.js") {
		t.Fatalf("GET /docs: got %d %.200s, want 200 and the page", r.status, r.body)
	}
	r = h.do(http.MethodGet, "/docs/swagger-ui-bundle.js", "", "", nil)
	if r.status != http.StatusOK || len(r.body) < 1<<20 {
		t.Errorf("GET /docs/swagger-ui-bundle.js: got %d and %d bytes, want 200 and the embedded bundle", r.status, len(r.body))
	}
	// The document is public: a caller's token is not passed on.
	r = h.do(http.MethodGet, "/docs/openapi/book.json", h.token("someone", []string{"reader"}), "", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "Folio docs test service") {
		t.Errorf("GET /docs/openapi/book.json: got %d %.200s, want the book service's document", r.status, r.body)
	}
	wantProblem(t, h.do(http.MethodGet, "/docs/openapi/nope.json", "", "", nil), http.StatusNotFound)
	wantProblem(t, h.do(http.MethodGet, "/docs/openapi/book", "", "", nil), http.StatusNotFound)
}

// TestDocsRenderInBrowser loads /docs in headless Chromium with no network but
// loopback and checks that Swagger UI rendered the book service's operations: the
// page works offline, with every file served by the gateway.
func TestDocsRenderInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("chromium is not installed and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("browser test skipped: install chromium to run it")
	}
	book := specServer(t)
	h := newHarness(t, func(c *Config) { c.Instances[ServiceBook] = []string{book} })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=15000", "--dump-dom", h.url+"/docs")
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	for _, want := range []string{"Folio docs test service", "Get a test book", "/books/{id}"} {
		if !strings.Contains(string(dom), want) {
			t.Errorf("rendered page lacks %q; Swagger UI did not render the document:\n%.2000s", want, dom)
		}
	}
}
