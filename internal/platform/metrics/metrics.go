// Package metrics gives each Folio service its own Prometheus registry, already
// holding the Go runtime and process collectors, and the handler that serves it.
package metrics

import (
	"database/sql"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the runtime and process collectors registered.
// Each service builds its own rather than using the global default, so that tests can
// run several services in one process.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// RegisterDB exports the connection pool statistics of db under the name given.
func RegisterDB(reg prometheus.Registerer, db *sql.DB, name string) {
	reg.MustRegister(collectors.NewDBStatsCollector(db, name))
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
