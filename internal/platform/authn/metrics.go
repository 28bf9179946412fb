package authn

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// instruments are a verifier's metrics. They are per Verifier rather than package
// globals, so that several verifiers (tests) each register on their own registry;
// a second one on the same registry shares the first one's.
type instruments struct {
	authFailures  *prometheus.CounterVec
	jwksFetches   *prometheus.CounterVec
	verifications *prometheus.CounterVec
	revocations   prometheus.Counter
}

func newInstruments(reg prometheus.Registerer) *instruments {
	m := &instruments{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_auth_failures_total",
			Help: "Requests refused with 401 or 403, by reason (missing, expired, bad_signature, unknown_kid, revoked, lifetime, forbidden…).",
		}, []string{"reason"}),
		jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_jwks_fetches_total", Help: "Fetches of the auth service's JWKS, by outcome (ok, error).",
		}, []string{"outcome"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "folio_token_verifications_total",
			Help: "Tokens checked in full (parsed and their signature verified, not answered from the cache), by outcome (ok, refused).",
		}, []string{"outcome"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "folio_token_revocations_total", Help: "Account revocations applied (tokens of a subject issued before a time refused).",
		}),
	}
	if reg == nil {
		return m
	}
	m.authFailures = register(reg, m.authFailures)
	m.jwksFetches = register(reg, m.jwksFetches)
	// Both outcomes exist from the start, so that increase() sees the first
	// failure after a restart (an alert on a series born with its first error
	// would never fire).
	m.jwksFetches.WithLabelValues("ok")
	m.jwksFetches.WithLabelValues("error")
	m.verifications = register(reg, m.verifications)
	m.revocations = register(reg, m.revocations)
	return m
}

// register registers c on reg, or returns the collector already registered there
// under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
