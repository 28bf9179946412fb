package supervise

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// maxLine is the longest line kept whole; a longer one is written in pieces of this
// size, each on a line of its own, so that a program that never writes a newline
// cannot make the supervisor hold unbounded memory.
const maxLine = 64 << 10

// Output writes whole lines, each prefixed with a name, to one writer shared by
// several programs. Every line goes out in one Write under a lock, so the lines of
// two programs never interleave mid-line. It is safe for concurrent use.
type Output struct {
	mu    sync.Mutex
	w     io.Writer
	width int
}

// NewOutput returns an Output writing to w that pads every name to width characters.
func NewOutput(w io.Writer, width int) *Output {
	return &Output{w: w, width: width}
}

// Line writes text as one line prefixed with name, as in "book   | text".
func (o *Output) Line(name, text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = fmt.Fprintf(o.w, "%-*s | %s\n", o.width, name, text)
}

// Linef writes a formatted line prefixed with name.
func (o *Output) Linef(name, format string, args ...any) {
	o.Line(name, fmt.Sprintf(format, args...))
}

// Print writes text as it is, without a prefix, in one piece.
func (o *Output) Print(text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = io.WriteString(o.w, text)
}

// lineWriter splits what one stream of a program writes into lines and passes each
// whole line to an Output. Each instance serves one stream, written from one
// goroutine at a time (os/exec copies each stream in a goroutine of its own).
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
