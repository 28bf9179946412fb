// Package monitoring holds Folio's monitoring as code: the Prometheus scrape
// configuration for the programs of `folio up` (prometheus.yml), the recording and
// alerting rules with their promtool unit tests (rules/), and a Grafana dashboard
// (dashboards/folio.json).
//
// Its tests check them with promtool (config, rules, unit tests), check that every
// alert has a unit test that fires it and one that keeps it quiet, and parse every
// expression of the rules and the dashboard with Prometheus' own PromQL parser.
// MetricNames lists the metrics they read, so that an end-to-end test can check the
// running programs export every one of them.
package monitoring
