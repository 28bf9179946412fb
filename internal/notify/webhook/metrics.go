package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/notify"
)

// Metrics is notify.Metrics on Prometheus: the webhook attempts by outcome, and
// how long each POST took.
type Metrics struct {
	attempts *prometheus.CounterVec
	duration prometheus.Histogram
}

var _ notify.Metrics = (*Metrics)(nil)

// NewMetrics returns the webhook metrics, registered on reg unless it is nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_webhook_attempts_total",
			Help: "Webhook delivery attempts, by outcome: delivered, retry (failed, will be retried) or failed (given up).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "folio_webhook_attempt_duration_seconds",
			Help:    "How long one webhook POST took, answered or not.",
			Buckets: prometheus.DefBuckets,
		}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.duration)
	}
	return m
}

// Attempted implements notify.Metrics.
func (m *Metrics) Attempted(took time.Duration) { m.duration.Observe(took.Seconds()) }

// Recorded implements notify.Metrics.
func (m *Metrics) Recorded(result string) { m.attempts.WithLabelValues(result).Inc() }
