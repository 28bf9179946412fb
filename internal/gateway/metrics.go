package gateway

import "github.com/prometheus/client_golang/prometheus"

// instruments are the gateway's own metrics; the chassis adds RED metrics per route
// and the token verifier (package authn) its own.
type instruments struct {
	upstream      *prometheus.CounterVec // attempts by service and outcome
	retries       *prometheus.CounterVec
	ejections     *prometheus.CounterVec
	rateLimited   prometheus.Counter
	limiterErrors prometheus.Counter
	instances     *prometheus.GaugeVec
}

func newInstruments(reg prometheus.Registerer) *instruments {
	m := &instruments{
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_requests_total",
			Help: "Attempts to reach a service, by service and outcome (2xx, 3xx, 4xx, 5xx, connect_error, timeout, error).",
		}, []string{"service", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_retries_total",
			Help: "Requests sent again to another instance, by service and reason: connect_error (nothing was sent; any method), timeout (an idempotent request unanswered within the try timeout), error (an idempotent request's connection broke).",
		}, []string{"service", "reason"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_instance_ejections_total",
			Help: "Times an instance was taken out of rotation after consecutive failures, by service and the reason of the last one (connect_error, timeout, error).",
		}, []string{"service", "reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_rate_limited_total", Help: "Requests refused with 429 by the rate limiter.",
		}),
		limiterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_rate_limiter_errors_total", Help: "Requests let through unchecked because the shared rate limiter (Redis) did not answer.",
		}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_instances", Help: "Instances of each service the gateway balances over (ejected ones included).",
		}, []string{"service"}),
	}
	reg.MustRegister(m.upstream, m.retries, m.ejections, m.rateLimited, m.limiterErrors, m.instances)
	return m
}
