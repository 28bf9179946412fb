// Package sagametrics is the Prometheus side of the order saga: what it changes,
// compensates and waits on, as order.Metrics hears it.
package sagametrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/order"
)

// Metrics is an order.Metrics that Prometheus scrapes.
type Metrics struct {
	transitions   *prometheus.CounterVec
	compensations *prometheus.CounterVec
	stepSeconds   *prometheus.HistogramVec
	stuck         prometheus.Gauge
}

var _ order.Metrics = (*Metrics)(nil)

// New registers the saga's metrics with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_order_transitions_total",
			Help: "Orders that moved from one state to another.",
		}, []string{"from", "to"}),
		compensations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_order_compensations_total",
			Help: "Compensations started, by the step whose failure or timeout started them (cancel: the owner's).",
		}, []string{"step"}),
		stepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "folio_order_step_seconds",
			Help:    "Time from a step's command first sent to its reply.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"step"}),
		stuck: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "folio_order_saga_stuck",
			Help: "Orders waiting on a compensation for longer than the step timeout.",
		}),
	}
	reg.MustRegister(m.transitions, m.compensations, m.stepSeconds, m.stuck)
	// Every series exists from the start, at zero: a rule or dashboard reading
	// them finds them before the first order, and a rate counts the first one.
	for _, r := range order.Table {
		chain := append([]order.State{r.From, r.To}, r.Then...)
		if r.Outcome != "" {
			chain = append(chain, r.Outcome)
		}
		for i := 0; i+1 < len(chain); i++ {
			m.transitions.WithLabelValues(string(chain[i]), string(chain[i+1]))
		}
	}
	forward := []order.Step{order.StepReserve, order.StepAuthorise, order.StepCapture, order.StepCommit}
	for _, step := range forward {
		m.compensations.WithLabelValues(string(step))
	}
	m.compensations.WithLabelValues("cancel")
	for _, step := range append(forward, order.StepVoid, order.StepRefund, order.StepRestock, order.StepRelease) {
		m.stepSeconds.WithLabelValues(string(step))
	}
	return m
}

// Transition counts an order's move from one state to another.
func (m *Metrics) Transition(from, to order.State) {
	m.transitions.WithLabelValues(string(from), string(to)).Inc()
}

// Compensation counts a compensation started by step.
func (m *Metrics) Compensation(step string) { m.compensations.WithLabelValues(step).Inc() }

// StepAnswered observes how long step waited on its reply.
func (m *Metrics) StepAnswered(step order.Step, took time.Duration) {
	m.stepSeconds.WithLabelValues(string(step)).Observe(max(took, 0).Seconds())
}

// Stuck sets the count of stuck orders.
func (m *Metrics) Stuck(n int) { m.stuck.Set(float64(n)) }
