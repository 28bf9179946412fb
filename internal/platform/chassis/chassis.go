// Package chassis is what every Folio program runs in: the settings all share, the
// steps of start-up that a program's run lists one by one (Check, OpenDatabase,
// OpenDiscovery, PeerClient, NewVerifier, Consume, …), and Serve, the HTTP server
// with health, metrics and profiler around the program's routes.
package chassis

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/authn"
	"folio/internal/platform/broker"
	"folio/internal/platform/clientip"
	"folio/internal/platform/discovery"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/logging"
)

// ServerConfig is the configuration of a program's HTTP server and logs, which
// every Folio program reads, the gateway included.
type ServerConfig struct {
	HTTPAddr        string        `env:"FOLIO_HTTP_ADDR"`
	LogFormat       string        `env:"FOLIO_LOG_FORMAT" envDefault:"auto"`
	LogLevel        string        `env:"FOLIO_LOG_LEVEL" envDefault:"info"`
	AccessLog       bool          `env:"FOLIO_ACCESS_LOG" envDefault:"true"`
	ShutdownDelay   time.Duration `env:"FOLIO_SHUTDOWN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"FOLIO_SHUTDOWN_TIMEOUT" envDefault:"15s"`
	// PprofAddr, when set, serves Go's profiler (net/http/pprof) on a separate
	// listener, to be kept off public networks: it is how the figures in
	// docs/benchmarks.md were explained.
	PprofAddr string `env:"FOLIO_PPROF_ADDR"`
	// MetricsAddr is where /metrics is served, never on the public port: by default
	// on loopback at the HTTP port + 1000 (127.0.0.1:9081 for book's 8081); "off"
	// serves none.
	MetricsAddr string `env:"FOLIO_METRICS_ADDR"`
	// TrustedProxies lists the proxies (CIDRs or IPs, comma-separated) whose
	// X-Forwarded-For names the client; from any other peer the header is ignored.
	TrustedProxies string `env:"FOLIO_TRUSTED_PROXIES"`
	// AddrFile, when set, is where the program writes the addresses it has bound
	// (httpserver.Addrs, as JSON) once its listeners are open: a starter that asks
	// for port 0 reads the real ports there rather than guessing a free one.
	AddrFile string `env:"FOLIO_ADDR_FILE"`
	// Public is set by a program that faces clients outside Folio (the gateway):
	// the trace context they send is not continued (httpserver.Config.Public).
	Public bool
}

// Proxies returns the trusted proxies of TrustedProxies; the error names the setting.
func (s ServerConfig) Proxies() (clientip.Proxies, error) {
	p, err := clientip.Parse(s.TrustedProxies)
	if err != nil {
		return clientip.Proxies{}, fmt.Errorf("FOLIO_TRUSTED_PROXIES: %w", err)
	}
	return p, nil
}

// Logger returns the program's logger, writing to stdout.
func (s ServerConfig) Logger(stdout io.Writer, name string) *slog.Logger {
	return logging.New(stdout, name, s.LogFormat, s.LogLevel)
}

// serving is what a program adds to its HTTP server besides its routes.
type serving struct {
	// ready says whether the program can do its job; detail adds to /readyz.
	ready  func(context.Context) error
	detail func(context.Context) httpserver.Detail
	// announce, if set, is called with the address listened on, and returns what
	// withdraws the announcement. That runs as soon as ctx ends, and the listener
	// closes withdrawGrace after it.
	announce func(net.Addr) (func(context.Context) error, error)
}

// withdrawGrace is how long a program withdrawn from discovery keeps its listener
// open and answers: the time its peers take to see the withdrawal and stop choosing
// it. Closing at once, as it did, cut kept-alive connections on which a peer had
// just sent a request, having chosen the instance before it learnt of the
// withdrawal: a GET is retried elsewhere, but a POST cannot be (nobody can tell
// whether it arrived), and the gateway answered 502 (e2e TestRollingRestart).
// Peers learn of it from the registry's watch within milliseconds.
const withdrawGrace = time.Second

func (s ServerConfig) serve(ctx context.Context, log *slog.Logger, reg *prometheus.Registry, mux *http.ServeMux, openapi []byte, sv serving) error {
	ln, err := httpserver.Listen(s.HTTPAddr)
	if err != nil {
		return err
	}
	var pprofAddr string
	if s.PprofAddr != "" {
		if pprofAddr, err = servePprof(ctx, s.PprofAddr, log); err != nil {
			ln.Close()
			return err
		}
	}
	metricsAddr, err := s.serveMetrics(ctx, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	var beforeClose func()
	if sv.announce != nil {
		withdraw, err := sv.announce(ln.Addr())
		if err != nil {
			ln.Close()
			return err
		}
		var once sync.Once
		withdrawOnce := func() {
			once.Do(func() {
				wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := withdraw(wctx); err != nil {
					log.Warn("withdrawing from discovery failed; the entry expires by its TTL", "err", err)
				}
			})
		}
		// On a shutdown, the server answers until the peers have seen the withdrawal.
		beforeClose = func() {
			withdrawOnce()
			time.Sleep(withdrawGrace)
		}
		// Should serving fail instead, the entry goes too; the caller closes the
		// registry's connection after serve returns.
		defer withdrawOnce()
	}
	if s.AddrFile != "" {
		// Connections that arrive before srv.Serve below wait in the listener's
		// backlog, so the file may name the ports as soon as they are bound.
		if err := httpserver.WriteAddrFile(s.AddrFile, httpserver.Addrs{HTTP: ln.Addr().String(), Metrics: metricsAddr, Pprof: pprofAddr}); err != nil {
			ln.Close()
			return fmt.Errorf("FOLIO_ADDR_FILE: %w", err)
		}
	}
	srv := httpserver.New(httpserver.Config{
		ShutdownDelay: s.ShutdownDelay, ShutdownTimeout: s.ShutdownTimeout, AccessLog: s.AccessLog, ReadyDetail: sv.detail,
		BeforeClose: beforeClose, Public: s.Public,
	}, log, reg, mux, openapi, sv.ready)
	return srv.Serve(ctx, ln)
}

// ServiceConfig is the configuration every service with a database reads; each
// service embeds it in its own.
type ServiceConfig struct {
	ServerConfig
	DatabaseURL string `env:"FOLIO_DATABASE_URL"`
	DataDir     string `env:"FOLIO_DATA_DIR" envDefault:"data"`
	Discovery   discovery.Config
	Broker      broker.Config
	// BrokerStaleAfter is how long the oldest unpublished event may wait before
	// /readyz says the broker is not taking events (the service stays ready: its
	// writes do not need the broker).
	BrokerStaleAfter time.Duration `env:"FOLIO_BROKER_STALE_AFTER" envDefault:"30s"`
	// Authn says how the service verifies its callers' tokens. Without
	// FOLIO_JWKS_URL the keys come from the auth service at AuthURL (or, in nats
	// discovery, its registered instances, which only it may register).
	Authn   authn.Config
	AuthURL string `env:"FOLIO_AUTH_URL" envDefault:"http://127.0.0.1:8083"`
}

// advertised is the URL peers on this machine reach a listener at.
func advertised(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		_, port, _ := net.SplitHostPort(addr.String())
		return "http://127.0.0.1:" + port
	}
	return "http://" + tcp.String()
}

// serveMetrics serves reg on MetricsAddr, or by default on loopback at the HTTP port
// + 1000, until ctx ends. It returns the address listened on, "" when off.
func (s ServerConfig) serveMetrics(ctx context.Context, reg *prometheus.Registry, log *slog.Logger) (string, error) {
	if s.MetricsAddr == "off" {
		return "", nil
	}
	if s.MetricsAddr != "" {
		addr, err := httpserver.ServeMetrics(ctx, s.MetricsAddr, reg, log)
		if err != nil {
			return "", fmt.Errorf("FOLIO_METRICS_ADDR: %w", err)
		}
		return addr.String(), nil
	}
	addr, err := httpserver.ServeMetrics(ctx, defaultMetricsAddr(s.HTTPAddr), reg, log)
	if err != nil {
		// Nobody chose that port; one taken (a test's, another program's) is no
		// reason not to start. The log line and the addr file say where the
		// metrics went instead.
		log.Warn("default metrics address unavailable; serving metrics on another port", "addr", defaultMetricsAddr(s.HTTPAddr), "err", err)
		if addr, err = httpserver.ServeMetrics(ctx, "127.0.0.1:0", reg, log); err != nil {
			return "", err
		}
	}
	return addr.String(), nil
}

// defaultMetricsAddr is the metrics address for a program serving on httpAddr:
// loopback, at the HTTP port + 1000, or any free port when the HTTP port is chosen by
// the system (0) or too high to add 1000 to.
func defaultMetricsAddr(httpAddr string) string {
	_, portText, err := net.SplitHostPort(httpAddr)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || port == 0 || port+1000 > 65535 {
		return "127.0.0.1:0"
	}
	return "127.0.0.1:" + strconv.Itoa(port+1000)
}

// loopbackDefault puts a default address without a host (":8081") on loopback: a
// program listens on every interface only when told to (FOLIO_HTTP_ADDR=0.0.0.0:8081,
// as containers do).
func loopbackDefault(addr string) string {
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// servePprof serves the profiler on addr until ctx ends, and returns the address it
// bound.
func servePprof(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	ln, err := httpserver.Listen(addr)
	if err != nil {
		return "", fmt.Errorf("profiler: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: httpserver.MaxHeaderBytes}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	log.Info("profiler listening", "addr", ln.Addr().String())
	return ln.Addr().String(), nil
}
