package e2e

// A running `folio up`, the way a developer runs it and the way issue 8's findings
// were reproduced: the folio program started as a child process, which builds and
// starts every service and the embedded NATS itself.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"folio/internal/devtools/localbuild"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/polltest"
)

// upProgramNames are the programs folio up runs, and folio itself.
var upProgramNames = []string{"folio", "auth", "author", "book", "notify", "inventory", "payment", "order", "gateway"}

var (
	upBuildOnce sync.Once
	upBin       map[string]string
	upBuildErr  error
)

// upPrograms builds folio and every service program into one directory, so that
// the folio program finds the services beside itself, as an installed folio does.
func upPrograms(t *testing.T) map[string]string {
	t.Helper()
	upBuildOnce.Do(func() {
		upBin, upBuildErr = localbuild.Programs(context.Background(), filepath.Join(binDir, "up"),
			upProgramNames...)
	})
	if upBuildErr != nil {
		t.Fatalf("build programs: %v", upBuildErr)
	}
	return upBin
}

// upSystem is one running `folio up` with the demo catalogue left out.
type upSystem struct {
	t       *testing.T
	dataDir string
	ports   map[string]int // by service name, and "nats"
	cmd     *exec.Cmd
	out     *upOutput
	done    chan struct{}
	stopped bool

	adminEmail, adminPassword   string
	editorEmail, editorPassword string
}

// upOutput is folio up's combined output, read while it runs.
type upOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *upOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *upOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// upPort returns a port nothing listens on just now: only inside retryOnCollision,
// since another process may bind it before folio up does.
func upPort(t *testing.T) int {
	t.Helper()
	_, port, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// startFolioUp runs `folio up --no-demo` on free ports with a data directory of its
// own and waits until it says it is up. It is stopped, as Ctrl-C stops it, when the
// test ends. folio up is told its ports by name, so one may be taken before it binds
// it: folio up then ends with an "already in use" error, and it runs again on other
// ports, with a fresh data directory.
func startFolioUp(t *testing.T) *upSystem {
	t.Helper()
	return startFolioUpWith(t, upOptions{})
}

// upOptions change how startFolioUpWith runs folio up.
type upOptions struct {
	// env is added to folio up's environment, which every service inherits.
	env []string
	// bin are the programs to run (default upPrograms): folio runs the services
	// it finds beside itself.
	bin map[string]string
}

// startFolioUpWith is startFolioUp with options.
func startFolioUpWith(t *testing.T, opts upOptions) *upSystem {
	t.Helper()
	if testing.Short() {
		t.Skip("runs folio up, which builds and starts every program; skipped with -short")
	}
	var u *upSystem
	retryOnCollision(t, "folio up", func() error {
		var err error
		u, err = tryFolioUp(t, opts)
		return err
	})
	u.readCredentials()
	return u
}

// tryFolioUp is one attempt of startFolioUp; the error wraps errAddrInUse when folio
// up ended because a port was taken.
func tryFolioUp(t *testing.T, opts upOptions) (*upSystem, error) {
	t.Helper()
	bin := opts.bin
	if bin == nil {
		bin = upPrograms(t)
	}
	u := &upSystem{t: t, dataDir: filepath.Join(t.TempDir(), "data"), ports: map[string]int{}, out: &upOutput{}, done: make(chan struct{})}
	args := []string{"up", "--no-demo", "--data-dir", u.dataDir}
	taken := map[int]bool{}
	for _, name := range []string{"gateway", "auth", "author", "book", "notify", "inventory", "payment", "order", "nats"} {
		// A port just released may be handed out again at once: each service needs
		// one of its own, or folio up refuses to start.
		port := upPort(t)
		for taken[port] {
			port = upPort(t)
		}
		taken[port] = true
		u.ports[name] = port
		args = append(args, "--"+name+"-port", strconv.Itoa(u.ports[name]))
	}
	cmd := exec.Command(bin["folio"], args...)
	// folio up's own environment reaches every service: keep the test's FOLIO_*
	// settings (test URLs, a developer's overrides) out of it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FOLIO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "FOLIO_LOG_FORMAT=json")
	cmd.Env = append(cmd.Env, opts.env...)
	cmd.Stdout, cmd.Stderr = u.out, u.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start folio up: %v", err)
	}
	u.cmd = cmd
	go func() { _ = cmd.Wait(); close(u.done) }()
	t.Cleanup(func() {
		u.stop()
		if t.Failed() {
			t.Logf("folio up output:\n%s", u.out.String())
		}
	})
	// A bound for a broken run only: a first build of the programs takes minutes.
	ended := false
	polltest.UntilWithin(t, 5*time.Minute, "folio up says it is up", func() error {
		select {
		case <-u.done:
			ended = true
			return nil
		default:
		}
		if !strings.Contains(u.out.String(), "Press Ctrl-C to stop.") {
			return errors.New("not yet")
		}
		return nil
	})
	if ended {
		u.stopped = true
		if strings.Contains(u.out.String(), "already in use") {
			return nil, fmt.Errorf("folio up ended: %w", errAddrInUse)
		}
		t.Fatalf("folio up ended before it was up; output:\n%s", u.out.String())
	}
	return u, nil
}

// stop ends folio up as Ctrl-C does and waits until it and its services are gone;
// past a minute it kills it.
func (u *upSystem) stop() {
	if u.stopped {
		return
	}
	u.stopped = true
	_ = u.cmd.Process.Signal(os.Interrupt)
	select {
	case <-u.done:
	case <-time.After(60 * time.Second):
		_ = u.cmd.Process.Kill()
		<-u.done
		u.t.Errorf("folio up did not stop within 60 s of an interrupt")
	}
	// The services are folio up's children: none may outlive it.
	for name, pid := range u.pids() {
		if err := syscall.Kill(pid, 0); err == nil {
			u.t.Errorf("%s (pid %d) still runs after folio up returned", name, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (u *upSystem) readCredentials() {
	u.t.Helper()
	f, err := os.Open(filepath.Join(u.dataDir, "credentials"))
	if err != nil {
		u.t.Fatalf("folio up's credentials file: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		switch k {
		case "FOLIO_DEMO_ADMIN_EMAIL":
			u.adminEmail = v
		case "FOLIO_DEMO_ADMIN_PASSWORD":
			u.adminPassword = v
		case "FOLIO_DEMO_EDITOR_EMAIL":
			u.editorEmail = v
		case "FOLIO_DEMO_EDITOR_PASSWORD":
			u.editorPassword = v
		}
	}
	if u.adminPassword == "" || u.editorPassword == "" {
		u.t.Fatalf("folio up's credentials file names no admin or editor password")
	}
}

// URL is the base URL of the named service ("gateway", "book", …).
func (u *upSystem) URL(name string) string {
	return "http://127.0.0.1:" + strconv.Itoa(u.ports[name])
}

func (u *upSystem) natsURL() string { return "nats://127.0.0.1:" + strconv.Itoa(u.ports["nats"]) }

var upStarted = regexp.MustCompile(`(?m)^folio +\| (\S+) started \(pid (\d+)\)$`)

// pids are the process ids of the services, as folio up announced them.
func (u *upSystem) pids() map[string]int {
	pids := map[string]int{}
	for _, m := range upStarted.FindAllStringSubmatch(u.out.String(), -1) {
		pids[m[1]], _ = strconv.Atoi(m[2])
	}
	return pids
}

// metricsURL is where the named service serves /metrics, as it reported in its addr
// file (folio up has each program write <data-dir>/addr/<name>.json).
func (u *upSystem) metricsURL(name string) string {
	u.t.Helper()
	a, err := httpserver.ReadAddrFile(filepath.Join(u.dataDir, "addr", name+".json"))
	if err != nil {
		u.t.Fatalf("where %s serves metrics: %v", name, err)
	}
	if a.Metrics == "" {
		u.t.Fatalf("%s serves no metrics (its addr file names none)", name)
	}
	return "http://" + a.Metrics
}

// login gets an access token through the gateway.
func (u *upSystem) login(email, password string) string {
	u.t.Helper()
	r := call(u.t, "POST", u.URL("gateway")+"/auth/token", map[string]any{"email": email, "password": password})
	if r.status != http.StatusOK {
		u.t.Fatalf("login as %s through the gateway: got %d %s", email, r.status, r.body)
	}
	return r.json(u.t)["access_token"].(string)
}

// upClient is an HTTP client whose connections come from the loopback address
// from (any of 127.0.0.0/8 on Linux), so that the gateway sees another client.
func upClient(from string, timeout time.Duration) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16}}
}

// upRequireAddr skips the test when the machine cannot use from as a source
// address (all of 127.0.0.0/8 is loopback on Linux; elsewhere often only 127.0.0.1).
func upRequireAddr(t *testing.T, from string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("cannot connect from %s (%v) and FOLIO_REQUIRE_INTEGRATION=1", from, err)
		}
		t.Skipf("cannot connect from %s on this machine (%v): the test needs several loopback source addresses", from, err)
	}
	c.Close()
}

// upRaw writes req to addr over a fresh TCP connection and returns the status and
// Content-Type of the answer. It fails the test if no answer comes within 30 s.
func upRaw(t *testing.T, addr, req string) (int, string, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	// The server may answer and close before it has read all of a bad request: a
	// write error then is no failure, the answer is what counts.
	_, _ = io.WriteString(c, req)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("raw request to %s: no answer: %v\nrequest: %.200q", addr, err, req)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func upHostPort(base string) string { return strings.TrimPrefix(base, "http://") }

// upDescribe names a request in a failure message.
func upDescribe(method, u string) string { return fmt.Sprintf("%s %.120s", method, u) }

// upStart starts one program of its own, beside folio up's, with a data directory
// and SQLite database of its own, no broker (an address nothing listens on) and env
// on top; it returns the program's base URL once it is ready. It is killed when the
// test ends.
func upStart(t *testing.T, program string, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	var env0 []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FOLIO_") {
			env0 = append(env0, kv)
		}
	}
	// The service's own environment is only what is written here: it starts with
	// nothing of the test's FOLIO_* settings (env0 replaces os.Environ below).
	s := &service{t: t, name: program, bin: upPrograms(t)[program], addr: anyAddr, log: &bytes.Buffer{}, baseEnv: env0,
		env: append([]string{"FOLIO_METRICS_ADDR=127.0.0.1:0", "FOLIO_DATA_DIR=" + dir,
			"FOLIO_DATABASE_URL=sqlite:" + filepath.Join(dir, program+".db"), "FOLIO_LOG_FORMAT=json", "FOLIO_NATS_URL=nats://127.0.0.1:1"}, env...)}
	s, err := tryStartChild(t, s)
	if err != nil {
		t.Fatal(err)
	}
	return s.URL()
}
