package supervise

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/polltest"
)

// blockedWriter is a supervisor's output that nobody reads until release: a
// terminal paused with Ctrl-S, or a supervisor that cannot run.
type blockedWriter struct {
	release chan struct{}
	out     *chassistest.LogBuffer
	once    sync.Once
}

func newBlockedWriter() *blockedWriter {
	return &blockedWriter{release: make(chan struct{}), out: &chassistest.LogBuffer{}}
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.out.Write(p)
}

func (w *blockedWriter) Release() { w.once.Do(func() { close(w.release) }) }

// TestChildKeepsRunningWhileNobodyReadsItsOutput: a child that writes far more than
// a pipe holds goes on to serve while the supervisor's output is blocked, and
// every line is printed once the output moves again.
func TestChildKeepsRunningWhileNobodyReadsItsOutput(t *testing.T) {
	w := newBlockedWriter()
	defer w.Release()
	s := New(w, Config{Name: "test", LogDir: t.TempDir()})
	marker := filepath.Join(t.TempDir(), "served")
	if _, err := s.Start(childSpec(t, "kid", "flood", "SUPERVISE_TEST_MARKER="+marker)); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	polltest.Until(t, "the child to get past its output while nobody reads it", func() error {
		_, err := os.Stat(marker)
		return err
	})
	w.Release()
	last := fmt.Sprintf("kid | flood %d ", floodLines-1)
	waitFor(t, w.out, "the last line printed", contains(w.out, last))
	if n := strings.Count(w.out.String(), "kid | flood "); n != floodLines {
		t.Errorf("printed %d lines of the child, want %d", n, floodLines)
	}
}

// TestOutputDropsLinesWhileBlocked: past its limit a blocked Output drops lines
// rather than blocking the writer, and says how many once it can.
func TestOutputDropsLinesWhileBlocked(t *testing.T) {
	w := newBlockedWriter()
	o := NewOutput(w, 0)
	o.name = "test"
	o.limit = 50
	for i := range 10 {
		o.Line("kid", fmt.Sprintf("line %d", i)) // 13 bytes each: 3 fit
	}
	w.Release()
	o.Flush()
	o.Line("kid", "after")
	o.Flush()
	want := "kid | line 0\nkid | line 1\nkid | line 2\ntest | 7 lines were not shown: the output was blocked (the programs' log files have them)\nkid | after\n"
	if got := w.out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestLogFiles: what a child writes is in its log file, and a new supervisor keeps
// the previous one's file as <name>.log.1.
func TestLogFiles(t *testing.T) {
	dir := t.TempDir()
	for _, run := range []string{"first", "second"} {
		out := &chassistest.LogBuffer{}
		s := New(out, Config{LogDir: dir})
		if _, err := s.Start(childSpec(t, "kid", "serve")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, out, run+" run's line", contains(out, "kid | hello from stdout"))
		s.Stop()
		if run == "first" {
			if err := os.WriteFile(s.LogFile("kid")+".1", []byte("older"), 0o600); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(s.LogFile("kid"))
			if err := os.WriteFile(filepath.Join(dir, "first"), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, _ := os.ReadFile(filepath.Join(dir, "first"))
	if want := "hello from stdout\nhello from stderr\ngot SIGTERM\nno newline at exit"; string(first) != want {
		t.Errorf("first log file: %q, want %q", first, want)
	}
	if kept, _ := os.ReadFile(filepath.Join(dir, "kid.log.1")); string(kept) != string(first) {
		t.Errorf("kid.log.1 is %q, want the first run's %q", kept, first)
	}
	fi, err := os.Stat(filepath.Join(dir, "kid.log"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kid.log: %v (stat error %v), want mode 0600", fi.Mode(), err)
	}
}

// TestLogFileIsEmptiedPastItsLimit: once printed, a file past the limit is emptied.
// The program writes its lines in one write and then nothing: a file still being
// written may be emptied between two of its writes once past twice the limit,
// and lose the lines written in between to the console (output.go says why), so a
// test that waits for every line of a busy program fails when the machine is slow.
func TestLogFileIsEmptiedPastItsLimit(t *testing.T) {
	out := &chassistest.LogBuffer{}
	s := New(out, Config{LogDir: t.TempDir(), LogFileLimit: 4 << 10})
	if _, err := s.Start(childSpec(t, "a", "burst", "SUPERVISE_TEST_ID=a")); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitFor(t, out, "the last line", contains(out, "| line a 499 "))
	polltest.Until(t, "the log file emptied", func() error {
		fi, err := os.Stat(s.LogFile("a"))
		if err != nil {
			return err
		}
		if fi.Size() != 0 {
			return fmt.Errorf("%d bytes", fi.Size())
		}
		return nil
	})
}
