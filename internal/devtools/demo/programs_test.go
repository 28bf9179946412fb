package demo

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"folio/internal/devtools/localbuild"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/polltest"
)

// binDir holds the book and author programs, built once for the package's tests.
var (
	binDir    string
	buildOnce sync.Once
	programs  map[string]string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "folio-demo-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// program returns the path of the named service program, built from this source
// tree as folio up builds it.
func program(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		programs, buildErr = localbuild.Programs(context.Background(), binDir, "book", "author")
	})
	if buildErr != nil {
		t.Fatalf("build the service programs: %v", buildErr)
	}
	return programs[name]
}

// services are the real book and author programs, and the issuer of the tokens
// they accept.
type services struct {
	bookURL, authorURL string
	iss                *authntest.Issuer
	editor             string // a token of role editor
}

// startServices runs the real book and author programs, each as its own OS process
// on its own SQLite database in a temporary directory, wired to the other as in
// production and verifying the tokens of a test issuer. The demo talks to them only
// over their HTTP APIs, as it does under folio up.
func startServices(t *testing.T) services {
	t.Helper()
	iss := authntest.New(t)
	// The author service must be told where the book service is before that one
	// has a port: it is given a front that passes requests on once the book
	// service has reported its own.
	var bookTarget atomic.Pointer[url.URL]
	front := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(bookTarget.Load())
	}})
	t.Cleanup(front.Close)
	authorURL := startProgram(t, "author", append(iss.Env(), "FOLIO_BOOK_URL="+front.URL)...)
	bookURL := startProgram(t, "book", append(iss.Env(), "FOLIO_AUTHOR_URL="+authorURL)...)
	u, err := url.Parse(bookURL)
	if err != nil {
		t.Fatal(err)
	}
	bookTarget.Store(u)
	return services{bookURL: bookURL, authorURL: authorURL, iss: iss, editor: iss.Token("demo-editor", authn.RoleEditor)}
}

// startProgram starts the named program on a port the system picks, with env on
// top of its test settings, and returns its URL once it answers /readyz. The
// program is killed when the test ends; its output is shown if the test failed.
func startProgram(t *testing.T, name string, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr.json")
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(program(t, name))
	// Nothing of the test's own FOLIO_* environment steers the program. Events go
	// nowhere (the loader does not need them): a broker that cannot be reached
	// leaves the services serving, their events waiting in the outbox.
	cmd.Env = append(withoutFolio(os.Environ()),
		"FOLIO_HTTP_ADDR=127.0.0.1:0", "FOLIO_ADDR_FILE="+addrFile, "FOLIO_METRICS_ADDR=off",
		"FOLIO_DATA_DIR="+dir, "FOLIO_DATABASE_URL=sqlite:"+filepath.Join(dir, name+".db"),
		"FOLIO_LOG_FORMAT=json", "FOLIO_NATS_URL=nats://127.0.0.1:1")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("%s log:\n%s", name, out)
		}
	})

	return readyURL(t, name, addrFile, exited)
}

// readyURL returns the URL of the program name once it has reported its address
// in addrFile and answers /readyz there, failing the test if it exits first.
func readyURL(t *testing.T, name, addrFile string, exited <-chan struct{}) string {
	t.Helper()
	var base string
	polltest.Until(t, name+" answers /readyz", func() error {
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready", name)
		default:
		}
		a, err := httpserver.ReadAddrFile(addrFile)
		if err != nil {
			return err
		}
		base = "http://" + a.HTTP
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		return nil
	})
	return base
}

// withoutFolio is env without its FOLIO_* variables.
func withoutFolio(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "FOLIO_") {
			out = append(out, kv)
		}
	}
	return out
}
