// Package supervise is the process manager of `folio up` and `folio nats`: it runs
// programs as child processes, prints what they write, and keeps them running.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	// LogDir is the directory of the programs' log files, <name>.log (required);
	// the log of a program's previous supervisor is kept as <name>.log.1.
	LogDir string
	// LogFileLimit is the size past which a log file, once printed, is emptied
	// (default 64 MiB), so that a long run does not fill the disk.
	LogFileLimit int64
	// MinBackoff is the wait before the first restart of an incident (default
	// 500 ms); each further restart in the same incident waits twice as long as the
	// one before, up to MaxBackoff (default 30 s).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// HealthyFor ends an incident: a program that was ready for this long before it
	// exited is restarted after MinBackoff again (default 5 s). A program without
	// Spec.Ready is ready as soon as it has started.
	HealthyFor time.Duration
	// ProbeInterval is how often Spec.Ready and Spec.Alive are called (default 1 s),
	// and ProbeTimeout how long one call may take (default 2 s).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// StopTimeout is how long Stop, or a restart for failed health checks, waits
	// after SIGTERM before it sends SIGKILL (default 10 s).
	StopTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "supervise"
	}
	if c.LogFileLimit <= 0 {
		c.LogFileLimit = 64 << 20
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.HealthyFor <= 0 {
		c.HealthyFor = 5 * time.Second
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 2 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
	return c
}

// logPoll is how often a program's log file is read for new lines.
const logPoll = 50 * time.Millisecond

// Spec says how to run one program.
type Spec struct {
	// Name prefixes the program's output lines and names it in the supervisor's,
	// and its log file.
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
	// Ready, if set, says whether the program serves: it is called every
	// Config.ProbeInterval from each start until it first returns nil. Only the time
	// from then counts towards Config.HealthyFor.
	Ready func(ctx context.Context) error
	// ReadyWithin, if positive, restarts a program that has not been ready this long
	// after it started (with Ready set).
	ReadyWithin time.Duration
	// Alive, if set, is called every Config.ProbeInterval once the program is ready;
	// after AliveFailures errors in a row (default 3) the program is restarted
	// (SIGTERM, then SIGKILL after Config.StopTimeout), even though it still runs.
	Alive         func(ctx context.Context) error
	AliveFailures int
}

// Supervisor starts programs and keeps them running until Stop, the way a local
// process manager does: every program writes to a log file of its own, which the
// supervisor follows and prints line by line with the program's name in front; a
// program that exits, or fails its health checks, is restarted with a backoff that
// grows within one incident and starts afresh once the program has been healthy; and
// programs are stopped with SIGTERM, then SIGKILL after a grace period. On Linux a
// child is also killed when the supervising process dies, so that no program
// outlives it.
//
// A child never writes to a pipe the supervisor must drain: if the supervisor is
// stopped (SIGSTOP), busy, or its own output is blocked, the children keep writing
// to their files and keep running.
type Supervisor struct {
	cfg Config
	out *Output
	// now is the clock of the backoff: how long a program was ready is measured
	// with it. Tests replace it to choose what the supervisor sees.
	now func() time.Time

	mu    sync.Mutex
	procs []*Process
}

// New returns a Supervisor that writes the programs' output, and its own lines about
// them, to w. Nothing it writes there can hold up a program (see Output).
func New(w io.Writer, cfg Config) *Supervisor {
	cfg = cfg.withDefaults()
	out := NewOutput(w, cfg.PrefixWidth)
	out.name = cfg.Name
	return &Supervisor{cfg: cfg, out: out, now: time.Now}
}

// Output returns the line-atomic writer the supervisor writes to, so that the caller
// can write its own lines without splitting anyone else's.
func (s *Supervisor) Output() *Output { return s.out }

// Logf writes one of the supervisor's own lines, prefixed with Config.Name.
func (s *Supervisor) Logf(format string, args ...any) { s.out.Linef(s.cfg.Name, format, args...) }

// LogFile returns the path of the log file of the program named name.
func (s *Supervisor) LogFile(name string) string {
	return filepath.Join(s.cfg.LogDir, name+".log")
}

// Start starts spec's program and supervises it until Stop: what it writes goes to
// its log file, which is printed line by line on the supervisor's writer, and it is
// restarted whenever it exits. Errors: the program could not be started (not found,
// not executable) or its log file cannot be made, in which case nothing is left
// running.
func (s *Supervisor) Start(spec Spec) (*Process, error) {
	if spec.Name == "" || spec.Path == "" {
		return nil, errors.New("supervise: a program needs a name and a path")
	}
	if s.cfg.LogDir == "" {
		return nil, errors.New("supervise: Config.LogDir is not set")
	}
	if spec.AliveFailures <= 0 {
		spec.AliveFailures = 3
	}
	log, err := newFollower(s, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{s: s, spec: spec, log: log, stop: make(chan struct{}), done: make(chan struct{})}
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

// Stop stops every program started so far, all at once, and returns when none runs
// and everything they wrote has been printed.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	procs := append([]*Process(nil), s.procs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.Stop)
	}
	wg.Wait()
	s.out.Flush()
}

// Process is one supervised program: the child process running it now and the ones
// that ran it before.
type Process struct {
	s    *Supervisor
	spec Spec
	log  *follower
	stop chan struct{} // closed by Stop, with mu held
	done chan struct{} // closed when supervision has ended and no child runs

	mu      sync.Mutex
	cmd     *exec.Cmd // the running child, nil between runs
	readyAt time.Time // when the running child was first ready; zero before
	restart string    // why the running child is being restarted, "" if it is not
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

// Ready reports whether the running child has been ready (see Spec.Ready).
func (p *Process) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.readyAt.IsZero()
}

// Exits returns how many times the program exited, was restarted for failed health
// checks or failed to restart, without being asked to stop, and why it did the last
// time (nil when it never did).
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
// has exited and what it and the supervisor wrote about it has been printed.
// Calling it again, or concurrently, is safe.
func (p *Process) Stop() {
	defer p.s.out.Flush()
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
// A stopped process (SIGSTOP) is continued, so that it can act on the request.
func terminate(proc *os.Process) {
	if err := proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = proc.Kill()
		return
	}
	resume(proc)
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
	following := p.log.follow()
	defer following()

	incident := backoff{min: p.s.cfg.MinBackoff, max: p.s.cfg.MaxBackoff}
	first := true
	for {
		cmd, stopped, err := p.startChild(first)
		if stopped {
			if first {
				started <- errors.New("stopped before it started")
			}
			return
		}
		if first {
			first = false
			started <- err
			if err != nil {
				return
			}
		}
		var wait time.Duration
		if err != nil {
			p.recordExit(err)
			wait = incident.next(false)
			p.s.Logf("%s could not be restarted (%v); trying again in %s", p.spec.Name, err, wait)
		} else if wait, stopped = p.runChild(cmd, &incident); stopped {
			return
		}

		timer := time.NewTimer(wait)
		select {
		case <-p.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// startChild starts a child running the program, unless Stop has been called: then
// it reports stopped. The error is that of a start that failed.
func (p *Process) startChild(first bool) (cmd *exec.Cmd, stopped bool, err error) {
	cmd, err = p.command(first)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping() {
		if cmd != nil {
			cmd.Stdout.(*os.File).Close()
		}
		return nil, true, nil
	}
	if err == nil {
		err = cmd.Start()
	}
	if cmd != nil {
		// The child has its own copy of the log file's descriptor.
		cmd.Stdout.(*os.File).Close()
	}
	if err == nil {
		p.cmd, p.readyAt, p.restart = cmd, time.Time{}, ""
	}
	return cmd, false, err
}

// runChild watches the started child cmd until it exits and returns the wait
// before the next start, or stopped when Stop ended it.
func (p *Process) runChild(cmd *exec.Cmd, incident *backoff) (wait time.Duration, stopped bool) {
	p.s.Logf("%s started (pid %d)", p.spec.Name, cmd.Process.Pid)
	began := p.s.now()
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() { defer close(watching); p.watch(ctx, cmd, began) }()
	err := cmd.Wait()
	ended := p.s.now()
	cancel()
	<-watching
	p.log.read(true)
	readyAt, restart, stopping := p.recordEnd(err)
	if stopping {
		p.s.Logf("%s stopped (%v)", p.spec.Name, exitError(err))
		return 0, true
	}
	healthy := !readyAt.IsZero() && ended.Sub(readyAt) >= p.s.cfg.HealthyFor
	wait = incident.next(healthy)
	how := "exited unexpectedly"
	if restart != "" {
		how = "was stopped because it " + restart
	}
	p.s.Logf("%s %s (%v) after %s; restarting in %s",
		p.spec.Name, how, exitError(err), ended.Sub(began).Round(time.Millisecond), wait)
	return wait, false
}

// recordEnd records that the running child exited with err, as an exit of the
// program unless Stop ended it, and returns when the child was ready and why it was
// restarted, if it was.
func (p *Process) recordEnd(err error) (readyAt time.Time, restart string, stopping bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = nil
	stopping = p.stopping()
	readyAt, restart = p.readyAt, p.restart
	if !stopping {
		p.exits++
		p.lastErr = exitError(err)
		if restart != "" {
			p.lastErr = fmt.Errorf("%s (%w)", restart, exitError(err))
		}
	}
	return readyAt, restart, stopping
}

// backoff is the wait before each restart of one program. An incident is a run of
// exits close together: the first restart of an incident waits min, each further one
// twice as long as the one before, up to max. A run that was healthy (ready for
// Config.HealthyFor) ends the incident, so that crashes minutes apart, each of them
// after good service, are each restarted quickly.
type backoff struct {
	min, max time.Duration
	last     time.Duration // the previous wait of this incident; 0 when none
}

// next returns the wait before the next start, given whether the run that just ended
// was healthy.
func (b *backoff) next(healthy bool) time.Duration {
	if healthy || b.last == 0 {
		b.last = b.min
	} else {
		b.last = min(2*b.last, b.max)
	}
	return b.last
}

// watch calls the program's Ready and Alive checks while cmd runs, until ctx ends,
// and restarts cmd when it is not ready within Spec.ReadyWithin or fails
// Spec.AliveFailures Alive checks in a row.
func (p *Process) watch(ctx context.Context, cmd *exec.Cmd, began time.Time) {
	cfg, spec := p.s.cfg, p.spec
	ready := spec.Ready == nil
	if ready {
		p.setReady(cmd, began)
	}
	ticker := time.NewTicker(cfg.ProbeInterval)
	defer ticker.Stop()
	failures := 0
	for {
		switch {
		case !ready:
			if err := p.check(ctx, spec.Ready); err == nil {
				ready = true
				p.setReady(cmd, p.s.now())
			} else if spec.ReadyWithin > 0 && p.s.now().Sub(began) >= spec.ReadyWithin {
				p.restartFor(ctx, cmd, fmt.Sprintf("was not ready within %s (%v)", spec.ReadyWithin, err))
				return
			}
		case spec.Alive != nil:
			if err := p.check(ctx, spec.Alive); err == nil {
				failures = 0
			} else if failures++; failures >= spec.AliveFailures {
				p.restartFor(ctx, cmd, fmt.Sprintf("failed %d health checks in a row (the last: %v)", failures, err))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// check calls one of the program's checks with Config.ProbeTimeout.
func (p *Process) check(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.s.cfg.ProbeTimeout)
	defer cancel()
	err := f(ctx)
	if err == nil && ctx.Err() != nil {
		// The run ended while the check ran: its answer is about no one.
		err = ctx.Err()
	}
	return err
}

func (p *Process) setReady(cmd *exec.Cmd, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == cmd {
		p.readyAt = at
	}
}

// restartFor stops cmd, which still runs but does not serve, so that supervise
// starts the program again: SIGTERM (and SIGCONT, for a child that is stopped), then
// SIGKILL after Config.StopTimeout. It returns when cmd has exited (ctx ends) or has
// been killed.
func (p *Process) restartFor(ctx context.Context, cmd *exec.Cmd, why string) {
	p.mu.Lock()
	if p.cmd != cmd || p.stopping() {
		p.mu.Unlock()
		return
	}
	p.restart = why
	p.mu.Unlock()
	p.s.Logf("%s %s; restarting it", p.spec.Name, why)
	terminate(cmd.Process)
	timer := time.NewTimer(p.s.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
		p.s.Logf("%s did not stop within %s; killing it", p.spec.Name, p.s.cfg.StopTimeout)
		_ = cmd.Process.Kill()
	}
}

func (p *Process) recordExit(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exits++
	p.lastErr = err
}

// command prepares one run of the program (the first, or a restart), with its stdout
// and stderr both appended to its log file. A file, unlike a pipe, never fills up:
// the child writes on whether or not the supervisor reads.
func (p *Process) command(first bool) (*exec.Cmd, error) {
	f, err := os.OpenFile(p.log.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = p.spec.Env
	if !first && p.spec.RestartEnv != nil {
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(slices.Clip(cmd.Env), p.spec.RestartEnv()...)
	}
	cmd.Dir = p.spec.Dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	return cmd, nil
}

// exitError describes how a child ended; a clean exit, which Wait reports as nil, is
// still worth naming when nobody asked for it.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}
