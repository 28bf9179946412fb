package e2e

// deploy/monitoring against the real thing: a real Prometheus scrapes a running
// `folio up` with the shipped scrape configuration and evaluates the shipped rules,
// so that a job name, a label, a metric name or a PromQL construct the programs or
// the Prometheus of CI do not agree with fails here rather than on a dashboard.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"folio/deploy/monitoring"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/polltest"
)

// monitoringAllowedAbsent are the metrics the rules or the dashboard read that
// `folio up` may not export at all during this test: labelled counters whose series
// are made by their first increment, for events this test does not provoke. Each
// must still be defined in Folio's source (the test greps internal/ for its quoted
// name), so that a renamed metric cannot hide here. Pre-creating its series
// (WithLabelValues at start, as folio_jwks_fetches_total does) takes a name off.
var monitoringAllowedAbsent = map[string]string{
	// balancer.RoundTrip counts a retry only when it sends a request again to
	// another instance: folio up runs one instance of each service unless --scale
	// says otherwise, and startFolioUp passes no --scale.
	"gateway_upstream_retries_total": "incremented only by a retry on a second instance of a service; folio up runs one of each here",
}

// monitoringEmptyWhenHealthy are the recording rules (by record and class label)
// whose expression has no result while no program answers a 5xx, and why. While the
// system is healthy their denominators must have data instead; once the test has
// made the gateway answer 5xx, they must have data too.
var monitoringEmptyWhenHealthy = func() map[string]string {
	const why = "an SLO error ratio has no \"or … * 0\" branch: with no 5xx of the class in the window its numerator, and so the ratio, is empty (the burn-rate alerts read that as no error)"
	m := map[string]string{}
	for _, class := range []string{"read", "write"} {
		for _, w := range []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"} {
			m["job_class:http_request_error_ratio:rate"+w+"{class="+class+"}"] = why
		}
	}
	return m
}()

// monitoringJobsWithTraffic are the programs the test's requests reach: each must
// have a number (not NaN: a rate of 0 gives an error ratio of 0/0) in the per-route
// recording rules.
var monitoringJobsWithTraffic = []string{"gateway", "book", "author", "auth"}

// TestMonitoringScrapesFolioUp runs deploy/monitoring's Prometheus configuration
// and rules in a real Prometheus against a running `folio up` with some traffic, and
// checks that every target is up, every rule evaluates without error, every
// recording rule has data (the SLO error ratios once the gateway has answered 5xx,
// with the book service frozen), and every metric the rules and dashboard read is
// exported by some program.
func TestMonitoringScrapesFolioUp(t *testing.T) {
	promBin := requirePrometheus(t)
	u := startFolioUp(t)

	// The copy below scrapes where this folio up's programs listen; the shipped
	// targets must be where a folio up on its default ports has them listen.
	checkShippedTargets(t, upPrograms(t)["folio"])
	jobs := monitoringJobTargets(t, u.dataDir)
	cfgPath := writeMonitoringConfig(t, jobs)
	prom := startPrometheus(t, promBin, cfgPath)
	rules, err := monitoring.Rules()
	if err != nil {
		t.Fatal(err)
	}

	if !t.Run("every target is up", func(t *testing.T) {
		polltest.Until(t, "every target of every job up in Prometheus", func() error {
			return prom.targetsUp(jobs)
		})
	}) {
		t.FailNow()
	}
	// Twice, with a scrape of every target between: a labelled series (a route's
	// status code) is born with its first request, and Prometheus, which never saw
	// it at 0, sees no increase in it until the second round (its rate would be 0,
	// and a route's error ratio 0/0).
	tr := monitoringTraffic(t, u)
	prom.waitScrapedSince(t, time.Now())
	tr = monitoringTraffic(t, u)
	scraped := prom.waitScrapedSince(t, time.Now())

	t.Run("every rule evaluates without error", func(t *testing.T) {
		polltest.Until(t, "every rule loaded, evaluated on the traffic's data and healthy", func() error {
			return prom.rulesHealthy(rules, scraped)
		})
		// Evaluated on the same data: a healthy system raises no alert, not even a
		// pending one.
		alerts, err := prom.alerts()
		if err != nil {
			t.Fatal(err)
		}
		if len(alerts) > 0 {
			t.Errorf("alerts on a healthy folio up: %v", alerts)
		}
	})

	t.Run("recording rules have data", func(t *testing.T) {
		matched := map[string]bool{}
		var emptyNow []string
		for _, r := range rules {
			if r.Record == "" {
				continue
			}
			key := r.Record + classSuffix(r.Labels)
			if _, ok := monitoringEmptyWhenHealthy[key]; ok {
				matched[key] = true
				// The ratio may be empty; what it divides by may not.
				den := ratioDenominator(t, r)
				polltest.Until(t, key+": its denominator "+den+" has data", func() error {
					res, err := prom.query(den)
					if err != nil {
						return err
					}
					if len(res) == 0 {
						return errors.New("no result")
					}
					return nil
				})
				if res, err := prom.query(r.Expr); err == nil && len(res) == 0 {
					emptyNow = append(emptyNow, key)
				}
				continue
			}
			polltest.Until(t, key+" has data", func() error {
				return prom.recorded(r, monitoringJobsWithTraffic)
			})
		}
		for key, why := range monitoringEmptyWhenHealthy {
			if !matched[key] {
				t.Errorf("monitoringEmptyWhenHealthy names %s (%s), which is no recording rule of deploy/monitoring", key, why)
			}
		}
		t.Logf("recording rules with no result before any 5xx: %d of %d allowed: %v", len(emptyNow), len(monitoringEmptyWhenHealthy), emptyNow)
		// A rate of the traffic the test drove, not only of series that exist.
		polltest.Until(t, "the gateway's request rate is above 0", func() error {
			res, err := prom.query(`job_route:http_requests:rate5m{job="gateway"} > 0`)
			if err != nil {
				return err
			}
			if len(res) == 0 {
				return errors.New("no route of the gateway has a rate above 0")
			}
			return nil
		})
	})

	// Reads and writes that time out at the gateway (504) while book is frozen:
	// 5xx of both classes, and an instance ejected after three failures in a row.
	monitoringGatewayTimeouts(t, u, prom, tr)
	scraped = prom.waitScrapedSince(t, time.Now())

	t.Run("SLO error ratios have data after 5xx", func(t *testing.T) {
		for _, r := range rules {
			if _, ok := monitoringEmptyWhenHealthy[r.Record+classSuffix(r.Labels)]; !ok {
				continue
			}
			polltest.Until(t, r.Record+classSuffix(r.Labels)+" has data for the gateway", func() error {
				return prom.recorded(r, []string{"gateway"})
			})
		}
	})

	t.Run("every target is up and every rule healthy after the fault", func(t *testing.T) {
		polltest.Until(t, "every target of every job up in Prometheus again", func() error {
			return prom.targetsUp(jobs)
		})
		polltest.Until(t, "every rule evaluated on the data since and healthy", func() error {
			return prom.rulesHealthy(rules, scraped)
		})
	})

	t.Run("every metric read is exported", func(t *testing.T) {
		names, err := monitoring.MetricNames()
		if err != nil {
			t.Fatal(err)
		}
		checkAllowedAbsent(t, names)
		polltest.Until(t, "every metric the rules and dashboard read exported by some program", func() error {
			exported, err := exportedMetricNames(jobs)
			if err != nil {
				return err
			}
			var missing []string
			for _, n := range names {
				if !exported[n] && monitoringAllowedAbsent[n] == "" {
					missing = append(missing, n)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("not exported by any program: %s", strings.Join(missing, ", "))
			}
			for _, n := range names {
				if exported[n] && monitoringAllowedAbsent[n] != "" {
					t.Logf("%s is exported now: it may come off monitoringAllowedAbsent", n)
				}
			}
			return nil
		})
	})
}

// recorded is nil when both r's expression and the series r recorded from it have,
// for each of jobs, a result that is a number (not NaN).
func (p *promServer) recorded(r monitoring.Rule, jobs []string) error {
	for _, q := range []string{r.Expr, r.Record + selectorOf(r.Labels)} {
		res, err := p.query(q)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			return fmt.Errorf("%s: no result", q)
		}
		for _, job := range jobs {
			if !slices.ContainsFunc(res, func(s promSample) bool { return s.Metric["job"] == job && !math.IsNaN(s.Value) }) {
				return fmt.Errorf("%s: no number for job %s in %v", q, job, res)
			}
		}
	}
	return nil
}

// requirePrometheus returns the path of the prometheus program, skipping the test
// when there is none unless FOLIO_REQUIRE_INTEGRATION=1 (CI, which installs it).
func requirePrometheus(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs folio up and Prometheus; skipped with -short")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("no prometheus program (%v) and FOLIO_REQUIRE_INTEGRATION=1: apt-get install -y prometheus", err)
		}
		t.Skipf("no prometheus program (%v): apt-get install -y prometheus", err)
	}
	return bin
}

// monitoringJobTargets reads the shipped configuration's jobs and gives each the
// metrics addresses its program's instances really bound, from the addr files
// folio up has them write: <name>.json, and <name>-<n>.json for extra instances.
// Every addr file must belong to a job: a program folio up runs that the
// configuration does not scrape fails the test.
func monitoringJobTargets(t *testing.T, dataDir string) map[string][]string {
	t.Helper()
	cfg := shippedPrometheusConfig(t)
	files, err := filepath.Glob(filepath.Join(dataDir, "addr", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string][]string{}
	claimed := map[string]bool{}
	for _, sc := range cfg.scrapeConfigs(t) {
		job, _ := sc["job_name"].(string)
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".json")
			if base, n, ok := strings.Cut(name, "-"); name != job && (!ok || base != job || !isNumber(n)) {
				continue
			}
			a, err := httpserver.ReadAddrFile(f)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if a.Metrics == "" {
				t.Fatalf("%s names no metrics address: %s serves no metrics", f, name)
			}
			jobs[job] = append(jobs[job], a.Metrics)
			claimed[f] = true
		}
		if len(jobs[job]) == 0 {
			t.Fatalf("%s has job %q, but folio up ran no program of that name (no %s)", monitoring.ConfigFile, job,
				filepath.Join(dataDir, "addr", job+".json"))
		}
	}
	var unscraped []string
	for _, f := range files {
		if !claimed[f] {
			unscraped = append(unscraped, strings.TrimSuffix(filepath.Base(f), ".json"))
		}
	}
	if len(unscraped) > 0 {
		t.Fatalf("folio up ran %v, which no job of %s scrapes", unscraped, monitoring.ConfigFile)
	}
	return jobs
}

// checkShippedTargets checks that each job of the shipped configuration scrapes the
// default metrics address of its program under `folio up` (the chassis' rule:
// loopback, at the HTTP port + 1000), reading the default ports from folio up's
// own usage text.
func checkShippedTargets(t *testing.T, folio string) {
	t.Helper()
	out, err := exec.Command(folio, "up", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("folio up -h: %v\n%s", err, out)
	}
	for _, sc := range shippedPrometheusConfig(t).scrapeConfigs(t) {
		job := sc["job_name"].(string)
		m := regexp.MustCompile(`--` + regexp.QuoteMeta(job) + `-port int\s*\n[^\n]*\(default (\d+)\)`).FindSubmatch(out)
		if m == nil {
			t.Errorf("%s: job %s: folio up -h names no --%s-port with a default", monitoring.ConfigFile, job, job)
			continue
		}
		port, _ := strconv.Atoi(string(m[1]))
		want := []any{"127.0.0.1:" + strconv.Itoa(port+1000)}
		var got []any
		if statics, ok := sc["static_configs"].([]any); ok {
			for _, st := range statics {
				if st, ok := st.(map[string]any); ok {
					if ts, ok := st["targets"].([]any); ok {
						got = append(got, ts...)
					}
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: job %s scrapes %v; folio up's %s listens on port %d by default, so its metrics on %v", monitoring.ConfigFile, job, got, job, port, want)
		}
	}
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// promConfig is the Prometheus configuration as decoded YAML, so that a copy keeps
// every field of the shipped one, known to this test or not.
type promConfig map[string]any

func shippedPrometheusConfig(t *testing.T) promConfig {
	t.Helper()
	b, err := fs.ReadFile(monitoring.Files(), monitoring.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg promConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", monitoring.ConfigFile, err)
	}
	return cfg
}

func (c promConfig) scrapeConfigs(t *testing.T) []map[string]any {
	t.Helper()
	list, ok := c["scrape_configs"].([]any)
	if !ok || len(list) == 0 {
		t.Fatalf("%s has no scrape_configs", monitoring.ConfigFile)
	}
	var scs []map[string]any
	for i, v := range list {
		sc, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: scrape_configs[%d] is not a mapping", monitoring.ConfigFile, i)
		}
		if _, ok := sc["job_name"].(string); !ok {
			t.Fatalf("%s: scrape_configs[%d] has no job_name", monitoring.ConfigFile, i)
		}
		scs = append(scs, sc)
	}
	return scs
}

// monitoringInterval is the scrape and evaluation interval of the test's copy:
// short, so that data and rule results come within seconds.
const monitoringInterval = "1s"

// writeMonitoringConfig writes into a directory of the test's the shipped
// configuration with each job's static targets replaced by jobs' and the intervals
// by monitoringInterval, and beside it the rule files as shipped, at the paths
// rule_files names (relative, so that Prometheus reads them beside the copy). It
// returns the configuration's path.
func writeMonitoringConfig(t *testing.T, jobs map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := shippedPrometheusConfig(t)
	for _, sc := range cfg.scrapeConfigs(t) {
		job := sc["job_name"].(string)
		statics, ok := sc["static_configs"].([]any)
		if !ok || len(statics) != 1 {
			t.Fatalf("%s: job %s has %d static_configs; this test rewrites one", monitoring.ConfigFile, job, len(statics))
		}
		st, ok := statics[0].(map[string]any)
		if !ok {
			t.Fatalf("%s: job %s: static_configs[0] is not a mapping", monitoring.ConfigFile, job)
		}
		st["targets"] = jobs[job]
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
		cfg["global"] = global
	}
	global["scrape_interval"] = monitoringInterval
	global["evaluation_interval"] = monitoringInterval

	ruleFiles, err := monitoring.RulesFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ruleFiles {
		if filepath.IsAbs(name) || strings.HasPrefix(filepath.Clean(name), "..") {
			t.Fatalf("%s: rule file %s is not inside deploy/monitoring", monitoring.ConfigFile, name)
		}
		b, err := fs.ReadFile(monitoring.Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("Prometheus configuration for this run:\n%s", b)
	return path
}

// promServer is a Prometheus server the test started.
type promServer struct {
	base string // http://host:port
	cmd  *exec.Cmd
	done chan struct{}
	log  *upOutput
}

// startPrometheus runs prometheus with the configuration at cfgPath, storage in a
// directory of the test's and its web listener on a free loopback port, and waits
// until it is ready. It is killed when the test ends; its log is shown if the test
// failed.
func startPrometheus(t *testing.T, bin, cfgPath string) *promServer {
	t.Helper()
	var p *promServer
	retryOnCollision(t, "prometheus", func() error {
		addr := freeAddr(t)
		try := &promServer{base: "http://" + addr, log: &upOutput{}, done: make(chan struct{})}
		try.cmd = exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+t.TempDir(),
			"--web.listen-address="+addr)
		try.cmd.Stdout, try.cmd.Stderr = try.log, try.log
		if err := try.cmd.Start(); err != nil {
			t.Fatalf("start prometheus: %v", err)
		}
		go func() { _ = try.cmd.Wait(); close(try.done) }()
		t.Cleanup(func() {
			_ = try.cmd.Process.Kill()
			<-try.done
			if t.Failed() {
				t.Logf("prometheus log (%s):\n%s", addr, try.log.String())
			}
		})
		exited := false
		polltest.Until(t, "prometheus is ready", func() error {
			select {
			case <-try.done:
				exited = true
				return nil
			default:
			}
			resp, err := http.Get(try.base + "/-/ready")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /-/ready: %s", resp.Status)
			}
			return nil
		})
		if exited {
			if strings.Contains(try.log.String(), "address already in use") {
				return fmt.Errorf("prometheus on %s: %w", addr, errAddrInUse)
			}
			t.Fatalf("prometheus exited before it was ready (%v)", try.cmd.ProcessState)
		}
		p = try
		return nil
	})
	return p
}

// api GETs a Prometheus HTTP API path and decodes its data into v.
func (p *promServer) api(path string, query url.Values, v any) error {
	u := p.base + path
	if query != nil {
		u += "?" + query.Encode()
	}
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("GET %s: %s: %v: %.300s", path, resp.Status, err, b)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s: %s", u, resp.Status, env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

// targetsUp is nil when Prometheus has exactly jobs' targets, each healthy.
func (p *promServer) targetsUp(jobs map[string][]string) error {
	var data struct {
		ActiveTargets []struct {
			Labels    map[string]string `json:"labels"`
			ScrapeURL string            `json:"scrapeUrl"`
			Health    string            `json:"health"`
			LastError string            `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := p.api("/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
		return err
	}
	got := map[string][]string{}
	var problems []string
	for _, tg := range data.ActiveTargets {
		job := tg.Labels["job"]
		got[job] = append(got[job], tg.Labels["instance"])
		if tg.Health != "up" {
			problems = append(problems, fmt.Sprintf("%s %s: health %q %s", job, tg.ScrapeURL, tg.Health, tg.LastError))
		}
	}
	for job, want := range jobs {
		have := slices.Sorted(slices.Values(got[job]))
		if !slices.Equal(have, slices.Sorted(slices.Values(want))) {
			problems = append(problems, fmt.Sprintf("job %s has targets %v, want %v", job, have, want))
		}
	}
	for job := range got {
		if _, ok := jobs[job]; !ok {
			problems = append(problems, "unexpected job "+job)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// waitScrapedSince waits until Prometheus has scraped every target successfully
// after since, and returns when the last of those scrapes ended.
func (p *promServer) waitScrapedSince(t *testing.T, since time.Time) time.Time {
	t.Helper()
	var last time.Time
	polltest.Until(t, "Prometheus scrapes every target again", func() error {
		var data struct {
			ActiveTargets []struct {
				ScrapeURL          string    `json:"scrapeUrl"`
				Health             string    `json:"health"`
				LastScrape         time.Time `json:"lastScrape"`
				LastScrapeDuration float64   `json:"lastScrapeDuration"`
			} `json:"activeTargets"`
		}
		if err := p.api("/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
			return err
		}
		last = since
		for _, tg := range data.ActiveTargets {
			if !tg.LastScrape.After(since) || tg.Health != "up" {
				return fmt.Errorf("%s last scraped at %v, health %q", tg.ScrapeURL, tg.LastScrape, tg.Health)
			}
			if end := tg.LastScrape.Add(time.Duration(tg.LastScrapeDuration * float64(time.Second))); end.After(last) {
				last = end
			}
		}
		return nil
	})
	return last
}

// rulesHealthy is nil when Prometheus has loaded exactly the rules of want, in
// their groups, and each has been evaluated after since, without error. (A rule's
// health is that of its last evaluation: one before the data of interest was
// scraped proves nothing about it.)
func (p *promServer) rulesHealthy(want []monitoring.Rule, since time.Time) error {
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			File  string `json:"file"`
			Rules []struct {
				Name           string            `json:"name"`
				Query          string            `json:"query"`
				Labels         map[string]string `json:"labels"`
				Health         string            `json:"health"`
				LastError      string            `json:"lastError"`
				LastEvaluation time.Time         `json:"lastEvaluation"`
				Type           string            `json:"type"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("/api/v1/rules", nil, &data); err != nil {
		return err
	}
	var got, problems []string
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			got = append(got, g.Name+"/"+r.Name)
			switch {
			case r.LastError != "":
				problems = append(problems, fmt.Sprintf("%s/%s: %s", g.Name, r.Name, r.LastError))
			case r.Health != "ok":
				problems = append(problems, fmt.Sprintf("%s/%s: health %q (evaluated %v)", g.Name, r.Name, r.Health, r.LastEvaluation))
			case !r.LastEvaluation.After(since):
				problems = append(problems, fmt.Sprintf("%s/%s: last evaluated at %v, not after %v", g.Name, r.Name, r.LastEvaluation, since))
			}
		}
	}
	var wantNames []string
	for _, r := range want {
		wantNames = append(wantNames, r.Group+"/"+r.Record+r.Alert)
	}
	slices.Sort(got)
	slices.Sort(wantNames)
	if !slices.Equal(got, wantNames) {
		problems = append(problems, fmt.Sprintf("Prometheus has rules %v, deploy/monitoring %v", got, wantNames))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// promAlert is an alert Prometheus holds, pending or firing.
type promAlert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
}

func (a promAlert) String() string {
	return fmt.Sprintf("%s since %s %v", a.State, a.ActiveAt.Format(time.RFC3339Nano), a.Labels)
}

func (p *promServer) alerts() ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := p.api("/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

// promSample is one element of an instant vector.
type promSample struct {
	Metric map[string]string
	Value  float64
}

func (s promSample) String() string { return fmt.Sprintf("%v=%g", s.Metric, s.Value) }

// query evaluates an instant query now; a result that is not a vector is an error.
func (p *promServer) query(q string) ([]promSample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("%s: a %s, not a vector", q, data.ResultType)
	}
	var res []promSample
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %v: %v", q, r.Value[1], err)
		}
		res = append(res, promSample{Metric: r.Metric, Value: v})
	}
	return res, nil
}

// classSuffix names a rule's class label the way monitoringMayBeEmpty does.
func classSuffix(labels map[string]string) string {
	if c, ok := labels["class"]; ok {
		return "{class=" + c + "}"
	}
	return ""
}

// selectorOf is a label selector matching a recording rule's own labels.
func selectorOf(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	var ms []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		ms = append(ms, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return "{" + strings.Join(ms, ",") + "}"
}

// ratioDenominator returns the right-hand side of a rule whose expression is a
// division, as PromQL; a rule of monitoringMayBeEmpty that is not one fails the test.
func ratioDenominator(t *testing.T, r monitoring.Rule) string {
	t.Helper()
	expr, err := monitoring.Parse(r.Expr)
	if err != nil {
		t.Fatalf("%s: %v", r.Record, err)
	}
	for {
		p, ok := expr.(*parser.ParenExpr)
		if !ok {
			break
		}
		expr = p.Expr
	}
	bin, ok := expr.(*parser.BinaryExpr)
	if !ok || bin.Op != parser.DIV {
		t.Fatalf("%s may be empty as a ratio, but its expression is not a division: %s", r.Record, r.Expr)
	}
	return bin.RHS.String()
}

// monitoringWrites is what monitoringTraffic wrote, for requests that follow.
type monitoringWrites struct {
	editor, authorID, bookID string
}

// monitoringTraffic sends requests through the gateway: a login, reads, writes (an
// author and a book, whose events the other services consume), the genre call
// (author calls book) and a write without a token (refused with 401, counted in
// folio_auth_failures_total).
func monitoringTraffic(t *testing.T, u *upSystem) monitoringWrites {
	t.Helper()
	g := u.URL("gateway")
	editor := bearer(u.login(u.editorEmail, u.editorPassword))
	r := call(t, "POST", g+"/authors", map[string]any{"name": "Ursula K. Le Guin"}, "Authorization", editor)
	expect(t, r, http.StatusCreated)
	authorID := r.json(t)["id"].(string)
	r = call(t, "POST", g+"/books", map[string]any{"title": "The Dispossessed", "author_id": authorID, "genre": "utopia"},
		"Authorization", editor)
	expect(t, r, http.StatusCreated)
	bookID := r.json(t)["id"].(string)
	for range 5 {
		expect(t, call(t, "GET", g+"/books", nil), http.StatusOK)
		expect(t, call(t, "GET", g+"/books/"+bookID, nil), http.StatusOK)
		expect(t, call(t, "GET", g+"/authors", nil), http.StatusOK)
		expect(t, call(t, "GET", g+"/authors/"+authorID, nil), http.StatusOK)
	}
	polltest.Until(t, "the genre call finds the new book", func() error {
		r := call(t, "GET", g+"/authors/books?genre=utopia", nil)
		if r.status != http.StatusOK {
			return fmt.Errorf("GET /authors/books: %d %s", r.status, r.body)
		}
		if !bytes.Contains(r.body, []byte(bookID)) {
			return fmt.Errorf("GET /authors/books: no %s in %s", bookID, r.body)
		}
		return nil
	})
	expect(t, call(t, "POST", g+"/books", map[string]any{"title": "Unsigned", "author_id": authorID, "genre": "utopia"}),
		http.StatusUnauthorized)
	return monitoringWrites{editor: editor, authorID: authorID, bookID: bookID}
}

// monitoringGatewayTimeouts freezes folio up's book service (SIGSTOP) and sends
// reads and writes of books through the gateway at once: each waits out the
// gateway's upstream timeout (10 s under folio up) and is answered 504, which gives
// 5xx of both SLO classes, and the failures in a row eject the instance
// (gateway_instance_ejections_total). Book is then resumed and the test waits until
// the gateway reaches it again. While book is frozen its scrapes fail, and
// FolioInstanceDown must go pending for it.
func monitoringGatewayTimeouts(t *testing.T, u *upSystem, prom *promServer, w monitoringWrites) {
	t.Helper()
	pid := u.pids()["book"]
	if pid == 0 {
		t.Fatal("folio up named no pid for the book service")
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	resume := func() { _ = proc.Signal(syscall.SIGCONT) }
	// Before folio up's own cleanup (cleanups run last first): a stopped child
	// would not stop when folio up asks it to.
	t.Cleanup(resume)
	book := &service{t: t, name: "book", cmd: &exec.Cmd{Process: proc}}
	frozen := time.Now()
	book.signal(syscall.SIGSTOP)

	g := u.URL("gateway")
	type req struct{ method, url, body string }
	reqs := []req{
		{"GET", g + "/books/" + w.bookID, ""},
		{"GET", g + "/books/" + w.bookID, ""},
		{"GET", g + "/books", ""},
		{"GET", g + "/books", ""},
		{"POST", g + "/books", fmt.Sprintf(`{"title":"Frozen","author_id":%q,"genre":"utopia"}`, w.authorID)},
		{"POST", g + "/books", fmt.Sprintf(`{"title":"Frozen too","author_id":%q,"genre":"utopia"}`, w.authorID)},
	}
	// Longer than the gateway's upstream timeout, which is what answers them.
	patient := &http.Client{Timeout: 2 * time.Minute}
	results := make([]string, len(reqs))
	var failed []string
	var wg sync.WaitGroup
	for i, rq := range reqs {
		wg.Go(func() {
			hr, err := http.NewRequest(rq.method, rq.url, strings.NewReader(rq.body))
			if err != nil {
				results[i] = err.Error()
				return
			}
			if rq.body != "" {
				hr.Header.Set("Content-Type", "application/json")
				hr.Header.Set("Authorization", w.editor)
			}
			resp, err := patient.Do(hr)
			if err != nil {
				results[i] = err.Error()
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results[i] = strconv.Itoa(resp.StatusCode)
		})
	}
	polltest.Until(t, "FolioInstanceDown pending for book since it was frozen", func() error {
		alerts, err := prom.alerts()
		if err != nil {
			return err
		}
		for _, a := range alerts {
			// Since the freeze: not an alert that was there already.
			if a.Labels["alertname"] == "FolioInstanceDown" && a.Labels["job"] == "book" && a.State == "pending" && a.ActiveAt.After(frozen) {
				return nil
			}
		}
		return fmt.Errorf("alerts: %v", alerts)
	})
	wg.Wait()
	resume()
	for i, res := range results {
		if n, err := strconv.Atoi(res); err != nil || n < 500 {
			failed = append(failed, fmt.Sprintf("%s %s: %s", reqs[i].method, reqs[i].url, res))
		}
	}
	if len(failed) > 0 {
		t.Fatalf("with book frozen, the gateway answered other than 5xx: %s", strings.Join(failed, "; "))
	}
	t.Logf("with book frozen, the gateway answered %v", results)
	polltest.Until(t, "the gateway reaches book again", func() error {
		r := call(t, "GET", g+"/books/"+w.bookID, nil)
		if r.status != http.StatusOK {
			return fmt.Errorf("GET /books/%s: %d %s", w.bookID, r.status, r.body)
		}
		return nil
	})
}

// exportedMetricNames scrapes every target of jobs directly and returns the names of
// the metric families they expose, with a histogram's or summary's series names
// (_bucket, _sum, _count) too.
func exportedMetricNames(jobs map[string][]string) (map[string]bool, error) {
	names := map[string]bool{}
	for _, job := range slices.Sorted(maps.Keys(jobs)) {
		for _, addr := range jobs[job] {
			resp, err := client.Get("http://" + addr + "/metrics")
			if err != nil {
				return nil, fmt.Errorf("%s: %v", job, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %v", job, err)
			}
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("%s: GET http://%s/metrics: %s", job, addr, resp.Status)
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				// "# TYPE name type" declares each family of the text format.
				f := strings.Fields(sc.Text())
				if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
					continue
				}
				names[f[2]] = true
				switch f[3] {
				case "histogram":
					names[f[2]+"_bucket"] = true
					fallthrough
				case "summary":
					names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
				}
			}
			if err := sc.Err(); err != nil {
				return nil, fmt.Errorf("%s: %v", job, err)
			}
		}
	}
	return names, nil
}

// checkAllowedAbsent fails the test for a name of monitoringAllowedAbsent that the
// rules and dashboard no longer read (the entry is stale) or that no Go file under
// internal/ defines as a quoted string (renamed or removed: the list must not hide
// it).
func checkAllowedAbsent(t *testing.T, read []string) {
	t.Helper()
	defined := definedMetricNames(t, slices.Sorted(maps.Keys(monitoringAllowedAbsent)))
	for name, why := range monitoringAllowedAbsent {
		if !slices.Contains(read, name) {
			t.Errorf("monitoringAllowedAbsent names %s (%s), which no rule or dashboard reads: take it off", name, why)
		}
		if !defined[name] {
			t.Errorf("monitoringAllowedAbsent names %s (%s), but no Go file under internal/ defines %q", name, why, name)
		}
	}
}

var (
	sourceOnce sync.Once
	sourceText []byte
	sourceErr  error
)

// definedMetricNames reports which of names occur, double-quoted, in a non-test Go
// file under the module's internal/ directory.
func definedMetricNames(t *testing.T, names []string) map[string]bool {
	t.Helper()
	sourceOnce.Do(func() {
		var buf bytes.Buffer
		sourceErr = filepath.WalkDir(filepath.Join("..", "internal"), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			buf.Write(b)
			buf.WriteByte('\n')
			return err
		})
		sourceText = buf.Bytes()
	})
	if sourceErr != nil {
		t.Fatalf("read Folio's source: %v", sourceErr)
	}
	if len(sourceText) == 0 {
		t.Fatal("found no Go source under ../internal")
	}
	defined := map[string]bool{}
	for _, n := range names {
		defined[n] = bytes.Contains(sourceText, []byte(strconv.Quote(n)))
	}
	return defined
}
