package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects the service's log lines while it runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// servingAddr returns the address from the "serving" log line, or "".
func (b *logBuffer) servingAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
			return rec.Addr
		}
	}
	return ""
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"author", "extra"}, env(nil), &logBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_BOOK_URL", "ftp://book"},
		{"FOLIO_BOOK_URL", "book:8081"},
		{"FOLIO_PEER_TIMEOUT", "0s"},
		{"FOLIO_UPSTREAM_BUDGET", "-1s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", tc.name: tc.value}
			err := run(context.Background(), []string{"author"}, env(vars), &logBuffer{})
			if err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Errorf("got %v, want an error naming %s", err, tc.name)
			}
		})
	}
}

func TestRunRejectsUnparsableConfiguration(t *testing.T) {
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_UPSTREAM_BUDGET": "soon"}
	if err := run(context.Background(), []string{"author"}, env(vars), &logBuffer{}); err == nil {
		t.Error("got nil, want an error")
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadBook := "http://" + ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &logBuffer{}
	// No broker either: the service serves all the same, its outbox keeping the events.
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_BOOK_URL": deadBook,
		"FOLIO_NATS_URL": "nats://127.0.0.1:1"}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"author"}, env(vars), logs) }()

	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; {
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v\n%s", err, logs.buf.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did not start serving\n%s", logs.buf.String())
		}
		addr = logs.servingAddr()
	}

	base := "http://" + addr
	for path, want := range map[string]int{
		"/readyz":                     http.StatusOK,
		"/authors":                    http.StatusOK,
		"/authors/books?genre=poetry": http.StatusServiceUnavailable, // the book service is down
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: got %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}
