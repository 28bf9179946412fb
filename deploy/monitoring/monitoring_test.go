package monitoring

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtool returns promtool's path, skipping the test when it is not installed
// unless FOLIO_REQUIRE_INTEGRATION=1 (CI), which makes that a failure.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_REQUIRE_INTEGRATION=1 but promtool is not installed (Debian: apt-get install prometheus)")
		}
		t.Skip("skipped: promtool is not installed (Debian: apt-get install prometheus)")
	}
	return p
}

func runPromtool(t *testing.T, bin string, args ...string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The files on disk are the ones checked: the tests run in this directory, and the
// embedded copies are the same files as of the build.
func TestPromtool(t *testing.T) {
	bin := promtool(t)
	rulesFiles, err := RulesFiles()
	if err != nil {
		t.Fatal(err)
	}
	tests, err := RuleTestFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(tests) == 0 {
		t.Fatal("no rules/*_test.yml")
	}
	t.Run("check config", func(t *testing.T) { runPromtool(t, bin, "check", "config", ConfigFile) })
	// The configuration of the Compose file's Prometheus (deploy/compose, profile
	// observability) loads the same rules.
	t.Run("check compose config", func(t *testing.T) { runPromtool(t, bin, "check", "config", "compose.yml") })
	t.Run("check rules", func(t *testing.T) { runPromtool(t, bin, append([]string{"check", "rules"}, rulesFiles...)...) })
	for _, f := range tests {
		t.Run("test rules "+f, func(t *testing.T) { runPromtool(t, bin, "test", "rules", f) })
	}
}

type ruleTestFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string            `json:"alertname"`
			EvalTime  string            `json:"eval_time"`
			ExpAlerts []json.RawMessage `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestEveryAlertIsTested checks that every alert has a unit test in which it fires
// and one in which it stays quiet, run against the file that defines it, and that
// it carries what the on-call needs: a severity and the three annotations.
func TestEveryAlertIsTested(t *testing.T) {
	rules, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	testFiles, err := RuleTestFiles()
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ file, alert string }
	fires, quiet := map[key]bool{}, map[key]bool{}
	for _, tf := range testFiles {
		b, err := fs.ReadFile(Files(), tf)
		if err != nil {
			t.Fatal(err)
		}
		var f ruleTestFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", tf, err)
		}
		for _, rf := range f.RuleFiles {
			// promtool reads a test's rule files relative to the test file.
			rulesFile := path.Join(path.Dir(tf), rf)
			for _, tc := range f.Tests {
				for _, at := range tc.AlertRuleTest {
					k := key{rulesFile, at.Alertname}
					if len(at.ExpAlerts) > 0 {
						fires[k] = true
					} else {
						quiet[k] = true
					}
				}
			}
		}
	}
	alerts := 0
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		alerts++
		k := key{r.File, r.Alert}
		if !fires[k] {
			t.Errorf("%s: alert %s has no unit test that expects it to fire", r.File, r.Alert)
		}
		if !quiet[k] {
			t.Errorf("%s: alert %s has no unit test that expects it to stay quiet", r.File, r.Alert)
		}
		if s := r.Labels["severity"]; s != "page" && s != "ticket" {
			t.Errorf("%s: alert %s has severity %q, want page or ticket", r.File, r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: alert %s has no %s annotation", r.File, r.Alert, a)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerting rules found")
	}
}

// TestExpressionsParse parses every rule's and dashboard panel's expression with
// Prometheus' PromQL parser (promtool checks the rules too, but only where it is
// installed; the dashboard only this test checks).
func TestExpressionsParse(t *testing.T) {
	ruleExprs, err := RuleExpressions()
	if err != nil {
		t.Fatal(err)
	}
	dashExprs, err := DashboardExpressions()
	if err != nil {
		t.Fatal(err)
	}
	if len(ruleExprs) == 0 || len(dashExprs) == 0 {
		t.Fatalf("%d rule and %d dashboard expressions; want some of each", len(ruleExprs), len(dashExprs))
	}
	for _, e := range append(ruleExprs, dashExprs...) {
		if _, err := Parse(e.Query); err != nil {
			t.Errorf("%s: %v\n%s", e.Where, err, e.Query)
		}
	}
}

func TestSubstituteVariables(t *testing.T) {
	for in, want := range map[string]string{
		`rate(x{job="$job"}[$__rate_interval])`:          `rate(x{job="job"}[5m])`,
		`rate(x{job=~"${job:regex}"}[${__interval}])`:    `rate(x{job=~"job"}[5m])`,
		`increase(x[$__range]) / $__range_s`:             `increase(x[5m]) / 300`,
		`sum by (route) (rate(x[$__rate_interval])) > 0`: `sum by (route) (rate(x[5m])) > 0`,
	} {
		if got := substituteVariables(in); got != want {
			t.Errorf("substituteVariables(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDashboard checks the dashboard's shape: a row per scraped program, the
// events and gateway rows, and every panel on the Prometheus data source variable.
func TestDashboard(t *testing.T) {
	names, err := DashboardFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no dashboards/*.json")
	}
	b, err := os.ReadFile(ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	want := []string{"Events", "Gateway"}
	for _, sc := range cfg.ScrapeConfigs {
		want = append(want, sc.JobName)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels     []panelWithSource `json:"panels"`
			Templating struct {
				List []struct {
					Name, Type, Query string
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name, Type, Query string }) bool {
			return v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && v.Query == "prometheus"
		}) {
			t.Errorf("%s: no DS_PROMETHEUS data source variable of type prometheus", name)
		}
		var rows []string
		for _, p := range dash.Panels {
			if p.Type == "row" {
				rows = append(rows, p.Title)
				continue
			}
			if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("%s: panel %q uses data source %+v, want the prometheus ${DS_PROMETHEUS}", name, p.Title, p.Datasource)
			}
		}
		for _, w := range want {
			if !slices.Contains(rows, w) {
				t.Errorf("%s: no row %q (rows: %q)", name, w, rows)
			}
		}
	}
}

type panelWithSource struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
}

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

func TestMetricNames(t *testing.T) {
	names, err := MetricNames()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("MetricNames() is not sorted and unique: %q", names)
	}
	for _, n := range names {
		if !metricName.MatchString(n) {
			t.Errorf("MetricNames() has %q, not a metric name", n)
		}
		if strings.Contains(n, ":") {
			t.Errorf("MetricNames() has %q, a recording rule's name", n)
		}
	}
	// A sample of what the rules and dashboard read, from each kind of source.
	for _, want := range []string{
		"http_requests_total",                  // in the rules and the dashboard
		"http_request_duration_seconds_bucket", // a histogram's series ...
		"http_request_duration_seconds",        // ... and its family
		"folio_outbox_pending",                 // an alert
		"folio_events_consumer_lag_seconds",
		"gateway_upstream_requests_total", // the dashboard only
	} {
		if !slices.Contains(names, want) {
			t.Errorf("MetricNames() lacks %s: %q", want, names)
		}
	}
	for _, unwanted := range []string{"up", "job_class:http_request_error_ratio:rate1h"} {
		if slices.Contains(names, unwanted) {
			t.Errorf("MetricNames() has %s, which no program exports", unwanted)
		}
	}
}

func TestSelectedNames(t *testing.T) {
	got, err := SelectedNames(`sum(rate(a_total{x="1"}[5m])) / on() group_left b or {__name__="c"} unless d offset 1h`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a_total", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("SelectedNames = %q, want %q", got, want)
	}
	if _, err := SelectedNames(`rate(x[5m]`); err == nil {
		t.Error("SelectedNames accepted an expression that does not parse")
	}
}
