// Package chassistest runs a Folio program's run function inside a test, as its main
// would run it, with an environment of the test's making and its log kept in memory.
package chassistest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"folio/internal/platform/httpserver"
	"folio/internal/platform/polltest"
	"folio/internal/platform/release"
)

// LogBuffer collects what a program writes while it runs; the test may read it at
// any time.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it is safe to call from many goroutines.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns all that has been written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Env returns a getenv that reads vars, so that a program sees the test's
// environment rather than the process's.
func Env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// Run is a program's run function, as its main calls it.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// WantVersion runs program with --version and no environment, and fails t unless
// it prints one line naming itself and this build (release.Get) and returns nil,
// having opened nothing.
func WantVersion(t testing.TB, run Run, program string) {
	t.Helper()
	var out LogBuffer
	if err := run(context.Background(), []string{program, "--version"}, Env(nil), &out); err != nil {
		t.Fatalf("%s --version: %v", program, err)
	}
	if want := program + " " + release.Get().String() + "\n"; out.String() != want {
		t.Errorf("%s --version printed %q, want %q", program, out.String(), want)
	}
}

// WantSettingRejected runs program with the setting name=value, a new data directory
// and any free port, and fails t unless run returns an error that names the setting.
func WantSettingRejected(t testing.TB, run Run, program, name, value string) {
	t.Helper()
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", name: value}
	err := run(context.Background(), []string{program}, Env(vars), &LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("got %v, want an error naming %s", err, name)
	}
}

// WantRefusedBeforeOpening runs program with vars, in a new data directory and on
// any free port unless vars name them, and fails t unless run returns an error
// naming the setting name and has created nothing in the data directory. It
// returns what the program logged, for the caller's own checks.
func WantRefusedBeforeOpening(t testing.TB, run Run, program string, vars map[string]string, name string) string {
	t.Helper()
	env := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0"}
	for k, v := range vars {
		env[k] = v
	}
	logs := &LogBuffer{}
	err := run(context.Background(), []string{program}, Env(env), logs)
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("got %v, want an error naming %s", err, name)
	}
	if entries, err := os.ReadDir(env["FOLIO_DATA_DIR"]); err != nil || len(entries) != 0 {
		t.Errorf("the data directory holds %v (%v) after the refusal, want nothing", entries, err)
	}
	return logs.String()
}

// Program is a program that Start has started.
type Program struct {
	// URL is the program's base URL, http:// and the address it serves on.
	URL string
	// MetricsURL is where the program serves /metrics, off its public port
	// (FOLIO_METRICS_ADDR); "" when it serves none.
	MetricsURL string
	// Addrs are the addresses the program reported in its addr file.
	Addrs httpserver.Addrs
	// Logs holds what the program has written.
	Logs *LogBuffer

	t       testing.TB
	cancel  context.CancelFunc
	done    chan struct{} // closed when run has returned, with err set
	err     error
	stopped bool
}

// Start runs run with args and the environment vars until it has bound its
// listeners, failing t if run returns first or does not within polltest.Deadline.
// The program reports its addresses in an addr file (FOLIO_ADDR_FILE, in a
// directory of the test's unless vars names one), so that a program asked for
// port 0 is found where it really listens. The program stops when the test ends,
// unless Stop has stopped it before.
func Start(t testing.TB, run Run, args []string, vars map[string]string) *Program {
	t.Helper()
	env := make(map[string]string, len(vars)+1)
	for k, v := range vars {
		env[k] = v
	}
	addrFile := env["FOLIO_ADDR_FILE"]
	if addrFile == "" {
		addrFile = filepath.Join(t.TempDir(), "addr.json")
		env["FOLIO_ADDR_FILE"] = addrFile
	} else if err := os.Remove(addrFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A file left by an earlier run (a restart on the same vars) would name
		// that run's ports.
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Program{Logs: &LogBuffer{}, t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = run(ctx, args, Env(env), p.Logs)
	}()
	t.Cleanup(p.Stop)
	polltest.Until(t, "the program reports its addresses in "+addrFile, func() error {
		select {
		case <-p.done:
			p.stopped = true
			cancel()
			t.Fatalf("run returned before serving: %v\n%s", p.err, p.Logs)
		default:
		}
		a, err := httpserver.ReadAddrFile(addrFile)
		if err != nil {
			return err
		}
		p.Addrs = a
		return nil
	})
	p.URL = "http://" + p.Addrs.HTTP
	if p.Addrs.Metrics != "" {
		p.MetricsURL = "http://" + p.Addrs.Metrics
	}
	return p
}

// Stop ends the program's context and fails the test unless run then returns nil
// within polltest.Deadline. Calls after the first do nothing.
func (p *Program) Stop() {
	p.t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	p.cancel()
	select {
	case <-p.done:
		if p.err != nil {
			p.t.Errorf("run after cancel: got %v, want nil", p.err)
		}
	case <-time.After(polltest.Deadline):
		p.t.Fatalf("run did not return after its context ended\n%s", p.Logs)
	}
}
