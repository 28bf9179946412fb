package sagametrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"folio/internal/order"
	"folio/internal/order/sagametrics"
)

func TestMetricsAreExposedByTheirNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := sagametrics.New(reg)
	m.Transition(order.Pending, order.Reserved)
	m.Transition(order.Pending, order.Reserved)
	m.Compensation("reserve")
	m.StepAnswered(order.StepReserve, 1500*time.Millisecond)
	m.Stuck(3)
	want := `
# HELP folio_order_transitions_total Orders that moved from one state to another.
# TYPE folio_order_transitions_total counter
folio_order_transitions_total{from="pending",to="reserved"} 2
# HELP folio_order_compensations_total Compensations started, by the step whose failure or timeout started them (cancel: the owner's).
# TYPE folio_order_compensations_total counter
folio_order_compensations_total{step="reserve"} 1
# HELP folio_order_saga_stuck Orders waiting on a compensation for longer than the step timeout.
# TYPE folio_order_saga_stuck gauge
folio_order_saga_stuck 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"folio_order_transitions_total", "folio_order_compensations_total", "folio_order_saga_stuck"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "folio_order_step_seconds"); n != 1 {
		t.Errorf("folio_order_step_seconds has %d series, want 1", n)
	}
}
