// Package supervise runs programs as child processes and keeps them running, the way
// a local process manager does: it prefixes every line a program writes with its name,
// restarts a program that exits unexpectedly with exponential backoff, and stops
// programs with SIGTERM, then SIGKILL after a grace period. On Linux a child is also
// killed when the supervising process dies, so that no program outlives it.
package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Config tunes a Supervisor. Zero fields take the defaults named.
type Config struct {
	// Name prefixes the supervisor's own lines (default "supervise").
	Name string
	// PrefixWidth pads every prefix to this many characters so that the lines of
	// several programs line up (default: no padding).
	PrefixWidth int
	// MinBackoff is the wait before the first restart (default 500 ms); each further
	// restart waits twice as long as the one before, up to MaxBackoff (default 30 s).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// ResetAfter is how long a program must run for the wait before its next restart
	// to fall back to MinBackoff (default 60 s).
	ResetAfter time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL
	// (default 10 s).
	StopTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "supervise"
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.ResetAfter <= 0 {
		c.ResetAfter = 60 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
	return c
}

// Spec says how to run one program.
type Spec struct {
	// Name prefixes the program's output lines and names it in the supervisor's.
	Name string
	// Path is the program to run; Args are its arguments, without the program name.
	Path string
	Args []string
	// Env is the program's whole environment, as in exec.Cmd: nil inherits the
	// supervisor's, and of two entries for one variable the later wins.
	Env []string
	// Dir is the program's working directory ("" is the supervisor's).
	Dir string
	// RestartEnv, if set, is called before every run but the first; what it
	// returns is added to Env for that run. A program that took a port the system
	// picked is told there to take that port again (folio up's extra instances).
	RestartEnv func() []string
}

// Supervisor starts programs and keeps them running until Stop.
type Supervisor struct {
	cfg Config
	out *Output

	mu    sync.Mutex
	procs []*Process
}

// New returns a Supervisor that writes the programs' output, and its own lines about
// them, to w.
func New(w io.Writer, cfg Config) *Supervisor {
	cfg = cfg.withDefaults()
	return &Supervisor{cfg: cfg, out: NewOutput(w, cfg.PrefixWidth)}
}

// Output returns the line-atomic writer the supervisor writes to, so that the caller
// can write its own lines without splitting anyone else's.
func (s *Supervisor) Output() *Output { return s.out }

// Logf writes one of the supervisor's own lines, prefixed with Config.Name.
func (s *Supervisor) Logf(format string, args ...any) { s.out.Linef(s.cfg.Name, format, args...) }

// Start starts spec's program and supervises it until Stop: its output goes to the
// supervisor's writer line by line, and it is restarted whenever it exits. Errors:
// the program could not be started (not found, not executable), in which case
// nothing is left running.
func (s *Supervisor) Start(spec Spec) (*Process, error) {
	if spec.Name == "" || spec.Path == "" {
		return nil, errors.New("supervise: a program needs a name and a path")
	}
	p := &Process{s: s, spec: spec, stop: make(chan struct{}), done: make(chan struct{})}
	started := make(chan error, 1)
	go p.supervise(started)
	if err := <-started; err != nil {
		<-p.done
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// Stop stops every program started so far, all at once, and returns when none runs.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	procs := append([]*Process(nil), s.procs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.Stop)
	}
	wg.Wait()
}

// Process is one supervised program: the child process running it now and the ones
// that ran it before.
type Process struct {
	s    *Supervisor
	spec Spec
	stop chan struct{} // closed by Stop, with mu held
	done chan struct{} // closed when supervision has ended and no child runs

	mu      sync.Mutex
	cmd     *exec.Cmd // the running child, nil between runs
	exits   int
	lastErr error
}

// Name returns the program's name.
func (p *Process) Name() string { return p.spec.Name }

// PID returns the process id of the running child, or 0 while none runs.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exits returns how many times the program exited or failed to restart without being
// asked to stop, and why it did the last time (nil when it never did).
func (p *Process) Exits() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exits, p.lastErr
}

// Done returns a channel that is closed once the program has been stopped and no
// child of it runs any more.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop ends supervision: it sends the running child SIGTERM, waits up to
// Config.StopTimeout for it to exit, then sends SIGKILL. It returns once the child
// has exited. Calling it again, or concurrently, is safe.
func (p *Process) Stop() {
	p.mu.Lock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil {
		terminate(cmd.Process)
	}
	timer := time.NewTimer(p.s.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return
	case <-timer.C:
	}
	p.mu.Lock()
	cmd = p.cmd
	p.mu.Unlock()
	if cmd != nil {
		p.s.Logf("%s did not stop within %s; killing it", p.spec.Name, p.s.cfg.StopTimeout)
		_ = cmd.Process.Kill()
	}
	<-p.done
}

// terminate asks a process to stop, or kills it where it cannot be asked (Windows).
func terminate(proc *os.Process) {
	if err := proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = proc.Kill()
	}
}

func (p *Process) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// supervise runs the program again and again until Stop, reporting the outcome of the
// first start on started.
func (p *Process) supervise(started chan<- error) {
	// On Linux the child is started with a parent-death signal, which the kernel sends
	// when the thread that started the child ends, not only when the whole process
	// does. Locking this goroutine to its thread keeps the runtime from ending or
	// reusing that thread while the child runs; the goroutine returns, and the thread
	// ends, only after the child has exited.
	runtime.LockOSThread()
	defer close(p.done)

	cfg := p.s.cfg
	backoff := cfg.MinBackoff
	first := true
	for {
		cmd, streams := p.command(first)
		p.mu.Lock()
		if p.stopping() {
			p.mu.Unlock()
			if first {
				started <- errors.New("stopped before it started")
			}
			return
		}
		err := cmd.Start()
		if err == nil {
			p.cmd = cmd
		}
		p.mu.Unlock()

		if first {
			first = false
			started <- err
			if err != nil {
				return
			}
		}
		if err != nil {
			p.recordExit(err)
			p.s.Logf("%s could not be restarted (%v); trying again in %s", p.spec.Name, err, backoff)
		} else {
			p.s.Logf("%s started (pid %d)", p.spec.Name, cmd.Process.Pid)
			began := time.Now()
			err = cmd.Wait()
			for _, lw := range streams {
				lw.flush()
			}
			ran := time.Since(began)
			p.mu.Lock()
			p.cmd = nil
			stopping := p.stopping()
			if !stopping {
				p.exits++
				p.lastErr = exitError(err)
			}
			p.mu.Unlock()
			if stopping {
				p.s.Logf("%s stopped (%v)", p.spec.Name, exitError(err))
				return
			}
			if ran >= cfg.ResetAfter {
				backoff = cfg.MinBackoff
			}
			p.s.Logf("%s exited unexpectedly (%v) after %s; restarting in %s",
				p.spec.Name, exitError(err), ran.Round(time.Millisecond), backoff)
		}

		timer := time.NewTimer(backoff)
		select {
		case <-p.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

func (p *Process) recordExit(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exits++
	p.lastErr = err
}

// command prepares one run of the program (the first, or a restart), with its stdout and stderr split into
// prefixed lines.
func (p *Process) command(first bool) (*exec.Cmd, []*lineWriter) {
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = p.spec.Env
	if !first && p.spec.RestartEnv != nil {
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(slices.Clip(cmd.Env), p.spec.RestartEnv()...)
	}
	cmd.Dir = p.spec.Dir
	stdout := &lineWriter{out: p.s.out, name: p.spec.Name}
	stderr := &lineWriter{out: p.s.out, name: p.spec.Name}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = sysProcAttr()
	// A grandchild that keeps the output pipes open must not keep Wait from returning.
	cmd.WaitDelay = 2 * time.Second
	return cmd, []*lineWriter{stdout, stderr}
}

// exitError describes how a child ended; a clean exit, which Wait reports as nil, is
// still worth naming when nobody asked for it.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}
