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
	"slices"
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
	client := &http.Client{Timeout: time.Second}
	return p.waitUntil(ctx, "was not ready at "+url, func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitListening waits until addr takes TCP connections, the process exits, ctx ends
// or readyTimeout passes.
func (p *proc) waitListening(ctx context.Context, addr string) error {
	return p.waitUntil(ctx, "did not listen on "+addr, func(context.Context) bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitUntil checks ok every 50 ms until it holds. Errors: the process exited first,
// or readyTimeout passed (the error says the process failed and shows its log), or
// ctx ended.
func (p *proc) waitUntil(ctx context.Context, failed string, ok func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !ok(ctx) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v; its log:\n%s", p.name, p.err, tail(p.log))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s %s within %s; its log:\n%s", p.name, failed, readyTimeout, tail(p.log))
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
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

// The admin account the benchmark makes in the auth service, and logs in as through
// the gateway, so that the gateway verifies a real token on every request measured;
// its token also seeds the services, which take writes only with a token.
const (
	benchAdminEmail    = "bench-admin@folio.test"
	benchAdminPassword = "bench-admin-password-0123456789"
)

// tokenTTL is the lifetime of the benchmark's tokens: longer than any run, so that
// the token logged in with never expires mid-run. Every verifier is told it, since
// each refuses a token that lives longer than it expects.
const tokenTTL = "24h"

// tokenEnv is the environment that makes a program verify the tokens of the auth
// service at authURL: book and author check the token of each write themselves,
// the gateway that of every request.
func tokenEnv(authURL string) []string {
	return []string{"FOLIO_JWKS_URL=" + authURL + "/.well-known/jwks.json", "FOLIO_TOKEN_TTL=" + tokenTTL}
}

// startAuth starts the auth service on addr with a fresh database under dir and the
// benchmark's admin account. It publishes its account events through b, so that
// the verifiers that follow revocations find them there.
func startAuth(dir string, progs map[string]string, addr string, b *brokerSetup) (*proc, error) {
	return startProc(dir, "auth", progs["auth"], nil, append([]string{
		"FOLIO_HTTP_ADDR=" + addr,
		"FOLIO_DATA_DIR=" + filepath.Join(dir, "auth-data"),
		"FOLIO_ADMIN_EMAIL=" + benchAdminEmail,
		"FOLIO_ADMIN_PASSWORD=" + benchAdminPassword,
		"FOLIO_TOKEN_TTL=" + tokenTTL,
	}, b.env()...))
}

// The gateway's rate limit in the benchmark: raised far above any rate this machine
// can reach, so that the limiter runs on every request but never refuses one.
const (
	gatewayRateLimit = "1000000"
	gatewayRateBurst = "1000000"
)

// system is the set of processes under test.
type system struct {
	bookURL, authorURL, ceilingURL string
	authURL, gatewayURL            string
	nginxURL                       string // "" when nginx is not measured
	nginxSkipped                   string // why nginx is not measured, when it is not
	book, author, ceiling          *proc
	auth, gateway, nginx           *proc
	broker                         *brokerSetup // the services' broker, stopped (NATS) or cleaned (RabbitMQ) last
}

// startSystem starts book, author and auth, each with a fresh database under dir,
// the gateway in front of them, nginx in front of book when an nginx binary is on
// PATH, and the ceiling, and waits until all of them answer. Book and author publish
// and consume their events through b, which sys.stop stops or cleans up.
func startSystem(ctx context.Context, dir string, progs map[string]string, b *brokerSetup) (sys *system, err error) {
	sys = &system{broker: b}
	defer func() {
		if err != nil {
			_ = sys.stop()
		}
	}()
	var bookAddr, authorAddr, ceilingAddr, authAddr, gatewayAddr, notifyAddr string
	for _, a := range []*string{&bookAddr, &authorAddr, &ceilingAddr, &authAddr, &gatewayAddr, &notifyAddr} {
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	sys.bookURL, sys.authorURL, sys.ceilingURL = "http://"+bookAddr, "http://"+authorAddr, "http://"+ceilingAddr
	sys.authURL, sys.gatewayURL = "http://"+authAddr, "http://"+gatewayAddr

	trust := tokenEnv(sys.authURL)
	sys.book, err = startProc(dir, "book", progs["book"], nil, slices.Concat([]string{
		"FOLIO_HTTP_ADDR=" + bookAddr,
		"FOLIO_DATA_DIR=" + filepath.Join(dir, "book-data"),
		"FOLIO_AUTHOR_URL=" + sys.authorURL,
	}, trust, b.env()))
	if err != nil {
		return nil, err
	}
	sys.author, err = startProc(dir, "author", progs["author"], nil, slices.Concat([]string{
		"FOLIO_HTTP_ADDR=" + authorAddr,
		"FOLIO_DATA_DIR=" + filepath.Join(dir, "author-data"),
		"FOLIO_BOOK_URL=" + sys.bookURL,
	}, trust, b.env()))
	if err != nil {
		return nil, err
	}
	sys.auth, err = startAuth(dir, progs, authAddr, b)
	if err != nil {
		return nil, err
	}
	// The notify service is not part of the benchmark: its URL is a port nobody serves.
	sys.gateway, err = startProc(dir, "gateway", progs["gateway"], nil, slices.Concat([]string{
		"FOLIO_HTTP_ADDR=" + gatewayAddr,
		"FOLIO_BOOK_URLS=" + sys.bookURL,
		"FOLIO_AUTHOR_URLS=" + sys.authorURL,
		"FOLIO_AUTH_URLS=" + sys.authURL,
		"FOLIO_NOTIFY_URLS=http://" + notifyAddr,
		"FOLIO_RATE_LIMIT=" + gatewayRateLimit,
		"FOLIO_RATE_BURST=" + gatewayRateBurst,
	}, trust, b.env()))
	if err != nil {
		return nil, err
	}
	if nginx, lerr := exec.LookPath("nginx"); lerr != nil {
		sys.nginxSkipped = "no nginx binary on PATH (Debian: apt-get install nginx)"
	} else {
		var nginxAddr string
		if nginxAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		sys.nginxURL = "http://" + nginxAddr
		conf, err := writeNginxConf(dir, nginxAddr, bookAddr)
		if err != nil {
			return nil, err
		}
		sys.nginx, err = startProc(dir, "nginx", nginx, []string{
			"-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"),
		}, nil)
		if err != nil {
			return nil, err
		}
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
	if err := sys.auth.waitReady(ctx, sys.authURL+"/readyz"); err != nil {
		return nil, err
	}
	if err := sys.gateway.waitReady(ctx, sys.gatewayURL+"/readyz"); err != nil {
		return nil, err
	}
	if sys.nginx != nil {
		// nginx forwards /readyz to book, which is ready by now.
		if err := sys.nginx.waitReady(ctx, sys.nginxURL+"/readyz"); err != nil {
			return nil, fmt.Errorf("%w\nnginx error log:\n%s", err, tail(filepath.Join(dir, "nginx-error.log")))
		}
	}
	if err := sys.ceiling.waitReady(ctx, sys.ceilingURL+"/"); err != nil {
		return nil, err
	}
	return sys, nil
}

// writeNginxConf writes dir/nginx.conf: nginx as a plain reverse proxy on addr in
// front of the book service at bookAddr, and returns its path. The master process
// runs in the foreground (daemon off) with one worker per CPU; the error log, the
// pid file and the temporary directories are under dir (the -p prefix); the access
// log is off, as the comparison is with the proxying alone.
func writeNginxConf(dir, addr, bookAddr string) (string, error) {
	user := ""
	if os.Geteuid() == 0 {
		// As root, nginx would run its workers as nobody, who cannot enter dir (0700).
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`# Written by folio bench: nginx as a plain reverse proxy to the book service.
%sdaemon off;
master_process on;
worker_processes auto;
error_log %s warn;
pid %s;

events {
    worker_connections 1024;
}

http {
    access_log off;
    upstream book {
        server %s;
        keepalive 64;
    }
    server {
        listen %s;
        location / {
            proxy_pass http://book;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, user, filepath.Join(dir, "nginx-error.log"), filepath.Join(dir, "nginx.pid"), bookAddr, addr)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("write nginx.conf: %w", err)
	}
	return path, nil
}

// watched returns the processes whose CPU use is reported, in the order of
// watchedNames: this process, then the processes under test. An absent process has
// pid 0. nginx's CPU includes that of its workers, the master's children.
func (sys *system) watched() []watchedProc {
	pid := func(p *proc) int {
		if p == nil {
			return 0
		}
		return p.pid
	}
	return []watchedProc{
		{pid: os.Getpid()},
		{pid: pid(sys.ceiling)},
		{pid: pid(sys.book)},
		{pid: pid(sys.author)},
		{pid: pid(sys.gateway)},
		{pid: pid(sys.nginx), children: true},
		{pid: pid(sys.broker.natsProc())},
	}
}

// stop stops every process started, all at once, and waits for them. It reports
// those that had exited by themselves before.
func (sys *system) stop() error {
	var errs []error
	procs := []*proc{sys.ceiling, sys.nginx, sys.gateway, sys.auth, sys.author, sys.book}
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
	// Last, so that no service is left without its broker while it stops.
	errs = append(errs, sys.broker.stop())
	return errors.Join(errs...)
}

// nginxVersion returns what `nginx -v` says, on one line.
func nginxVersion() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nginx", "-v").CombinedOutput()
	if err != nil {
		return "nginx (version unknown: " + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}
