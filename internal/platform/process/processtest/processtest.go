// Package processtest runs a Folio program's run function inside a test, as its main
// would run it, with an environment of the test's making and its log kept in memory.
package processtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
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

// ServingAddr returns the address from the JSON "serving" log line, or "" while
// there is none.
func (b *LogBuffer) ServingAddr() string {
	for _, line := range strings.Split(b.String(), "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
			return rec.Addr
		}
	}
	return ""
}

// MetricsAddr returns the address from the JSON "metrics listening" log line: where
// the program serves /metrics, off its public port. It is "" while there is none.
func (b *LogBuffer) MetricsAddr() string {
	for _, line := range strings.Split(b.String(), "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" {
			return rec.Addr
		}
	}
	return ""
}

// Env returns a getenv that reads vars, so that a program sees the test's
// environment rather than the process's.
func Env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// Run is a program's run function, as its main calls it.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

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

// Program is a program that Start has started.
type Program struct {
	// URL is the program's base URL, http:// and the address it serves on.
	URL string
	// MetricsURL is where the program serves /metrics, off its public port
	// (FOLIO_METRICS_ADDR); "" when it serves none.
	MetricsURL string
	// Logs holds what the program has written.
	Logs *LogBuffer

	t       testing.TB
	cancel  context.CancelFunc
	done    chan struct{} // closed when run has returned, with err set
	err     error
	stopped bool
}

// Start runs run with args and the environment vars until it logs that it serves,
// failing t if run returns first or does not serve within 20 seconds. The program
// stops when the test ends, unless Stop has stopped it before.
func Start(t testing.TB, run Run, args []string, vars map[string]string) *Program {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Program{Logs: &LogBuffer{}, t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = run(ctx, args, Env(vars), p.Logs)
	}()
	t.Cleanup(p.Stop)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == ""; {
		select {
		case <-p.done:
			p.stopped = true
			cancel()
			t.Fatalf("run returned before serving: %v\n%s", p.err, p.Logs)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did not start serving\n%s", p.Logs)
		}
		addr = p.Logs.ServingAddr()
	}
	p.URL = "http://" + addr
	if m := p.Logs.MetricsAddr(); m != "" {
		p.MetricsURL = "http://" + m
	}
	return p
}

// Stop ends the program's context and fails the test unless run then returns nil
// within 20 seconds. Calls after the first do nothing.
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
	case <-time.After(20 * time.Second):
		p.t.Fatalf("run did not return after its context ended\n%s", p.Logs)
	}
}
