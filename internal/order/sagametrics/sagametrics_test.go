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
# HELP folio_order_saga_stuck Orders waiting on a compensation for longer than the step timeout.
# TYPE folio_order_saga_stuck gauge
folio_order_saga_stuck 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "folio_order_saga_stuck"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"folio_order_transitions_total", []string{"pending", "reserved"}, 2},
		{"folio_order_transitions_total", []string{"paid", "confirmed"}, 0},
		{"folio_order_transitions_total", []string{"voiding", "releasing"}, 0},
		{"folio_order_transitions_total", []string{"releasing", "payment_failed"}, 0},
		{"folio_order_compensations_total", []string{"reserve"}, 1},
		{"folio_order_compensations_total", []string{"cancel"}, 0},
	} {
		var got float64
		if c.metric == "folio_order_transitions_total" {
			got = testutil.ToFloat64(m.TransitionsFor(c.labels[0], c.labels[1]))
		} else {
			got = testutil.ToFloat64(m.CompensationsFor(c.labels[0]))
		}
		if got != c.want {
			t.Errorf("%s%q = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
	// Every series exists before the first order: rules and the dashboard find them.
	if n := testutil.CollectAndCount(reg, "folio_order_step_seconds"); n != 8 {
		t.Errorf("folio_order_step_seconds has %d series, want one per step (8)", n)
	}
	if n := testutil.CollectAndCount(reg, "folio_order_compensations_total"); n != 5 {
		t.Errorf("folio_order_compensations_total has %d series, want 5 (four forward steps and cancel)", n)
	}
}
