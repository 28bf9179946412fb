package loadbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds the wait for a started process to answer.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long a process gets to exit after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
)

// proc is one started OS process: a service or the ceiling.
type proc struct {
	name   string
	pid    int
	log    string
	cancel context.CancelFunc
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done is closed
}

// startProc starts path with args and env (added to this process's environment
// without its FOLIO_ variables), writing its output to dir/name.log. The process is
// sent SIGTERM when its cancel is called, and SIGKILL stopTimeout later if still running.
func startProc(dir, name, path string, args, env []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close() // the child holds its own descriptor

	pctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pctx, path, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, log: logPath, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// cleanEnv is this process's environment without FOLIO_ variables, so that the
// programs run with their defaults and nothing set for this process leaks into them.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FOLIO_") {
			env = append(env, kv)
		}
	}
	return env
}

// exitedEarly returns an error if the process has already exited by itself.
func (p *proc) exitedEarly() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early: %v; its log:\n%s", p.name, p.err, tail(p.log))
	default:
		return nil
	}
}

// waitReady polls url until it answers 200, the process exits, ctx ends or
// readyTimeout passes.
func (p *proc) waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v; its log:\n%s", p.name, p.err, tail(p.log))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s was not ready at %s within %s; its log:\n%s", p.name, url, readyTimeout, tail(p.log))
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// tail returns the last lines of the file at path.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

// system is the set of processes under test.
type system struct {
	bookURL, authorURL, ceilingURL string
	book, author, ceiling          *proc
}

// startSystem starts book and author, each with a fresh database under dir, and the
// ceiling, and waits until all three answer.
func startSystem(ctx context.Context, dir string, progs map[string]string) (sys *system, err error) {
	sys = &system{}
	defer func() {
		if err != nil {
			_ = sys.stop()
		}
	}()
	var bookAddr, authorAddr, ceilingAddr string
	for _, a := range []*string{&bookAddr, &authorAddr, &ceilingAddr} {
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	sys.bookURL, sys.authorURL, sys.ceilingURL = "http://"+bookAddr, "http://"+authorAddr, "http://"+ceilingAddr

	sys.book, err = startProc(dir, "book", progs["book"], nil, []string{
		"FOLIO_HTTP_ADDR=" + bookAddr,
		"FOLIO_DATA_DIR=" + filepath.Join(dir, "book-data"),
		"FOLIO_AUTHOR_URL=" + sys.authorURL,
	})
	if err != nil {
		return nil, err
	}
	sys.author, err = startProc(dir, "author", progs["author"], nil, []string{
		"FOLIO_HTTP_ADDR=" + authorAddr,
		"FOLIO_DATA_DIR=" + filepath.Join(dir, "author-data"),
		"FOLIO_BOOK_URL=" + sys.bookURL,
	})
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start ceiling: %w", err)
	}
	sys.ceiling, err = startProc(dir, "ceiling", exe, os.Args[1:], []string{CeilingEnv + "=" + ceilingAddr})
	if err != nil {
		return nil, err
	}

	if err := sys.book.waitReady(ctx, sys.bookURL+"/readyz"); err != nil {
		return nil, err
	}
	if err := sys.author.waitReady(ctx, sys.authorURL+"/readyz"); err != nil {
		return nil, err
	}
	if err := sys.ceiling.waitReady(ctx, sys.ceilingURL+"/"); err != nil {
		return nil, err
	}
	return sys, nil
}

// pids returns the process ids of this process and of the processes under test, in
// the order of watchedNames.
func (sys *system) pids() []int {
	return []int{os.Getpid(), sys.ceiling.pid, sys.book.pid, sys.author.pid}
}

// stop stops every process started, all at once, and waits for them. It reports
// those that had exited by themselves before.
func (sys *system) stop() error {
	var errs []error
	procs := []*proc{sys.ceiling, sys.author, sys.book}
	for _, p := range procs {
		if p != nil {
			errs = append(errs, p.exitedEarly())
			p.cancel()
		}
	}
	for _, p := range procs {
		if p != nil {
			<-p.done
		}
	}
	return errors.Join(errs...)
}
