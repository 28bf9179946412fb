// Package e2e holds the end-to-end tests: they build the real service programs, start
// each as its own OS process with its own database, and speak HTTP to them, as a
// client would.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"folio/internal/devtools/localbuild"
	"folio/internal/devtools/localnats"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/polltest"
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
	t       *testing.T
	name    string
	bin     string   // the program; "" is program(t, name)
	baseEnv []string // the environment env adds to; nil is this process's
	addr    string   // what it bound (after start), or what it is to bind
	metrics string   // where it serves /metrics, as its addr file says
	env     []string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has exited
	log     *bytes.Buffer
	mu      sync.Mutex
}

func (s *service) URL() string { return "http://" + s.addr }

// MetricsURL is where the service serves /metrics, off its public port, as the
// service reported it in its addr file.
func (s *service) MetricsURL() string { return "http://" + s.metrics }

// anyAddr asks a program for a port of the kernel's choosing: the program reports
// which in its addr file, so nobody has to guess a free one.
const anyAddr = "127.0.0.1:0"

// errAddrInUse is what starting a child returns when the child exited because the
// address it was told to bind was taken: a named port (see retryOnCollision), chosen
// free, that someone else bound first.
var errAddrInUse = errors.New("address already in use")

// collisionAttempts is how many ports retryOnCollision tries before it gives up:
// one collision is rare, several in a row mean something else is wrong.
const collisionAttempts = 5

// freeAddr returns a loopback address with a port nobody listens on now. Only for
// an address that must be named before its program binds it, and only inside
// retryOnCollision, since another process may bind it first.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// retryOnCollision calls start, which starts children on ports it names with
// freeAddr, until it does not fail with errAddrInUse, up to collisionAttempts times.
// start stops what it started before it returns an error, and picks fresh ports on
// each call, so a peer that was told a taken port starts again with the new one.
func retryOnCollision(t *testing.T, what string, start func() error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || attempt == collisionAttempts {
			t.Fatalf("start %s (attempt %d): %v", what, attempt, err)
		}
		t.Logf("start %s: %v; again on another port", what, err)
	}
}

// startService starts the named program on addr (anyAddr unless a peer must know it
// beforehand) with the environment given and waits until it is ready. It is killed
// when the test ends. It verifies the tokens of the test's issuer (testIssuer) unless
// env names another FOLIO_JWKS_URL.
func startService(t *testing.T, name, addr string, env ...string) *service {
	t.Helper()
	s, err := tryStartService(t, name, addr, env...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryStartService is startService returning errAddrInUse (wrapped) when addr was
// taken, for retryOnCollision.
func tryStartService(t *testing.T, name, addr string, env ...string) (*service, error) {
	t.Helper()
	return tryStartChild(t, &service{t: t, name: name, addr: addr, log: &bytes.Buffer{},
		env: slices.Concat([]string{"FOLIO_METRICS_ADDR=127.0.0.1:0", "FOLIO_DATA_DIR=" + t.TempDir(), "FOLIO_LOG_FORMAT=json"},
			testEvents(t), testIssuer(t).Env(), env)})
}

// tryStartChild starts s for the first time and kills it when the test ends.
func tryStartChild(t *testing.T, s *service) (*service, error) {
	t.Helper()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", s.name, s.logText())
		}
	})
	if err := s.tryStart(); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// start starts the service again after kill, on the address it had: its peers were
// told that one. Should another process have bound it meanwhile, it waits for the
// address to be free again rather than move, which would strand the peers.
func (s *service) start() {
	s.t.Helper()
	polltest.Until(s.t, s.name+" starts again on "+s.addr, func() error {
		err := s.tryStart()
		if err != nil && !errors.Is(err, errAddrInUse) {
			s.t.Fatal(err)
		}
		return err
	})
}

// tryStart starts the program on s.addr and waits until it has reported its
// addresses in its addr file and answers /readyz. When it exits first, the error
// wraps errAddrInUse if its address was taken.
func (s *service) tryStart() error {
	s.t.Helper()
	bin := s.bin
	if bin == "" {
		bin = program(s.t, s.name)
	}
	addrFile := filepath.Join(s.t.TempDir(), "addrs.json")
	cmd := exec.Command(bin)
	// The later of two values of a variable wins: s.env may name its own.
	base := s.baseEnv
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = slices.Concat(base, []string{"FOLIO_HTTP_ADDR=" + s.addr}, s.env, []string{"FOLIO_ADDR_FILE=" + addrFile})
	w := &lockedWriter{s: s}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	gone := false
	polltest.Until(s.t, s.name+" reports its addresses in "+addrFile, func() error {
		select {
		case <-exited:
			gone = true
			return nil
		default:
		}
		a, err := httpserver.ReadAddrFile(addrFile)
		if err != nil {
			return err
		}
		s.addr, s.metrics = a.HTTP, a.Metrics
		return nil
	})
	if !gone {
		polltest.Until(s.t, s.name+" is ready", func() error {
			select {
			case <-exited:
				gone = true
				return nil
			default:
			}
			return ready(s.URL())
		})
	}
	if gone {
		s.cmd = nil
		if strings.Contains(s.logText(), "already in use") {
			return fmt.Errorf("%s on %s exited: %w", s.name, s.addr, errAddrInUse)
		}
		return fmt.Errorf("%s exited before it was ready (%v):\n%s", s.name, cmd.ProcessState, s.logText())
	}
	return nil
}

// kill stops the process with SIGKILL, as a crash would.
func (s *service) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		_ = s.cmd.Process.Kill()
		<-s.exited
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
	polltest.Until(s.t, s.name+" stopped by SIGSTOP", func() error {
		b, err := os.ReadFile(stat)
		if err != nil {
			return nil // not Linux, or gone: nothing to wait for
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'T' {
			return nil
		}
		return fmt.Errorf("state %q", b)
	})
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

// ready is nil once base answers /readyz with 200.
func ready(base string) error {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/readyz: %s", base, resp.Status)
	}
	return nil
}

// system is a book service and an author service that know each other.
type system struct {
	book, author *service
}

func startSystem(t *testing.T) *system {
	t.Helper()
	author, book := startPair(t, nil, nil)
	return &system{book: book, author: author}
}

// startPair starts an author service and a book service that know each other. The
// author service, started first, must be told the book service's address before
// that one binds it: the one named port, retried on a collision (both start again).
func startPair(t *testing.T, authorEnv, bookEnv []string) (author, book *service) {
	t.Helper()
	retryOnCollision(t, "author and book", func() error {
		bookAddr := freeAddr(t)
		a, err := tryStartService(t, "author", anyAddr, append(slices.Clone(authorEnv), "FOLIO_BOOK_URL=http://"+bookAddr)...)
		if err != nil {
			return err
		}
		b, err := tryStartService(t, "book", bookAddr, append(slices.Clone(bookEnv), "FOLIO_AUTHOR_URL="+a.URL())...)
		if err != nil {
			a.kill()
			return err
		}
		author, book = a, b
		return nil
	})
	return author, book
}

// response is what a call returned.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

var client = &http.Client{Timeout: 30 * time.Second}

func call(t testing.TB, method, url string, body any, headers ...string) response {
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

func expect(t testing.TB, r response, status int) {
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
func walk(t testing.TB, url string) []string {
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

func count(t testing.TB, url string) int {
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

// TestStartOnATakenPortIsACollision: a program told a port someone else holds exits,
// and the starter says errAddrInUse, on which retryOnCollision starts again with
// another port; any other failure ends the test at once.
func TestStartOnATakenPortIsACollision(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := tryStartService(t, "book", ln.Addr().String()); !errors.Is(err, errAddrInUse) {
		t.Fatalf("book on a taken port: %v, want errAddrInUse", err)
	}

	attempts := 0
	retryOnCollision(t, "a starter that collides twice", func() error {
		attempts++
		if attempts < 3 {
			return fmt.Errorf("attempt %d: %w", attempts, errAddrInUse)
		}
		return nil
	})
	if attempts != 3 {
		t.Errorf("retryOnCollision tried %d times, want 3", attempts)
	}
}
