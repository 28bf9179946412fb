package broker

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are per Broker rather than package globals, so that several Brokers
// (tests, or services sharing a process) each register on their own registry.
type metrics struct {
	publishedTotal    *prometheus.CounterVec
	consumedTotal     *prometheus.CounterVec
	deadLetteredTotal *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		publishedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_events_published_total",
			Help: "Events published, by outcome (ok, error).",
		}, []string{"outcome"}),
		consumedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_events_consumed_total",
			Help: "Event deliveries handled, by subscription and outcome (ok, retry, deadletter, requeue).",
		}, []string{"subscription", "outcome"}),
		deadLetteredTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_events_dead_lettered_total",
			Help: "Events given up on and published to the dead-letter subject, by subscription.",
		}, []string{"subscription"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.publishedTotal, &m.consumedTotal, &m.deadLetteredTotal} {
		if err := reg.Register(*c); err != nil {
			// A second Broker on the same registry shares the first one's counters.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, err
			}
			*c = existing
		}
	}
	return m, nil
}

func (m *metrics) published(err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.publishedTotal.WithLabelValues(outcome).Inc()
}

// publishedBatch counts the acknowledged messages of a batch, and its first
// failure as one error: the messages behind it were not refused, only not
// waited for, and are published again.
func (m *metrics) publishedBatch(acked int, err error) {
	if acked > 0 {
		m.publishedTotal.WithLabelValues("ok").Add(float64(acked))
	}
	if err != nil {
		m.publishedTotal.WithLabelValues("error").Inc()
	}
}

func (m *metrics) consumed(subscription string, o outcome) {
	m.consumedTotal.WithLabelValues(subscription, string(o)).Inc()
	if o == outcomeDeadLetter {
		m.deadLetteredTotal.WithLabelValues(subscription).Inc()
	}
}
