// Package e2e holds the end-to-end tests: they build the real service programs, start
// each as its own OS process with its own database, and speak HTTP to them, as a
// client would.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"folio/internal/localbuild"
	"folio/internal/localnats"
)

var (
	buildOnce sync.Once
	programs  map[string]string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(embeddedNATSAddrEnv); addr != "" {
		// Started by startNATSServer as the embedded broker: serve until stopped.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := localnats.Serve(ctx, addr, os.Getenv(embeddedNATSDirEnv))
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "folio-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func program(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		programs, buildErr = localbuild.Programs(context.Background(), binDir, "book", "author", "notify")
	})
	if buildErr != nil {
		t.Fatalf("build programs: %v", buildErr)
	}
	return programs[name]
}

// service is one running service process.
type service struct {
	t    *testing.T
	name string
	addr string
	env  []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   sync.Mutex
}

func (s *service) URL() string { return "http://" + s.addr }

// MetricsURL is where the service serves /metrics, off its public port: the address
// of its latest "metrics listening" log line.
func (s *service) MetricsURL() string {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var addr string
		for _, line := range strings.Split(s.logText(), "\n") {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" {
				addr = rec.Addr
			}
		}
		if addr != "" || time.Now().After(deadline) {
			return "http://" + addr
		}
	}
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startService starts the named program on addr with the environment given and waits
// until it is ready. It is killed when the test ends. It verifies the tokens of
// the test's issuer (testIssuer) unless env names another FOLIO_JWKS_URL.
func startService(t *testing.T, name, addr string, env ...string) *service {
	t.Helper()
	s := &service{t: t, name: name, addr: addr, log: &bytes.Buffer{},
		env: slices.Concat([]string{"FOLIO_HTTP_ADDR=" + addr, "FOLIO_METRICS_ADDR=127.0.0.1:0", "FOLIO_DATA_DIR=" + t.TempDir(), "FOLIO_LOG_FORMAT=json"},
			testEvents(t), testIssuer(t).Env(), env)}
	s.start()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", s.name, s.logText())
		}
	})
	return s
}

func (s *service) start() {
	s.t.Helper()
	cmd := exec.Command(program(s.t, s.name))
	cmd.Env = append(os.Environ(), s.env...)
	w := &lockedWriter{s: s}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.name, err)
	}
	s.cmd = cmd
	waitReady(s.t, s.URL())
}

// kill stops the process with SIGKILL, as a crash would.
func (s *service) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func (s *service) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %s: %v", s.name, err)
	}
	if sig != syscall.SIGSTOP {
		return
	}
	// A stop signal takes effect when the kernel next schedules the process, so a
	// request can still be answered just after kill(2) returns: wait until every
	// thread is stopped.
	stat := fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return // not Linux, or gone: nothing to wait for
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'T' {
			return
		}
	}
	s.t.Fatalf("%s did not stop within 10 s of SIGSTOP", s.name)
}

func (s *service) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

type lockedWriter struct{ s *service }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.log.Write(b)
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not become ready within 60 s", base)
}

// system is a book service and an author service that know each other.
type system struct {
	book, author *service
}

func startSystem(t *testing.T) *system {
	t.Helper()
	bookAddr, authorAddr := freeAddr(t), freeAddr(t)
	// The author service starts first: the book service asks it about authors.
	author := startService(t, "author", authorAddr, "FOLIO_BOOK_URL=http://"+bookAddr)
	book := startService(t, "book", bookAddr, "FOLIO_AUTHOR_URL=http://"+authorAddr)
	return &system{book: book, author: author}
}

// response is what a call returned.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

var client = &http.Client{Timeout: 30 * time.Second}

func call(t *testing.T, method, url string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func expect(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got status %d, want %d; body: %s", r.status, status, r.body)
	}
	if status >= 400 {
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("error with Content-Type %q, want application/problem+json", ct)
		}
	}
}

func createAuthor(t *testing.T, sys *system, name string) string {
	t.Helper()
	r := call(t, "POST", sys.author.URL()+"/authors", map[string]any{"name": name}, "Authorization", editorAuth(t))
	expect(t, r, http.StatusCreated)
	return r.json(t)["id"].(string)
}

func createBook(t *testing.T, sys *system, title, authorID, genre string) string {
	t.Helper()
	r := call(t, "POST", sys.book.URL()+"/books", map[string]any{"title": title, "author_id": authorID, "genre": genre},
		"Authorization", editorAuth(t))
	expect(t, r, http.StatusCreated)
	return r.json(t)["id"].(string)
}

// walk follows next_cursor from url and returns every item's id.
func walk(t *testing.T, url string) []string {
	t.Helper()
	var ids []string
	next := url
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		r := call(t, "GET", next, nil)
		expect(t, r, http.StatusOK)
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if page.NextCursor == nil {
			return ids
		}
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		next = url + sep + "cursor=" + *page.NextCursor
	}
}

func count(t *testing.T, url string) int {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return len(walk(t, url+sep+"limit=100"))
}

func problemType(t *testing.T, r response) string {
	t.Helper()
	typ, _ := r.json(t)["type"].(string)
	return typ
}
