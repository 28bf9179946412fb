package authn

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/rest/resttest"
)

// fixture is a verifier of the tokens its key signs, with a clock tests can move.
type fixture struct {
	t      testing.TB
	iss    *authntest.Issuer
	v      *Verifier
	reg    *prometheus.Registry
	offset atomic.Int64 // added to the real time, in nanoseconds
}

func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, reg: prometheus.NewRegistry()}
	f.iss = authntest.New(t, authntest.WithClock(f.now), authntest.WithTTL(5*time.Minute))
	cfg := Config{JWKSURL: f.iss.JWKSURL(), Issuer: "folio-auth", Audience: "folio",
		MaxTTL: 15 * time.Minute, Now: f.now}
	if mutate != nil {
		mutate(&cfg)
	}
	f.v = NewVerifier(cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), f.reg)
	return f
}

func (f *fixture) now() time.Time { return time.Now().Add(time.Duration(f.offset.Load())) }

// token signs a token for sub with roles by the fixture's issuer, issued now by
// the fixture's clock for 5 minutes, after mods.
func (f *fixture) token(sub string, roles []string, mods ...func(*authntest.Claims)) string {
	f.t.Helper()
	return f.iss.TokenWith(sub, roles, mods...)
}

// answer is what a handler behind Require answered.
type answer struct {
	status int
	header http.Header
	body   string
	id     *Identity // what the handler found in its context
	rec    *httptest.ResponseRecorder
}

// serve sends a request with the Authorization header auth ("" for none) through
// Require(need) to a handler that answers 200.
func (f *fixture) serve(need Access, method, auth string) answer {
	f.t.Helper()
	var seen *Identity
	h := f.v.Require(need, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := FromContext(r.Context()); ok {
			seen = &id
		}
		w.WriteHeader(http.StatusOK)
	}))
	req := httptest.NewRequest(method, "/things", strings.NewReader("{}"))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Result().Header, body: rec.Body.String(), id: seen, rec: rec}
}

// write sends a POST with token as a bearer token through Require(Editor).
func (f *fixture) write(token string) answer {
	f.t.Helper()
	return f.serve(Editor, http.MethodPost, "Bearer "+token)
}

// wantRefused fails unless a is a 401 problem whose detail contains detail.
func wantRefused(t testing.TB, a answer, detail string) {
	t.Helper()
	resttest.WantProblem(t, a.rec, http.StatusUnauthorized, TypeUnauthorized)
	if !strings.Contains(a.body, detail) {
		t.Errorf("problem %s does not say %q", a.body, detail)
	}
	if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("WWW-Authenticate = %q, want Bearer…", got)
	}
}

// counter is the value of a counter of the fixture's registry.
func (f *fixture) counter(name string, labels ...string) float64 {
	f.t.Helper()
	var c prometheus.Collector
	switch name {
	case "verifications":
		c = f.v.metrics.verifications.WithLabelValues(labels...)
	case "failures":
		c = f.v.metrics.authFailures.WithLabelValues(labels...)
	default:
		f.t.Fatalf("no counter %s", name)
	}
	return testutil.ToFloat64(c)
}
