// Package metrics gives each Folio service its own Prometheus registry, already
// holding the Go runtime and process collectors, and the handler that serves it.
package metrics

import (
	"database/sql"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"folio/internal/platform/release"
)

// NewRegistry returns a registry with the runtime and process collectors and
// folio_build_info registered. Each service builds its own rather than using the
// global default, so that tests can run several services in one process.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	return reg
}

// buildInfo is folio_build_info: always 1, its labels say which build runs, so
// that a dashboard shows a rollout's progress and which revision a fault began in.
func buildInfo() prometheus.Collector {
	info := release.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "folio_build_info", Help: "Which build of Folio runs: 1, with its version, git revision and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Revision, "goversion": info.GoVersion},
	})
	g.Set(1)
	return g
}

// RegisterDB exports the connection pool statistics of db under the name given.
func RegisterDB(reg prometheus.Registerer, db *sql.DB, name string) {
	reg.MustRegister(collectors.NewDBStatsCollector(db, name))
}

// Handler serves reg in the Prometheus text format, or in OpenMetrics to a
// scraper that asks for it, which is the format that carries the exemplars
// (trace ids) of the latency histograms.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}
