package broker

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are per Broker rather than package globals, so that several Brokers
// (tests, or services sharing a process) each register on their own registry.
type metrics struct {
	publishedTotal    *prometheus.CounterVec
	consumedTotal     *prometheus.CounterVec
	deadLetteredTotal *prometheus.CounterVec
	consumerLag       *prometheus.GaugeVec
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
		consumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "folio_events_consumer_lag_seconds",
			Help: "Age of the last event a subscription handled, when it handled it: the time since the event was written to its service's outbox (across machines, clock skew included).",
		}, []string{"subscription"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, c := range []**prometheus.CounterVec{&m.publishedTotal, &m.consumedTotal, &m.deadLetteredTotal} {
		if *c, err = shared(reg, *c); err != nil {
			return nil, err
		}
	}
	if m.consumerLag, err = shared(reg, m.consumerLag); err != nil {
		return nil, err
	}
	return m, nil
}

// subscribed creates the subscription's dead-letter counter at zero, so that
// increase() sees its first dead letter (a series born with it shows none).
func (m *metrics) subscribed(subscription string) {
	m.deadLetteredTotal.WithLabelValues(subscription)
}

// handling records the lag of a message the subscription is about to handle,
// from the time its header says it was written, if it says.
func (m *metrics) handling(subscription string, msg Message) {
	if written, err := time.Parse(time.RFC3339Nano, msg.Header[HeaderWrittenAt]); err == nil {
		m.consumerLag.WithLabelValues(subscription).Set(max(time.Since(written).Seconds(), 0))
	}
}

// shared registers c on reg or, when a second Broker on the same registry finds
// it there already, returns the first one's, which they then share.
func shared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
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
