package chassis

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestIsHealthcheckFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"book", "--healthcheck"}, true},
		{[]string{"book", "-healthcheck"}, true},
		{[]string{"book", "healthcheck"}, true},
		{[]string{"book"}, false},
		{[]string{"book", "--version"}, false},
		{[]string{"book", "--healthcheck", "extra"}, false},
		{[]string{"book", "--health"}, false},
	} {
		if got := IsHealthcheckFlag(tc.args); got != tc.want {
			t.Errorf("IsHealthcheckFlag(%q): got %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestReadyURL(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:8081":    "http://127.0.0.1:8081/readyz",
		"[::]:8082":       "http://127.0.0.1:8082/readyz",
		":8083":           "http://127.0.0.1:8083/readyz",
		"127.0.0.1:8084":  "http://127.0.0.1:8084/readyz",
		"[::1]:8080":      "http://[::1]:8080/readyz",
		"10.0.0.7:8081":   "http://10.0.0.7:8081/readyz",
		"book.local:8081": "http://book.local:8081/readyz",
	} {
		got, err := readyURL(addr)
		if err != nil || got != want {
			t.Errorf("readyURL(%q): got %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "8081", "nonsense"} {
		if got, err := readyURL(addr); err == nil {
			t.Errorf("readyURL(%q): got %q, want an error", addr, got)
		}
	}
}

// TestHealthcheck runs the check against real servers: one ready, one not, and an
// address nothing listens on.
func TestHealthcheck(t *testing.T) {
	serve := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/readyz" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	ready := serve(http.StatusOK, `{"status":"ready"}`)
	notReady := serve(http.StatusServiceUnavailable, `{"type":"/problems/not-ready","detail":"the service cannot reach its database"}`)
	// An address that was free a moment ago: its listener is closed, so a
	// connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()

	_, readyPort, _ := net.SplitHostPort(ready)
	for _, tc := range []struct {
		name, addr string
		wantErr    string // "" for a healthy answer
	}{
		{"ready", ready, ""},
		{"ready, listening on every interface", "0.0.0.0:" + readyPort, ""},
		{"not ready", notReady, "503 Service Unavailable: {\"type\":\"/problems/not-ready\",\"detail\":\"the service cannot reach its database\"}"},
		{"nothing listening", nobody, "connection refused"},
		{"no port", "127.0.0.1:0", "names no port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Healthcheck(context.Background(), func(k string) string {
				if k == "FOLIO_HTTP_ADDR" {
					return tc.addr
				}
				return ""
			}, ":1", &out)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if !strings.Contains(out.String(), "/readyz: 200 OK") {
					t.Errorf("printed %q, want the URL that answered 200", out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestHealthcheckDefaultAddr: with FOLIO_HTTP_ADDR unset, the program's default
// address is asked, on loopback.
func TestHealthcheckDefaultAddr(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var out bytes.Buffer
	if err := Healthcheck(context.Background(), func(string) string { return "" }, ":"+port, &out); err != nil {
		t.Errorf("got %v, want nil", err)
	}
}
