package monitoring

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

//go:embed prometheus.yml rules/*.yml dashboards/*.json
var files embed.FS

// ConfigFile is the Prometheus configuration, relative to this directory.
const ConfigFile = "prometheus.yml"

// Files returns the configuration, rules, rule tests and dashboards as embedded in
// the build, under the paths they have in this directory.
func Files() fs.FS { return files }

// RulesFiles returns the rule files the Prometheus configuration loads, relative to
// this directory (where the configuration is, so as written in it).
func RulesFiles() ([]string, error) {
	b, err := files.ReadFile(ConfigFile)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		RuleFiles []string `json:"rule_files"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	if len(cfg.RuleFiles) == 0 {
		return nil, fmt.Errorf("%s loads no rule files", ConfigFile)
	}
	return cfg.RuleFiles, nil
}

// RuleTestFiles returns the promtool unit test files (rules/*_test.yml).
func RuleTestFiles() ([]string, error) { return fs.Glob(files, "rules/*_test.yml") }

// DashboardFiles returns the Grafana dashboards (dashboards/*.json).
func DashboardFiles() ([]string, error) { return fs.Glob(files, "dashboards/*.json") }

// Rule is one recording or alerting rule.
type Rule struct {
	File        string            `json:"-"`
	Group       string            `json:"-"`
	Record      string            `json:"record"`
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// Rules returns every rule of the files RulesFiles names.
func Rules() ([]Rule, error) {
	names, err := RulesFiles()
	if err != nil {
		return nil, err
	}
	var rules []Rule
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var rf struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []Rule `json:"rules"`
			} `json:"groups"`
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				r.File, r.Group = name, g.Name
				rules = append(rules, r)
			}
		}
	}
	return rules, nil
}

// Expression is a PromQL expression and where it is written.
type Expression struct {
	// Where names the file and the rule or dashboard panel.
	Where string
	// Query is the expression; in dashboards, with Grafana's variables replaced
	// (see DashboardExpressions).
	Query string
}

// RuleExpressions returns the expression of every rule.
func RuleExpressions() ([]Expression, error) {
	rules, err := Rules()
	if err != nil {
		return nil, err
	}
	exprs := make([]Expression, 0, len(rules))
	for _, r := range rules {
		exprs = append(exprs, Expression{Where: r.File + ": " + r.Record + r.Alert, Query: r.Expr})
	}
	return exprs, nil
}

// variable matches a Grafana variable: $name, ${name} or ${name:format}.
var variable = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// substituteVariables replaces Grafana's variables with what they could stand for,
// so that Prometheus' parser can read the query: the interval variables with a
// duration (or a number of seconds or milliseconds), any other (such as $job,
// used as a label value) with its own name.
func substituteVariables(q string) string {
	return variable.ReplaceAllStringFunc(q, func(m string) string {
		s := variable.FindStringSubmatch(m)
		name := s[1] + s[2]
		switch {
		case name == "__rate_interval" || name == "__interval" || name == "__range":
			return "5m"
		case name == "__interval_ms" || name == "__range_ms":
			return "300000"
		case name == "__range_s":
			return "300"
		default:
			return name
		}
	})
}

// DashboardExpressions returns the query ("expr") of every panel target of every
// dashboard, with Grafana's variables substituted.
func DashboardExpressions() ([]Expression, error) {
	names, err := DashboardFiles()
	if err != nil {
		return nil, err
	}
	var exprs []Expression
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var dash struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for _, t := range p.Targets {
					if t.Expr != "" {
						exprs = append(exprs, Expression{Where: fmt.Sprintf("%s: panel %q, target %s", name, p.Title, t.RefID),
							Query: substituteVariables(t.Expr)})
					}
				}
				walk(p.Panels) // a collapsed row holds its panels
			}
		}
		walk(dash.Panels)
	}
	return exprs, nil
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// Parse parses a PromQL expression with the options of a default Prometheus.
func Parse(query string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(query)
}

// prometheusOwn are series Prometheus writes itself rather than scrapes.
func prometheusOwn(name string) bool {
	return name == "up" || name == "ALERTS" || name == "ALERTS_FOR_STATE" || strings.HasPrefix(name, "scrape_")
}

// MetricNames returns, sorted, the names of the metrics the rules and dashboards
// read that the programs export: every metric name their expressions select, less
// the recording rules' own (which the rules make) and the series Prometheus makes
// itself (up, scrape_*). A histogram's series (name_bucket, _sum, _count) come with
// the family's name too, so that either can be compared with what a program
// exposes.
func MetricNames() ([]string, error) {
	rules, err := Rules()
	if err != nil {
		return nil, err
	}
	recorded := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			recorded[r.Record] = true
		}
	}
	ruleExprs, err := RuleExpressions()
	if err != nil {
		return nil, err
	}
	dashExprs, err := DashboardExpressions()
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, e := range append(ruleExprs, dashExprs...) {
		selected, err := SelectedNames(e.Query)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Where, err)
		}
		for _, n := range selected {
			if recorded[n] || prometheusOwn(n) {
				continue
			}
			names[n] = true
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if family, ok := strings.CutSuffix(n, suffix); ok {
					names[family] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(names)), nil
}

// SelectedNames returns the metric names an expression's selectors name, by name
// or by an equality matcher on __name__.
func SelectedNames(query string) ([]string, error) {
	expr, err := Parse(query)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			names = append(names, vs.Name)
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				names = append(names, m.Value)
			}
		}
		return nil
	})
	slices.Sort(names)
	return slices.Compact(names), nil
}
