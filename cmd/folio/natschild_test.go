package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/devtools/supervise"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/polltest"
)

// TestMain lets the test binary be folio's NATS server, as folio up starts it
// (os.Executable with `nats serve`): folio up's tests run up in this process.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "nats" && os.Args[2] == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args, os.Getenv, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "folio:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startNATSChild runs folio up's NATS server under sup on a port that was free a
// moment ago (again on another if someone took it first), checked every 100 ms.
func startNATSChild(t *testing.T, sup *supervise.Supervisor, out *chassistest.LogBuffer, dataDir string) (natsChild, *supervise.Process) {
	t.Helper()
	keys, _, err := natsCredentials(dataDir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		c := natsChild{host: "127.0.0.1", port: distinctPorts(t, 1)[0], dataDir: dataDir, names: natsNames(noEnv),
			adminSeed: keys["admin"], readyWithin: time.Minute, aliveFailures: 2}
		proc, probe, err := c.start(context.Background(), sup, polltest.Deadline)
		if probe != nil {
			t.Cleanup(probe.close)
		}
		if err == nil {
			return c, proc
		}
		if proc != nil {
			proc.Stop()
		}
		if !strings.Contains(out.String(), "already in use") || attempt == 5 {
			t.Fatalf("%v; output:\n%s", err, out.String())
		}
	}
}

// adminPut puts a key in a bucket of the server at url as the operator: JetStream
// acknowledges it only once it is stored.
func adminPut(ctx context.Context, c natsChild) error {
	auth, err := nats.NkeyOptionFromSeed(c.adminSeed)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(c.url(), auth, nats.Timeout(time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test_put", Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, "k", []byte("v"))
	return err
}

// TestNATSChildIsRestartedWhenStuck: folio up's NATS runs as a child process; when
// it stops storing writes (here: it is stopped with SIGSTOP, so nothing answers),
// the supervisor's JetStream checks fail and it is restarted, on the same port,
// where JetStream answers again with what it stored before.
func TestNATSChildIsRestartedWhenStuck(t *testing.T) {
	out := &chassistest.LogBuffer{}
	dataDir := t.TempDir()
	sup := supervise.New(out, supervise.Config{Name: "folio", LogDir: filepath.Join(dataDir, "logs"),
		MinBackoff: 10 * time.Millisecond, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond,
		StopTimeout: 5 * time.Second})
	defer sup.Stop()
	c, proc := startNATSChild(t, sup, out, dataDir)
	ctx := context.Background()
	if err := adminPut(ctx, c); err != nil {
		t.Fatalf("JetStream of the started server: %v", err)
	}
	first := proc.PID()
	if err := syscall.Kill(first, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, "a new NATS server whose JetStream stores writes", func() error {
		if pid := proc.PID(); pid == 0 || pid == first {
			return fmt.Errorf("still pid %d", first)
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return adminPut(ctx, c)
	})
	got := out.String()
	if !strings.Contains(got, "folio | nats failed 2 health checks in a row (the last: ") {
		t.Errorf("output does not say why NATS was restarted; got:\n%s", got)
	}
	if err := syscall.Kill(first, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the stuck server (pid %d) still runs: %v", first, err)
	}
	// The store survived: the bucket made before the restart is there.
	auth, _ := nats.NkeyOptionFromSeed(c.adminSeed)
	nc, err := nats.Connect(c.url(), auth)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.KeyValue(ctx, "test_put"); err != nil {
		t.Errorf("the bucket made before the restart: %v", err)
	}
	second := proc.PID()
	sup.Stop()
	for _, pid := range []int{first, second} {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("NATS server pid %d still runs after Stop: %v", pid, err)
		}
	}
}

// TestNATSServeRejectsMissingDirectories: folio nats serve needs to be told where
// its store and keys are.
func TestNATSServeRejectsMissingDirectories(t *testing.T) {
	err := run(context.Background(), []string{"folio", "nats", "serve", "--store-dir", t.TempDir()}, noEnv, &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "--keys-dir") {
		t.Errorf("got %v, want an error naming --keys-dir", err)
	}
}
