package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// maxLine is the longest line kept whole; a longer one is written in pieces of this
// size, each on a line of its own, so that a program that never writes a newline
// cannot make the supervisor hold unbounded memory.
const maxLine = 64 << 10

// defaultQueueLimit is how many bytes of lines an Output holds while its writer is
// blocked before it drops lines.
const defaultQueueLimit = 8 << 20

// Output writes whole lines, each prefixed with a name, to one writer shared by
// several programs. Every line goes out in one Write, so the lines of two programs
// never interleave mid-line. Writing never blocks the caller: lines wait in a queue
// that a goroutine of the Output empties into the writer, and if the writer is
// blocked (a terminal paused with Ctrl-S, a reader that does not read) until the
// queue holds its limit, further lines are dropped and counted, and a line saying how
// many follows once there is room again. It is safe for concurrent use.
type Output struct {
	w     io.Writer
	width int
	name  string // prefixes the Output's own line about dropped lines
	limit int    // bytes of queued lines, beyond which lines are dropped

	mu      sync.Mutex
	idle    sync.Cond // signalled when the writing goroutine has emptied the queue
	queue   []string
	queued  int // bytes in queue and in the batch being written
	dropped int
	writing bool // a goroutine is writing the queue out
}

// NewOutput returns an Output writing to w that pads every name to width characters.
func NewOutput(w io.Writer, width int) *Output {
	o := &Output{w: w, width: width, name: "output", limit: defaultQueueLimit}
	o.idle.L = &o.mu
	return o
}

// Line writes text as one line prefixed with name, as in "book   | text".
func (o *Output) Line(name, text string) {
	o.enqueue(fmt.Sprintf("%-*s | %s\n", o.width, name, text))
}

// Linef writes a formatted line prefixed with name.
func (o *Output) Linef(name, format string, args ...any) {
	o.Line(name, fmt.Sprintf(format, args...))
}

// Print writes text as it is, without a prefix, in one piece.
func (o *Output) Print(text string) { o.enqueue(text) }

// Flush returns once every line written so far has been written to the writer.
func (o *Output) Flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.writing {
		o.idle.Wait()
	}
}

func (o *Output) enqueue(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.queued+len(s) > o.limit {
		o.dropped++
		return
	}
	if o.dropped > 0 {
		note := fmt.Sprintf("%-*s | %d lines were not shown: the output was blocked (the programs' log files have them)\n", o.width, o.name, o.dropped)
		o.queue = append(o.queue, note)
		o.queued += len(note)
		o.dropped = 0
	}
	o.queue = append(o.queue, s)
	o.queued += len(s)
	if !o.writing {
		o.writing = true
		go o.drain()
	}
}

// drain writes the queue out until it is empty.
func (o *Output) drain() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.queue) > 0 {
		batch := o.queue
		o.queue = nil
		o.mu.Unlock()
		n := 0
		for _, s := range batch {
			_, _ = io.WriteString(o.w, s)
			n += len(s)
		}
		o.mu.Lock()
		o.queued -= n
	}
	o.writing = false
	o.idle.Broadcast()
}

// lineWriter splits what a program writes into lines and passes each whole line to
// an Output. It is used from one goroutine at a time.
type lineWriter struct {
	out  *Output
	name string
	buf  []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			lw.buf = append(lw.buf, p...)
			for len(lw.buf) >= maxLine {
				lw.emit(lw.buf[:maxLine])
				lw.buf = append(lw.buf[:0], lw.buf[maxLine:]...)
			}
			break
		}
		if len(lw.buf) > 0 {
			lw.buf = append(lw.buf, p[:i]...)
			lw.emit(lw.buf)
			lw.buf = lw.buf[:0]
		} else {
			lw.emit(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// flush writes out a last line that did not end in a newline.
func (lw *lineWriter) flush() {
	if len(lw.buf) > 0 {
		lw.emit(lw.buf)
		lw.buf = lw.buf[:0]
	}
}

func (lw *lineWriter) emit(line []byte) {
	lw.out.Line(lw.name, string(bytes.TrimSuffix(line, []byte("\r"))))
}

// follower prints what a program appends to its log file, as tail -f does: every
// logPoll it reads what is new and passes it on line by line. Once it has printed
// more than Config.LogFileLimit bytes and the program has written nothing since, it
// empties the file (the program appends, so it goes on writing at the new end).
type follower struct {
	path  string
	limit int64

	mu    sync.Mutex
	f     *os.File // read from off
	off   int64
	lines lineWriter
	buf   []byte
}

// newFollower makes the empty log file of a program named name, keeping the one
// of an earlier supervisor as <name>.log.1.
func newFollower(s *Supervisor, name string) (*follower, error) {
	if err := os.MkdirAll(s.cfg.LogDir, 0o700); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	path := s.LogFile(name)
	if err := os.Rename(path, path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("log file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return &follower{path: path, limit: s.cfg.LogFileLimit, f: f,
		lines: lineWriter{out: s.out, name: name}, buf: make([]byte, 64<<10)}, nil
}

// follow prints the file as it grows until the function it returns is called;
// that function prints what is left and closes the file.
func (fl *follower) follow() (stop func()) {
	quit, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		ticker := time.NewTicker(logPoll)
		defer ticker.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ticker.C:
				fl.read(false)
			}
		}
	}()
	return func() {
		close(quit)
		<-stopped
		fl.read(true)
		fl.f.Close()
	}
}

// read prints what was appended since the last read; with end (the program has
// exited), a last line without a newline too.
func (fl *follower) read(end bool) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for {
		n, err := fl.f.ReadAt(fl.buf, fl.off)
		if n > 0 {
			fl.lines.Write(fl.buf[:n])
			fl.off += int64(n)
		}
		if err != nil || n == 0 {
			break
		}
	}
	if end {
		fl.lines.flush()
	}
	if fl.off < fl.limit {
		return
	}
	// Emptied only when all of it has been printed: a line the program writes
	// between the size check and the truncation is lost to the console, so a busy
	// program's file is emptied regardless only at twice the limit.
	if st, err := fl.f.Stat(); err == nil && (st.Size() == fl.off || fl.off >= 2*fl.limit) {
		if os.Truncate(fl.path, 0) == nil {
			fl.off = 0
		}
	}
}
