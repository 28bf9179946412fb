package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/authn"
	"folio/internal/platform/problem"
)

// refusals answer the requests the gateway refuses before they reach a service,
// in the caller's protocol: problem+json for the REST routes (problems), the
// gRPC, gRPC-Web or Connect error form for the RPC routes (rpcRefusals).
type refusals interface {
	// rateLimited answers a request over its client's budget, which refills in wait.
	rateLimited(w http.ResponseWriter, r *http.Request, wait time.Duration)
	// authorize is authn.Verifier.Authorize answering in the caller's protocol:
	// false when the request may not go on, after it has been answered.
	authorize(w http.ResponseWriter, r *http.Request, v *authn.Verifier, need authn.Access, id *authn.Identity, err error) bool
}

// problems are the REST routes' refusals: problem+json, as the services answer.
type problems struct{}

func (problems) rateLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	problem.Write(w, r, problem.Problem{Type: TypeRateLimited, Status: http.StatusTooManyRequests,
		Detail: "too many requests; retry after the time in Retry-After"})
}

func (problems) authorize(w http.ResponseWriter, r *http.Request, v *authn.Verifier, need authn.Access, id *authn.Identity, err error) bool {
	return v.Authorize(w, r, need, id, err)
}

// handleProxy serves every path owned by svc: it rate-limits and authenticates the
// caller, applies the role rules, then forwards the request with the client's
// Authorization header, which the service verifies again.
func (g *Gateway) handleProxy(svc *service) http.Handler {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.admit(w, r, svc, required(r.Method, r.URL.Path), problems{}) {
			return
		}
		g.forward(w, r, svc.proxy)
	})
	if g.cors != nil {
		h = g.cors.Handler(h)
	}
	return h
}

// admit rate-limits and authenticates the caller of r and checks that it has the
// access need asks for. It returns true when r may go on to svc; otherwise r has
// been answered through refuse.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, svc *service, need authn.Access, refuse refusals) bool {
	ip := g.clientIP(r)
	// The chassis' server span, which takes the gateway's decisions below.
	span := trace.SpanFromContext(r.Context())
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(svc.attr, accessAttr(need))
	}

	var id *authn.Identity
	var authErr error
	token, present, wellFormed := authn.Bearer(r)
	switch {
	case present && !wellFormed:
		authErr = authn.ErrNotBearer
	case wellFormed:
		if ident, ok := g.verifier.Cached(token); ok {
			id = &ident
			break
		}
		// Checking a signature is the costliest thing the gateway does for a
		// client: a token it has not verified yet is paid for from the client
		// address's budget first, so that a flood of forged tokens is refused
		// before any of them is checked.
		if !g.allow(w, r, budgetVerify, "verify:"+ip, refuse) {
			return false
		}
		ident, err := g.verifier.Verify(r.Context(), token)
		if err == nil {
			id = &ident
		} else {
			authErr = err
		}
	}

	key, budget := "ip:"+ip, budgetIP
	if id != nil {
		key, budget = "sub:"+id.Subject, budgetSubject
		if recording {
			span.SetAttributes(attrSubject.String(id.Subject))
		}
	}
	if !g.allow(w, r, budget, key, refuse) {
		return false
	}
	ok := refuse.authorize(w, r, g.verifier, need, id, authErr)
	if recording {
		span.SetAttributes(authAttrs(ok, id, authErr)...)
	}
	return ok
}

// forward sends an admitted request on through proxy, within its route's timeout.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
	// X-Folio-* headers name nothing the services trust (they verify the token
	// themselves); a client's are dropped all the same.
	for k := range r.Header {
		if strings.HasPrefix(k, "X-Folio-") {
			delete(r.Header, k)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.timeout(r.URL.Path))
	defer cancel()
	proxy.ServeHTTP(w, r.WithContext(ctx))
}

// allow takes one request from key's budget, or answers the request through
// refuse and returns false. budget names the kind of key on the request's span.
func (g *Gateway) allow(w http.ResponseWriter, r *http.Request, budget attribute.KeyValue, key string, refuse refusals) bool {
	v, wait := g.limiter.allow(r.Context(), key)
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(verdictAttrs[v], budget)
	}
	if v != refused {
		return true
	}
	g.metrics.rateLimited.Inc()
	refuse.rateLimited(w, r, wait)
	return false
}

// clientIP is the address the request comes from: the connection's, or, behind a
// trusted proxy (Config.Proxies), the one that proxy forwarded.
func (g *Gateway) clientIP(r *http.Request) string {
	return g.cfg.Proxies.Addr(r)
}
