package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/polltest"
)

// childEnv, when set, makes the test binary act as a supervised child instead of
// running the tests; its value names the behaviour.
const childEnv = "SUPERVISE_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child is the program the tests supervise: the test binary itself, re-executed.
func child(mode string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch mode {
	case "serve":
		// Prints a line to each stream and waits for SIGTERM; its last words have no newline.
		fmt.Println("hello from stdout")
		fmt.Fprintln(os.Stderr, "hello from stderr")
		<-term
		fmt.Println("got SIGTERM")
		fmt.Print("no newline at exit")
		return 0
	case "crash-once":
		// Exits with status 1 the first time, serves the second.
		marker := os.Getenv("SUPERVISE_TEST_MARKER")
		if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
			_ = os.WriteFile(marker, nil, 0o644)
			fmt.Println("crashing")
			return 1
		}
		fmt.Println("second life")
		<-term
		return 0
	case "crash":
		fmt.Println("crashing")
		return 3
	case "crash-once-env":
		// As crash-once, saying first what SUPERVISE_TEST_PORT it was given.
		fmt.Println("port " + os.Getenv("SUPERVISE_TEST_PORT"))
		marker := os.Getenv("SUPERVISE_TEST_MARKER")
		if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
			_ = os.WriteFile(marker, nil, 0o644)
			return 1
		}
		<-term
		return 0
	case "flood":
		// Writes far more than a pipe holds, then says so in a file and serves on.
		line := strings.Repeat("x", 1000)
		for i := range floodLines {
			fmt.Printf("flood %d %s\n", i, line)
		}
		_ = os.WriteFile(os.Getenv("SUPERVISE_TEST_MARKER"), nil, 0o644)
		<-term
		return 0
	case "stubborn":
		// Ignores SIGTERM, so only SIGKILL ends it.
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		select {}
	case "chatty":
		// Writes many lines, each in several small writes, racing another child.
		id := os.Getenv("SUPERVISE_TEST_ID")
		for i := range 500 {
			os.Stdout.WriteString("line ")
			os.Stdout.WriteString(id)
			os.Stdout.WriteString(fmt.Sprintf(" %d ", i))
			os.Stdout.WriteString(strings.Repeat(id, 50) + "\n")
		}
		<-term
		return 0
	case "burst":
		// Writes 500 lines in one write, then nothing: the file is never seen
		// half-written, and is idle once it has been printed.
		id := os.Getenv("SUPERVISE_TEST_ID")
		var b strings.Builder
		for i := range 500 {
			fmt.Fprintf(&b, "line %s %d %s\n", id, i, strings.Repeat(id, 50))
		}
		os.Stdout.WriteString(b.String())
		<-term
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 2
}

// floodLines is how many lines of 1 KB the flood child writes: 4 MB, sixty times
// what a pipe holds.
const floodLines = 4000

// waitFor polls cond until it holds, failing the test with what was written if it
// does not within polltest's generous deadline. Nothing is timed.
func waitFor(t *testing.T, out *chassistest.LogBuffer, what string, cond func() bool) {
	t.Helper()
	polltest.Until(t, what, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("not yet; output:\n%s", out.String())
	})
}

func contains(out *chassistest.LogBuffer, s string) func() bool {
	return func() bool { return strings.Contains(out.String(), s) }
}

func childSpec(t *testing.T, name, mode string, env ...string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Name: name, Path: exe, Env: append(os.Environ(), append([]string{childEnv + "=" + mode}, env...)...)}
}

func newSupervisor(t *testing.T, out io.Writer) *Supervisor {
	return New(out, Config{Name: "test", PrefixWidth: 6, LogDir: t.TempDir(), MinBackoff: 10 * time.Millisecond, StopTimeout: 10 * time.Second})
}

func TestOutputIsPrefixedAndStopTerminates(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := newSupervisor(t, out)
	p, err := s.Start(childSpec(t, "kid", "serve"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "the child's first line", contains(out, "kid    | hello from stdout\n"))
	pid := p.PID()
	if pid == 0 {
		t.Fatal("PID() = 0 while the child runs")
	}
	s.Stop()

	select {
	case <-p.Done():
	default:
		t.Fatal("Done() is not closed after Stop returned")
	}
	if got := p.PID(); got != 0 {
		t.Errorf("PID() after Stop = %d, want 0", got)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("signal 0 to the stopped child %d: got %v, want ESRCH", pid, err)
	}
	got := out.String()
	for _, want := range []string{
		"test   | kid started (pid ",
		"kid    | hello from stderr\n",
		"kid    | got SIGTERM\n",        // Stop asked politely first
		"kid    | no newline at exit\n", // a last line without a newline is written at exit
		"test   | kid stopped (exit status 0)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q; got:\n%s", want, got)
		}
	}
	if n, _ := p.Exits(); n != 0 {
		t.Errorf("Exits() = %d after a requested stop, want 0", n)
	}
}

func TestCrashedChildIsRestarted(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := newSupervisor(t, out)
	marker := filepath.Join(t.TempDir(), "crashed")
	p, err := s.Start(childSpec(t, "kid", "crash-once", "SUPERVISE_TEST_MARKER="+marker))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitFor(t, out, "the restarted child", contains(out, "kid    | second life\n"))
	n, last := p.Exits()
	if n != 1 || last == nil || last.Error() != "exit status 1" {
		t.Errorf("Exits() = %d, %v; want 1, exit status 1", n, last)
	}
	got := out.String()
	if i, j := strings.Index(got, "kid    | crashing"), strings.Index(got, "test   | kid exited unexpectedly (exit status 1)"); i < 0 || j < i {
		t.Errorf("output does not show the crash and then the restart notice; got:\n%s", got)
	}
}

// TestRestartEnv: a restarted child gets what RestartEnv returns on top of its
// environment, and the first run does not.
func TestRestartEnv(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := newSupervisor(t, out)
	marker := filepath.Join(t.TempDir(), "crashed")
	spec := childSpec(t, "kid", "crash-once-env", "SUPERVISE_TEST_MARKER="+marker, "SUPERVISE_TEST_PORT=0")
	calls := 0
	spec.RestartEnv = func() []string { calls++; return []string{"SUPERVISE_TEST_PORT=41234"} }
	if _, err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitFor(t, out, "the restarted child", contains(out, "kid    | port 41234\n"))
	if got := out.String(); !strings.Contains(got, "kid    | port 0\n") {
		t.Errorf("the first run was not started with the spec's own environment; output:\n%s", got)
	}
	s.Stop()
	if calls != 1 {
		t.Errorf("RestartEnv called %d times, want once (for the one restart)", calls)
	}
}

func TestKilledChildIsRestarted(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := newSupervisor(t, out)
	p, err := s.Start(childSpec(t, "kid", "serve"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitFor(t, out, "the child", func() bool { return p.PID() != 0 })
	first := p.PID()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "a new child", func() bool { pid := p.PID(); return pid != 0 && pid != first })
	if n, last := p.Exits(); n != 1 || last == nil || last.Error() != "signal: killed" {
		t.Errorf("Exits() = %d, %v; want 1, signal: killed", n, last)
	}
}

func TestStopDuringBackoff(t *testing.T) {
	out := &chassistest.LogBuffer{}
	// A backoff far longer than any test: Stop must not wait for it.
	s := New(out, Config{LogDir: t.TempDir(), MinBackoff: time.Hour})
	p, err := s.Start(childSpec(t, "kid", "crash"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "the crash", func() bool { n, _ := p.Exits(); return n == 1 })
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(polltest.Deadline): // an hour's backoff would overrun it by far
		t.Fatal("Stop waited for the restart backoff")
	}
	if !strings.Contains(out.String(), "restarting in 1h0m0s") {
		t.Errorf("output does not announce the restart; got:\n%s", out.String())
	}
}

func TestStopKillsAChildThatIgnoresSIGTERM(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := New(out, Config{Name: "test", LogDir: t.TempDir(), StopTimeout: 100 * time.Millisecond})
	p, err := s.Start(childSpec(t, "kid", "stubborn"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "the child to ignore SIGTERM", contains(out, "kid | ignoring SIGTERM"))
	p.Stop()
	got := out.String()
	for _, want := range []string{"test | kid did not stop within 100ms; killing it", "test | kid stopped (signal: killed)"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q; got:\n%s", want, got)
		}
	}
}

func TestLinesOfTwoChildrenNeverInterleave(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := newSupervisor(t, out)
	for _, id := range []string{"a", "b"} {
		if _, err := s.Start(childSpec(t, id, "chatty", "SUPERVISE_TEST_ID="+id)); err != nil {
			t.Fatal(err)
		}
	}
	full := func() bool { return strings.Count(out.String(), "| line ") == 1000 }
	waitFor(t, out, "1000 lines", full)
	s.Stop()
	seen := map[string]int{}
	for _, line := range strings.Split(out.String(), "\n") {
		name, text, ok := strings.Cut(line, " | ")
		if !ok || !strings.HasPrefix(text, "line ") {
			continue
		}
		name = strings.TrimSpace(name)
		var id string
		var n int
		var tail string
		if _, err := fmt.Sscanf(text, "line %s %d %s", &id, &n, &tail); err != nil || id != name || tail != strings.Repeat(name, 50) {
			t.Fatalf("mangled line %q", line)
		}
		seen[name]++
	}
	if seen["a"] != 500 || seen["b"] != 500 {
		t.Errorf("got %v lines per child, want 500 each", seen)
	}
}

func TestStartErrors(t *testing.T) {
	s := New(&chassistest.LogBuffer{}, Config{LogDir: t.TempDir()})
	if _, err := s.Start(Spec{Name: "nope", Path: filepath.Join(t.TempDir(), "no-such-program")}); err == nil {
		t.Error("Start of a missing program: got nil error")
	}
	if _, err := s.Start(Spec{Path: "/bin/true"}); err == nil {
		t.Error("Start without a name: got nil error")
	}
	s.Stop() // nothing to stop; must return
}

func TestLineWriterSplitsLongLines(t *testing.T) {
	var buf bytes.Buffer
	lw := &lineWriter{out: NewOutput(&buf, 0), name: "x"}
	long := strings.Repeat("z", maxLine+10)
	lw.Write([]byte("a\r\nb"))
	lw.Write([]byte("c\n" + long))
	lw.flush()
	lw.out.Flush()
	want := "x | a\nx | bc\nx | " + long[:maxLine] + "\nx | zzzzzzzzzz\n"
	if got := buf.String(); got != want {
		t.Errorf("got %d bytes %q..., want %d bytes", len(got), got[:min(len(got), 40)], len(want))
	}
}
