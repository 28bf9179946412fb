package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/devtools/localnats"
	"folio/internal/devtools/supervise"
	"folio/internal/platform/broker/natsconn"
)

// natsServeConfig is what `folio nats serve` is told by its flags.
type natsServeConfig struct {
	listen   string
	storeDir string
	keysDir  string
	names    natsconn.Names
}

func natsServeFlags() (*flag.FlagSet, *natsServeConfig) {
	cfg := &natsServeConfig{names: natsconn.DefaultNames}
	fs := flag.NewFlagSet("nats serve", flag.ContinueOnError)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:4322", "`address` clients connect to")
	fs.StringVar(&cfg.storeDir, "store-dir", "", "`directory` of the JetStream store (required)")
	fs.StringVar(&cfg.keysDir, "keys-dir", "", "`directory` of the programs' nkey seeds, <program>.nk, and admin.nk (required); missing ones are created")
	namesFlags(fs, &cfg.names)
	return fs, cfg
}

// natsServe serves `folio nats serve`: the NATS server of folio up, run by folio up
// as a child process of its own. JetStream stores under --store-dir and syncs every
// write; each program connects with its nkey and the permissions of natsconn's
// table, admin with all. It serves until SIGTERM or Ctrl-C.
func natsServe(ctx context.Context, args []string, _ func(string) string, stdout io.Writer) error {
	fs, cfg := natsServeFlags()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, "Usage: folio nats serve [flags]\n\nRun the NATS server of folio up (folio up starts it itself).\n\nFlags:\n")
			printFlags(stdout, fs)
			return nil
		}
		return fmt.Errorf("nats serve: %v", err)
	}
	if fs.NArg() > 0 || cfg.storeDir == "" || cfg.keysDir == "" {
		return errors.New("nats serve: takes --store-dir and --keys-dir, and no arguments; run 'folio nats serve -h'")
	}
	_, users, err := natsUsers(cfg.keysDir, cfg.names)
	if err != nil {
		return err
	}
	return localnats.ServeWith(ctx, cfg.listen, localnats.Options{Dir: cfg.storeDir, Users: users, Log: true})
}

// natsChild is how folio up runs and watches its NATS server.
type natsChild struct {
	host    string
	port    int
	dataDir string
	names   natsconn.Names
	// adminSeed is the operator's nkey seed, with which folio up checks the server.
	adminSeed string
	// readyWithin is how long a (re)started server may take to store a write before
	// it is restarted.
	readyWithin time.Duration
	// aliveFailures is how many health checks in a row the server may fail before
	// it is restarted.
	aliveFailures int
}

// url is where the services connect: the same on every restart of the server.
func (c natsChild) url() string {
	return "nats://" + net.JoinHostPort(connectHost(c.host), strconv.Itoa(c.port))
}

// start starts the NATS server under sup, this very program in `nats serve` mode,
// and waits until its JetStream has stored and acknowledged a write (or ctx ends,
// or timeout passes). While it runs, the supervisor makes such a write every probe
// interval and restarts the server when aliveFailures of them fail in a row: a
// server that accepts connections but whose JetStream no longer stores anything (a
// full disk that was freed, a stopped process) comes back by itself.
func (c natsChild) start(ctx context.Context, sup *supervise.Supervisor, timeout time.Duration) (*supervise.Process, *natsProbe, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("NATS server: the folio program's path: %w", err)
	}
	auth, err := nats.NkeyOptionFromSeed(c.adminSeed)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS server: %w", err)
	}
	probe := &natsProbe{url: c.url(), auth: auth}
	proc, err := sup.Start(supervise.Spec{
		Name: "nats",
		Path: exe,
		Args: []string{"nats", "serve", "--listen", net.JoinHostPort(c.host, strconv.Itoa(c.port)),
			"--store-dir", filepath.Join(c.dataDir, "nats"), "--keys-dir", filepath.Join(c.dataDir, natsKeysDir),
			"--prefix", c.names.Prefix, "--stream", c.names.Stream, "--bucket", c.names.Bucket},
		Ready:         probe.check,
		ReadyWithin:   c.readyWithin,
		Alive:         probe.check,
		AliveFailures: c.aliveFailures,
	})
	if err != nil {
		probe.close()
		return nil, nil, err
	}
	if err := waitProcReady(ctx, proc, "NATS server", timeout); err != nil {
		return proc, probe, err
	}
	return proc, probe, nil
}

// waitProcReady waits until proc's Ready check has passed, or proc exits, ctx ends
// or timeout passes.
func waitProcReady(ctx context.Context, proc *supervise.Process, what string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !proc.Ready() {
		if n, why := proc.Exits(); n > 0 {
			return fmt.Errorf("the %s exited before it was ready (%v); its log above says why", what, why)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %s was not ready within %s; its log above says why", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// healthBucket is the key-value bucket folio up writes to, to see that the
// server's JetStream stores and acknowledges writes.
const healthBucket = "folio_up_health"

// natsProbe checks that a NATS server's JetStream stores a write: it puts a key in
// healthBucket, which the server acknowledges only once the write is on disk. It
// keeps one connection, as the operator's user, across checks and restarts of the
// server.
type natsProbe struct {
	url  string
	auth nats.Option

	mu sync.Mutex
	nc *nats.Conn
	kv jetstream.KeyValue
}

func (p *natsProbe) check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nc == nil {
		timeout := 2 * time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(d), time.Millisecond)
		}
		nc, err := nats.Connect(p.url, p.auth, nats.Name("folio up health check"), nats.Timeout(timeout),
			nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
		if err != nil {
			return err
		}
		p.nc = nc
	}
	if p.kv == nil {
		js, err := jetstream.New(p.nc)
		if err != nil {
			return err
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: healthBucket, Description: "folio up's health checks of JetStream",
			History: 1, MaxBytes: 1 << 20, Storage: jetstream.FileStorage,
		})
		if err != nil {
			return fmt.Errorf("JetStream: %w", err)
		}
		p.kv = kv
	}
	if _, err := p.kv.Put(ctx, "probe", []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		// The bucket may be gone with the store: made again on the next check.
		p.kv = nil
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

func (p *natsProbe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nc != nil {
		p.nc.Close()
		p.nc, p.kv = nil, nil
	}
}
