package sagametrics

import "github.com/prometheus/client_golang/prometheus"

// TransitionsFor is the counter of moves from one state to another.
func (m *Metrics) TransitionsFor(from, to string) prometheus.Counter {
	return m.transitions.WithLabelValues(from, to)
}

// CompensationsFor is the counter of compensations started by step.
func (m *Metrics) CompensationsFor(step string) prometheus.Counter {
	return m.compensations.WithLabelValues(step)
}
