// Package process starts a Folio program as an OS process: the configuration every
// program shares, its logger, metrics registry and migrated database, and serving
// until the context ends.
package process

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/config"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/logging"
	"folio/internal/platform/metrics"
	"folio/internal/platform/sqldb"
)

// Server is the configuration of a program's HTTP server and logs, which every Folio
// program reads, the gateway included.
type Server struct {
	HTTPAddr        string        `env:"FOLIO_HTTP_ADDR"`
	LogFormat       string        `env:"FOLIO_LOG_FORMAT" envDefault:"auto"`
	LogLevel        string        `env:"FOLIO_LOG_LEVEL" envDefault:"info"`
	AccessLog       bool          `env:"FOLIO_ACCESS_LOG" envDefault:"true"`
	ShutdownDelay   time.Duration `env:"FOLIO_SHUTDOWN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"FOLIO_SHUTDOWN_TIMEOUT" envDefault:"15s"`
}

// Logger returns the program's logger, writing to stdout.
func (s Server) Logger(stdout io.Writer, name string) *slog.Logger {
	return logging.New(stdout, name, s.LogFormat, s.LogLevel)
}

// Serve serves mux, with the chassis around it, on HTTPAddr until ctx ends, then
// shuts down gracefully. ready says whether the program can do its job.
func (s Server) Serve(ctx context.Context, log *slog.Logger, reg *prometheus.Registry, mux *http.ServeMux, openapi []byte, ready func(context.Context) error) error {
	ln, err := httpserver.Listen(s.HTTPAddr)
	if err != nil {
		return err
	}
	srv := httpserver.New(httpserver.Config{
		ShutdownDelay: s.ShutdownDelay, ShutdownTimeout: s.ShutdownTimeout, AccessLog: s.AccessLog,
	}, log, reg, mux, openapi, ready)
	return srv.Serve(ctx, ln)
}

// Base is the configuration every service with a database reads; each service
// embeds it in its own.
type Base struct {
	Server
	DatabaseURL string `env:"FOLIO_DATABASE_URL"`
	DataDir     string `env:"FOLIO_DATA_DIR" envDefault:"data"`
}

// Process is a started service: what its run function builds the service from.
type Process struct {
	Name     string
	Log      *slog.Logger
	DB       *sqldb.DB
	Registry *prometheus.Registry
	base     *Base
}

// Start loads cfg (a struct embedding Base, passed again as base) from getenv, then
// opens and migrates the service's database. name names the service in logs and its
// default SQLite file; addr is its default listen address.
func Start(ctx context.Context, name, addr string, cfg any, base *Base, getenv func(string) string, stdout io.Writer, migrations fs.FS) (*Process, error) {
	if err := config.Load(cfg, getenv); err != nil {
		return nil, err
	}
	if base.HTTPAddr == "" {
		base.HTTPAddr = addr
	}
	if base.DatabaseURL == "" {
		base.DatabaseURL = "sqlite:" + filepath.Join(base.DataDir, name+".db")
	}
	log := base.Logger(stdout, name)
	log.Info("starting", config.Attrs(cfg)...)

	db, err := sqldb.Open(ctx, base.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, err
	}
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, name)
	return &Process{Name: name, Log: log, DB: db, Registry: reg, base: base}, nil
}

// Serve serves mux (with the chassis around it) on the configured address until ctx
// ends, then shuts down gracefully. The service is ready while its database answers.
func (p *Process) Serve(ctx context.Context, mux *http.ServeMux, openapi []byte) error {
	if err := p.base.Server.Serve(ctx, p.Log, p.Registry, mux, openapi, p.DB.PingContext); err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	return nil
}

// Close releases the database.
func (p *Process) Close() error { return p.DB.Close() }
