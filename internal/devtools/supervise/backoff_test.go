package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"folio/internal/platform/chassis/chassistest"
)

// TestBackoffPolicy: the wait grows only within an incident (exits with no healthy
// run between them) and starts afresh after a healthy run.
func TestBackoffPolicy(t *testing.T) {
	const ms = time.Millisecond
	for _, tt := range []struct {
		name    string
		healthy []bool // each run, in order
		want    []time.Duration
	}{
		{"a crash loop doubles up to the cap", []bool{false, false, false, false, false, false, false},
			[]time.Duration{500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second}},
		// Issue 14's six kills 10 s apart: each came after a healthy run, so each is
		// its own incident (the old rule, a reset only after 60 s, gave 0.5 s to 16 s).
		{"crashes after healthy runs stay quick", []bool{true, true, true, true, true, true},
			[]time.Duration{500 * ms, 500 * ms, 500 * ms, 500 * ms, 500 * ms, 500 * ms}},
		{"a healthy run ends the incident", []bool{false, false, false, true, false},
			[]time.Duration{500 * ms, time.Second, 2 * time.Second, 500 * ms, time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := backoff{min: 500 * ms, max: 30 * time.Second}
			var got []time.Duration
			for _, h := range tt.healthy {
				got = append(got, b.next(h))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got waits %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeClock is the supervisor's clock in a test: it moves only when the test says.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestBackoffPerIncident runs a child through a script of runs, each killed after
// it has been ready (by its Ready check) for a time the test sets on the
// supervisor's clock, or killed without ever being ready, and checks the wait the
// supervisor chose before each restart.
func TestBackoffPerIncident(t *testing.T) {
	const ms = time.Millisecond
	runs := []struct {
		ready    bool
		readyFor time.Duration // on the supervisor's clock; for a run never ready, the time it ran
		want     string
	}{
		{false, time.Hour, "1ms"},      // never ready: however long it ran, the incident goes on
		{true, time.Second, "2ms"},     // ready, but not for HealthyFor
		{false, time.Hour, "4ms"},      // ...
		{true, time.Second, "8ms"},     // the cap
		{true, time.Second, "8ms"},     // stays at the cap
		{true, 9 * time.Second, "1ms"}, // healthy for 9 s: the incident is over
		{true, 9 * time.Second, "1ms"}, // and the next crash is a new one
		{false, time.Hour, "2ms"},
	}
	out := &chassistest.LogBuffer{}
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	s := New(out, Config{Name: "test", LogDir: t.TempDir(), MinBackoff: ms, MaxBackoff: 8 * ms,
		HealthyFor: 5 * time.Second, ProbeInterval: 5 * ms})
	s.now = clock.Now
	var answerReady atomic.Bool
	answerReady.Store(runs[0].ready)
	spec := childSpec(t, "kid", "serve")
	spec.Ready = func(context.Context) error {
		if answerReady.Load() {
			return nil
		}
		return errors.New("not ready")
	}
	p, err := s.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	previous := 0
	for i, run := range runs {
		var pid int
		waitFor(t, out, fmt.Sprintf("run %d", i+1), func() bool { pid = p.PID(); return pid != 0 && pid != previous })
		previous = pid
		if run.ready {
			waitFor(t, out, fmt.Sprintf("run %d ready", i+1), p.Ready)
		}
		clock.Advance(run.readyFor)
		if i+1 < len(runs) {
			answerReady.Store(runs[i+1].ready)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, out, fmt.Sprintf("run %d's exit", i+1), func() bool { n, _ := p.Exits(); return n == i+1 })
	}
	s.Stop()
	restarts := regexp.MustCompile(`kid exited unexpectedly \(signal: killed\) after \S+; restarting in (\S+)\n`)
	var got, want []string
	for _, m := range restarts.FindAllStringSubmatch(out.String(), -1) {
		got = append(got, m[1])
	}
	for _, run := range runs {
		want = append(want, run.want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got waits %v, want %v; output:\n%s", got, want, out.String())
	}
}

// TestStoppedChildFailingHealthChecksIsRestarted: a child that still runs but no
// longer passes its Alive check (here: it is stopped, SIGSTOP) is restarted after
// AliveFailures checks in a row, and is continued so that it can act on SIGTERM.
func TestStoppedChildFailingHealthChecksIsRestarted(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to see whether a process is stopped")
	}
	out := &chassistest.LogBuffer{}
	s := New(out, Config{Name: "test", LogDir: t.TempDir(), MinBackoff: time.Millisecond, ProbeInterval: 10 * time.Millisecond})
	var proc atomic.Pointer[Process]
	spec := childSpec(t, "kid", "serve")
	spec.AliveFailures = 2
	spec.Alive = func(context.Context) error {
		p := proc.Load()
		if p == nil {
			return nil
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
		if err != nil {
			return nil // exited meanwhile
		}
		// The state follows the command name in parentheses: "T" is stopped.
		if _, rest, _ := strings.Cut(string(stat), ") "); strings.HasPrefix(rest, "T") {
			return errors.New("stopped")
		}
		return nil
	}
	p, err := s.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	proc.Store(p)
	defer s.Stop()
	waitFor(t, out, "the child's first line", contains(out, "kid | hello from stdout"))
	first := p.PID()
	if err := syscall.Kill(first, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "a new child", func() bool { pid := p.PID(); return pid != 0 && pid != first })
	n, last := p.Exits()
	if n != 1 || last == nil || !strings.Contains(last.Error(), "failed 2 health checks in a row (the last: stopped)") {
		t.Errorf("Exits() = %d, %v; want 1, failed 2 health checks", n, last)
	}
	got := out.String()
	for _, want := range []string{
		"test | kid failed 2 health checks in a row (the last: stopped); restarting it\n",
		"kid | got SIGTERM\n", // continued, it stopped cleanly rather than being killed
		"test | kid was stopped because it failed 2 health checks in a row (the last: stopped) (exit status 0) after ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q; got:\n%s", want, got)
		}
	}
}

// TestChildNeverReadyIsRestarted: with ReadyWithin, a child whose Ready check never
// passes is restarted.
func TestChildNeverReadyIsRestarted(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := New(out, Config{Name: "test", LogDir: t.TempDir(), MinBackoff: time.Millisecond, ProbeInterval: 5 * time.Millisecond})
	spec := childSpec(t, "kid", "serve")
	spec.Ready = func(context.Context) error { return errors.New("no answer") }
	spec.ReadyWithin = 20 * time.Millisecond
	p, err := s.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitFor(t, out, "two restarts", func() bool { n, _ := p.Exits(); return n >= 2 })
	if want := "test | kid was not ready within 20ms (no answer); restarting it\n"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q; got:\n%s", want, out.String())
	}
	if p.Ready() {
		t.Error("Ready() is true for a child that never passed its check")
	}
}
