package events

import "github.com/prometheus/client_golang/prometheus"

// OperationsCounter is m's counter of the operation's result.
func OperationsCounter(m *Metrics, operation, result string) prometheus.Counter {
	return m.operations.WithLabelValues(operation, result)
}
