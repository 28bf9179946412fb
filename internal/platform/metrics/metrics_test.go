package metrics_test

import (
	"testing"

	"folio/internal/platform/metrics"
	"folio/internal/platform/release"
)

func TestRegistrySaysWhichBuildRuns(t *testing.T) {
	families, err := metrics.NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "folio_build_info" {
			continue
		}
		m := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if m.GetGauge().GetValue() != 1 || labels["version"] != release.Get().Version || labels["goversion"] == "" {
			t.Errorf("folio_build_info = %v %v, want 1 with this build's version and Go", m.GetGauge().GetValue(), labels)
		}
		return
	}
	t.Error("no folio_build_info in a new registry")
}
