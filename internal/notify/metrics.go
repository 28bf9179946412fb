package notify

import "github.com/prometheus/client_golang/prometheus"

// webhookMetrics count what the worker does, so that a subscriber that keeps
// failing shows on a dashboard before anyone reads its deliveries.
type webhookMetrics struct {
	attempts *prometheus.CounterVec
	duration prometheus.Histogram
}

func newWebhookMetrics(reg prometheus.Registerer) *webhookMetrics {
	m := &webhookMetrics{
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
