package chassistest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"folio/internal/platform/chassis"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/config"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/metrics"
)

// runBare is a program with no database, served the way every Folio program is.
func runBare(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	var cfg chassis.ServerConfig
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	return chassis.Serve(ctx, cfg, cfg.Logger(stdout, "bare"), metrics.NewRegistry(), http.NewServeMux(), []byte(`{}`),
		chassis.Health{Ready: func(context.Context) error { return nil }}, nil)
}

// TestStartReadsTheAddrFile: a program asked for port 0 writes the ports it really
// bound to FOLIO_ADDR_FILE, and Start finds it there.
func TestStartReadsTheAddrFile(t *testing.T) {
	for name, tc := range map[string]struct {
		metrics     string
		wantMetrics bool
	}{
		"metrics on port 0":      {metrics: "127.0.0.1:0", wantMetrics: true},
		"metrics at the default": {metrics: "", wantMetrics: true},
		"metrics off":            {metrics: "off", wantMetrics: false},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "addr.json")
			p := chassistest.Start(t, runBare, nil, map[string]string{
				"FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_METRICS_ADDR": tc.metrics, "FOLIO_ADDR_FILE": path,
			})
			a, err := httpserver.ReadAddrFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if a != p.Addrs || p.URL != "http://"+a.HTTP {
				t.Errorf("Start reports %+v at %s; the file says %+v", p.Addrs, p.URL, a)
			}
			wantPort(t, "http", a.HTTP)
			if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("addr file: %v, %v; want mode 0600", info.Mode(), err)
			}
			get(t, p.URL+"/healthz")
			if !tc.wantMetrics {
				if a.Metrics != "" || p.MetricsURL != "" {
					t.Errorf("metrics off: got %q and %q, want none", a.Metrics, p.MetricsURL)
				}
				return
			}
			wantPort(t, "metrics", a.Metrics)
			get(t, p.MetricsURL+"/metrics")
		})
	}
}

// TestStartAgainOnTheSameAddrFile: a program started again with the same vars is
// found where the new run listens, not where the stopped one did.
func TestStartAgainOnTheSameAddrFile(t *testing.T) {
	vars := map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_ADDR_FILE": filepath.Join(t.TempDir(), "addr.json")}
	first := chassistest.Start(t, runBare, nil, vars)
	first.Stop()
	// Held, so that the second run cannot get the first's port back by chance; if
	// someone else holds it already, that does as well.
	if ln, err := net.Listen("tcp", first.Addrs.HTTP); err == nil {
		defer ln.Close()
	}
	second := chassistest.Start(t, runBare, nil, vars)
	if second.Addrs.HTTP == first.Addrs.HTTP {
		t.Errorf("the second run is reported at the first's address %s", first.Addrs.HTTP)
	}
	get(t, second.URL+"/healthz")
}

// TestStartWritesAnAddrFileOfItsOwn: without FOLIO_ADDR_FILE in vars, Start still
// finds a program asked for port 0.
func TestStartWritesAnAddrFileOfItsOwn(t *testing.T) {
	p := chassistest.Start(t, runBare, nil, map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"})
	wantPort(t, "http", p.Addrs.HTTP)
	get(t, p.URL+"/healthz")
}

func wantPort(t *testing.T, what, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "0" || port == "" {
		t.Errorf("%s address %q: want 127.0.0.1 and the port bound", what, addr)
	}
}

func get(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: got %d, want 200", url, resp.StatusCode)
	}
}
