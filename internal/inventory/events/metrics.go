package events

import (
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/inventory"
)

// Metrics is inventory.Metrics on Prometheus: folio_inventory_reservations_total
// by result.
type Metrics struct {
	reservations *prometheus.CounterVec
}

var _ inventory.Metrics = (*Metrics)(nil)

// Results are the values of the result label, each present from the start so
// that a rate over it has a series before its first count.
var Results = []string{"reserved", "rejected", "released", "expired", "committed", "commit_failed", "restocked"}

// NewMetrics returns the reservation metrics, registered on reg unless it is nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "folio_inventory_reservations_total",
		Help: "Stock commands of the order saga that changed something, and reservations expired, by result: reserved, rejected, released, expired, committed, commit_failed, restocked.",
	}, []string{"result"})}
	for _, r := range Results {
		m.reservations.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.reservations)
	}
	return m
}

// Counted implements inventory.Metrics.
func (m *Metrics) Counted(result string) { m.reservations.WithLabelValues(result).Inc() }
