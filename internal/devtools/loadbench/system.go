package loadbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"folio/internal/platform/httpserver"
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
// readyTimeout passes. url must come from the process's own addr file, so that what
// answers is this process.
func (p *proc) waitReady(ctx context.Context, url string) error {
	return p.waitReadyMarked(ctx, url, "", "")
}

// waitReadyMarked is waitReady for a process whose answers carry the header name
// with value: an answer without it is from another program.
func (p *proc) waitReadyMarked(ctx context.Context, url, name, value string) error {
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
		return resp.StatusCode == http.StatusOK && (name == "" || resp.Header.Get(name) == value)
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

// freeAddr returns a loopback address with a port that was free a moment ago. Only
// startPeers uses it, for the one port that must be named before its program starts,
// and it starts again when someone else took the port meanwhile.
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

// anyPort is the listen address of a program whose port nobody needs to know before
// it starts: the system picks a free one, which the program reports in its addr file.
const anyPort = "127.0.0.1:0"

// noServer is a URL nobody serves (port 1 is privileged and unassigned on a test
// machine), for a peer the benchmark does not run.
const noServer = "http://127.0.0.1:1"

// errPortTaken says a program could not listen on the port it was told, because
// another program had taken it since it was picked.
var errPortTaken = errors.New("port taken by another program")

// maxPortAttempts bounds how often startPeers picks a port again.
const maxPortAttempts = 5

// startReporting starts a program as startProc does, with FOLIO_ADDR_FILE set to a
// file of its own under dir, and waits until the program has written the
// addresses it bound there. Those addresses are the program's own: whatever
// answers at them is this child, not a program of someone else's that took a
// port meanwhile. The error wraps errPortTaken when the program exited because
// its address was in use.
func startReporting(ctx context.Context, dir, name, path string, args, env []string) (*proc, httpserver.Addrs, error) {
	addrFile := filepath.Join(dir, name+".addr")
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, httpserver.Addrs{}, fmt.Errorf("start %s: %w", name, err)
	}
	p, err := startProc(dir, name, path, args, append(slices.Clip(env), "FOLIO_ADDR_FILE="+addrFile))
	if err != nil {
		return nil, httpserver.Addrs{}, err
	}
	var addrs httpserver.Addrs
	err = p.waitUntil(ctx, "did not report its addresses in "+addrFile, func(context.Context) bool {
		var rerr error
		addrs, rerr = httpserver.ReadAddrFile(addrFile)
		return rerr == nil
	})
	if err != nil {
		p.cancel()
		<-p.done
		// The chassis' words for a port in use (httpserver.Listen).
		if strings.Contains(tail(p.log), "already in use") {
			return nil, addrs, fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, addrs, err
	}
	return p, addrs, nil
}

// startPeers starts two programs that must each know the other's URL when they
// start (static discovery: book and author). The first starts on any port, told
// that the second is at a port picked for it; the second starts on that port, told
// the first's URL. When another program takes the picked port before the second
// binds it, both are stopped and start again with another port, up to
// maxPortAttempts times: the first was told the old port, so it must start again
// too.
func startPeers(ctx context.Context,
	first func(attempt int, secondURL string) (*proc, httpserver.Addrs, error),
	second func(attempt int, addr, firstURL string) (*proc, httpserver.Addrs, error),
) (p1 *proc, a1 httpserver.Addrs, p2 *proc, a2 httpserver.Addrs, err error) {
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, a1, nil, a2, err
		}
		if p1, a1, err = first(attempt, "http://"+addr); err != nil {
			return nil, a1, nil, a2, err
		}
		p2, a2, err = second(attempt, addr, "http://"+a1.HTTP)
		if err == nil {
			return p1, a1, p2, a2, nil
		}
		p1.cancel()
		<-p1.done
		if !errors.Is(err, errPortTaken) || attempt == maxPortAttempts {
			return nil, a1, nil, a2, err
		}
	}
}

// attemptName names the log and addr files of a program's attempt-th start.
func attemptName(name string, attempt int) string {
	if attempt <= 1 {
		return name
	}
	return name + "-" + strconv.Itoa(attempt)
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

// startAuth starts the auth service on any port with a fresh database under dir and
// the benchmark's admin account, and returns it with its URL. It publishes its
// account events through b, so that the verifiers that follow revocations find
// them there.
func startAuth(ctx context.Context, dir string, progs map[string]string, b *brokerSetup) (*proc, string, error) {
	p, addrs, err := startReporting(ctx, dir, "auth", progs["auth"], nil, append([]string{
		"FOLIO_HTTP_ADDR=" + anyPort,
		"FOLIO_DATA_DIR=" + filepath.Join(dir, "auth-data"),
		"FOLIO_ADMIN_EMAIL=" + benchAdminEmail,
		"FOLIO_ADMIN_PASSWORD=" + benchAdminPassword,
		"FOLIO_TOKEN_TTL=" + tokenTTL,
	}, b.env()...))
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addrs.HTTP, nil
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

	// authorGRPC is a second author service, on a copy of the first's database,
	// that calls book over gRPC (startAuthorGRPC); nil, and its URL "", when no
	// endpoint measured needs it.
	authorGRPC    *proc
	authorGRPCURL string

	// profilers are the profilers' URLs of book, author, the gateway and the
	// author over gRPC, by name, when the system was started to be profiled.
	profilers map[string]string
}

// startSystem starts book, author and auth, each with a fresh database under dir,
// the gateway in front of them, nginx in front of book when an nginx binary is on
// PATH, and the ceiling, and waits until all of them answer. Book and author publish
// and consume their events through b, which sys.stop stops or cleans up. Every
// program but nginx listens on a port the system picks and reports it in its addr
// file; the URLs come from there.
//
// With profiled, book, author and the gateway serve Go's profiler on a port of
// their own, which sys.profilers names.
func startSystem(ctx context.Context, dir string, progs map[string]string, b *brokerSetup, profiled bool) (sys *system, err error) {
	sys = &system{broker: b}
	if profiled {
		sys.profilers = map[string]string{}
	}
	defer func() {
		if err != nil {
			_ = sys.stop()
		}
	}()
	if sys.auth, sys.authURL, err = startAuth(ctx, dir, progs, b); err != nil {
		return nil, err
	}
	bookAddr, err := sys.startBookAndAuthor(ctx, dir, progs)
	if err != nil {
		return nil, err
	}
	if err := sys.startGateway(ctx, dir, progs); err != nil {
		return nil, err
	}
	if nginx, lerr := exec.LookPath("nginx"); lerr != nil {
		sys.nginxSkipped = "no nginx binary on PATH (Debian: apt-get install nginx)"
	} else if sys.nginx, sys.nginxURL, err = startNginx(ctx, dir, nginx, bookAddr); err != nil {
		return nil, err
	}
	if err := sys.startCeiling(ctx, dir); err != nil {
		return nil, err
	}
	if err := sys.waitReady(ctx); err != nil {
		return nil, err
	}
	return sys, nil
}

// startBookAndAuthor starts book and author, each told the other's URL
// (startPeers), and returns the address book listens on.
func (sys *system) startBookAndAuthor(ctx context.Context, dir string, progs map[string]string) (string, error) {
	trust, b := tokenEnv(sys.authURL), sys.broker
	bookProc, bookAddrs, authorProc, authorAddrs, err := startPeers(ctx,
		func(attempt int, authorURL string) (*proc, httpserver.Addrs, error) {
			return startReporting(ctx, dir, attemptName("book", attempt), progs["book"], nil, slices.Concat([]string{
				"FOLIO_HTTP_ADDR=" + anyPort,
				"FOLIO_DATA_DIR=" + filepath.Join(dir, "book-data"),
				"FOLIO_AUTHOR_URL=" + authorURL,
			}, trust, b.env(), sys.profilerEnv()))
		},
		func(attempt int, addr, bookURL string) (*proc, httpserver.Addrs, error) {
			return startReporting(ctx, dir, attemptName("author", attempt), progs["author"], nil,
				sys.authorEnv(addr, filepath.Join(dir, authorDataDir), bookURL))
		})
	sys.book, sys.author = bookProc, authorProc
	if err != nil {
		return "", err
	}
	sys.noteProfiler("book", bookAddrs)
	sys.noteProfiler("author", authorAddrs)
	sys.bookURL, sys.authorURL = "http://"+bookAddrs.HTTP, "http://"+authorAddrs.HTTP
	return bookAddrs.HTTP, nil
}

// authorEnv is the environment of an author service under test, the first or the
// one over gRPC (startAuthorGRPC): on addr, with its data in dataDir, calling the
// book service at bookURL, with extra settings of its own, trusting the auth
// service's tokens and on the broker as every service is.
func (sys *system) authorEnv(addr, dataDir, bookURL string, extra ...string) []string {
	return slices.Concat([]string{
		"FOLIO_HTTP_ADDR=" + addr,
		"FOLIO_DATA_DIR=" + dataDir,
		"FOLIO_BOOK_URL=" + bookURL,
	}, extra, tokenEnv(sys.authURL), sys.broker.env(), sys.profilerEnv())
}

// startGateway starts the gateway in front of book, author and auth. The notify
// service is not part of the benchmark.
func (sys *system) startGateway(ctx context.Context, dir string, progs map[string]string) error {
	gateway, addrs, err := startReporting(ctx, dir, "gateway", progs["gateway"], nil, slices.Concat([]string{
		"FOLIO_HTTP_ADDR=" + anyPort,
		"FOLIO_BOOK_URLS=" + sys.bookURL,
		"FOLIO_AUTHOR_URLS=" + sys.authorURL,
		"FOLIO_AUTH_URLS=" + sys.authURL,
		"FOLIO_NOTIFY_URLS=" + noServer,
		"FOLIO_RATE_LIMIT=" + gatewayRateLimit,
		"FOLIO_RATE_BURST=" + gatewayRateBurst,
	}, tokenEnv(sys.authURL), sys.broker.env(), sys.profilerEnv()))
	sys.gateway = gateway
	if err != nil {
		return err
	}
	sys.noteProfiler("gateway", addrs)
	sys.gatewayURL = "http://" + addrs.HTTP
	return nil
}

// profilerEnv is the environment that makes a program serve its profiler on a port
// of its own, when the system is profiled.
func (sys *system) profilerEnv() []string {
	if sys.profilers == nil {
		return nil
	}
	return []string{"FOLIO_PPROF_ADDR=127.0.0.1:0"}
}

// noteProfiler records the profiler's URL of the program name started with addrs.
func (sys *system) noteProfiler(name string, addrs httpserver.Addrs) {
	if sys.profilers != nil && addrs.Pprof != "" {
		sys.profilers[name] = "http://" + addrs.Pprof
	}
}

// startCeiling starts the ceiling: this very program, with CeilingEnv set.
func (sys *system) startCeiling(ctx context.Context, dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start ceiling: %w", err)
	}
	ceiling, addrs, err := startReporting(ctx, dir, "ceiling", exe, os.Args[1:], []string{CeilingEnv + "=" + anyPort})
	sys.ceiling = ceiling
	if err != nil {
		return err
	}
	sys.ceilingURL = "http://" + addrs.HTTP
	return nil
}

// waitReady waits until book, author, auth, the gateway and the ceiling answer.
func (sys *system) waitReady(ctx context.Context) error {
	for _, c := range []struct {
		p   *proc
		url string
	}{
		{sys.book, sys.bookURL + "/readyz"},
		{sys.author, sys.authorURL + "/readyz"},
		{sys.auth, sys.authURL + "/readyz"},
		{sys.gateway, sys.gatewayURL + "/readyz"},
		{sys.ceiling, sys.ceilingURL + "/"},
	} {
		if err := c.p.waitReady(ctx, c.url); err != nil {
			return err
		}
	}
	return nil
}

// nginxMark is the header nginx adds to every answer, its value one of this run's
// own, so that the readiness check knows it talks to the nginx it started and not
// to a program that took the port picked for it.
const nginxMark = "X-Folio-Bench-Nginx"

// startNginx starts nginx in front of the book service at bookAddr and waits until
// it answers /readyz (forwarded to book, which is ready by then). nginx cannot
// report a port the system picked, so its port is picked for it; when someone else
// takes it first, nginx fails to bind and exits, and it starts again on another.
func startNginx(ctx context.Context, dir, nginx, bookAddr string) (*proc, string, error) {
	mark := strconv.FormatInt(time.Now().UnixNano(), 36)
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		errLog := filepath.Join(dir, attemptName("nginx-error", attempt)+".log")
		conf, err := writeNginxConf(dir, addr, bookAddr, errLog, mark)
		if err != nil {
			return nil, "", err
		}
		p, err := startProc(dir, attemptName("nginx", attempt), nginx, []string{"-p", dir, "-c", conf, "-e", errLog}, nil)
		if err != nil {
			return nil, "", err
		}
		url := "http://" + addr
		err = p.waitReadyMarked(ctx, url+"/readyz", nginxMark, mark)
		if err == nil {
			return p, url, nil
		}
		p.cancel()
		<-p.done
		errText := tail(errLog) + tail(p.log)
		if !strings.Contains(errText, "Address already in use") || attempt == maxPortAttempts {
			return nil, "", fmt.Errorf("%w\nnginx error log:\n%s", err, tail(errLog))
		}
	}
}

// writeNginxConf writes dir/nginx.conf: nginx as a plain reverse proxy on addr in
// front of the book service at bookAddr, and returns its path. The master process
// runs in the foreground (daemon off) with one worker (on a machine whose few cores
// the load generator and the book service share, more workers only contend); the error log, the
// pid file and the temporary directories are under dir (the -p prefix); the access
// log is off, as the comparison is with the proxying alone.
func writeNginxConf(dir, addr, bookAddr, errLog, mark string) (string, error) {
	user := ""
	if os.Geteuid() == 0 {
		// As root, nginx would run its workers as nobody, who cannot enter dir (0700).
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`# Written by folio bench: nginx as a plain reverse proxy to the book service.
%sdaemon off;
master_process on;
worker_processes 1;
error_log %s warn;
pid %s;

events {
    worker_connections 1024;
}

http {
    access_log off;
    add_header %s %s always;
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
`, user, errLog, filepath.Join(dir, "nginx.pid"), nginxMark, mark, bookAddr, addr)
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
		{pid: os.Getpid(), reaped: true},
		{pid: pid(sys.ceiling)},
		{pid: pid(sys.book)},
		{pid: pid(sys.author)},
		{pid: pid(sys.authorGRPC)},
		{pid: pid(sys.gateway)},
		{pid: pid(sys.nginx), children: true},
		{pid: pid(sys.broker.natsProc())},
	}
}

// stop stops every process started, all at once, and waits for them. It reports
// those that had exited by themselves before.
func (sys *system) stop() error {
	return stopAll(sys.broker, sys.ceiling, sys.nginx, sys.gateway, sys.auth, sys.authorGRPC, sys.author, sys.book)
}

// stopAll stops procs (nil ones are skipped) all at once and waits for them, then
// b: last, so that no service is left without its broker while it stops. It
// reports the processes that had exited by themselves before.
func stopAll(b *brokerSetup, procs ...*proc) error {
	var errs []error
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
	errs = append(errs, b.stop())
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
