package gateway

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"

	"folio/internal/platform/problem"
)

// handleProxy serves every path owned by svc: it authenticates the caller, applies
// the rate limit and the role rules, then forwards the request.
func (g *Gateway) handleProxy(svc *service) http.Handler {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := required(r.Method, r.URL.Path)

		var id *Identity
		var authErr error
		token, present, wellFormed := bearer(r)
		if wellFormed {
			ident, err := g.verifier.Verify(r.Context(), token)
			if err == nil {
				id = &ident
			} else {
				authErr = err
			}
		}

		key := "ip:" + clientIP(r)
		if id != nil {
			key = "sub:" + id.Subject
		}
		if ok, wait := g.limiter.allow(r.Context(), key); !ok {
			g.metrics.rateLimited.Inc()
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
			problem.Write(w, r, problem.Problem{Type: TypeRateLimited, Status: http.StatusTooManyRequests,
				Detail: "too many requests; retry after the time in Retry-After"})
			return
		}

		// A token that was sent must be valid, even where none is needed, so that a
		// client learns its token is bad rather than being served as anonymous.
		switch {
		case present && !wellFormed:
			g.unauthorized(w, r, "malformed", "the Authorization header must be \"Bearer <token>\"")
			return
		case authErr != nil:
			reason, detail := failureReason(authErr)
			g.unauthorized(w, r, reason, detail)
			return
		case need != public && id == nil:
			g.unauthorized(w, r, "missing", "this request needs a bearer token")
			return
		case !allows(need, id.rolesOrNil()):
			g.metrics.authFailures.WithLabelValues("forbidden").Inc()
			problem.Write(w, r, problem.Problem{Type: TypeForbidden, Status: http.StatusForbidden,
				Detail: "your roles do not allow this request"})
			return
		}

		// X-Folio-* headers are the gateway's word to the services; a client's are dropped.
		for k := range r.Header {
			if strings.HasPrefix(k, "X-Folio-") {
				delete(r.Header, k)
			}
		}
		if id != nil {
			r.Header.Set(SubjectHeader, id.Subject)
		}
		ctx, cancel := context.WithTimeout(r.Context(), g.timeout(r.URL.Path))
		defer cancel()
		svc.proxy.ServeHTTP(w, r.WithContext(ctx))
	})
	if g.cors != nil {
		h = g.cors.Handler(h)
	}
	return h
}

func (id *Identity) rolesOrNil() []string {
	if id == nil {
		return nil
	}
	return id.Roles
}

func (g *Gateway) unauthorized(w http.ResponseWriter, r *http.Request, reason, detail string) {
	g.metrics.authFailures.WithLabelValues(reason).Inc()
	if reason == "missing" {
		w.Header().Set("WWW-Authenticate", "Bearer")
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	problem.Write(w, r, problem.Problem{Type: TypeUnauthorized, Status: http.StatusUnauthorized, Detail: detail})
}

// clientIP is the address the connection comes from. Forwarding headers are not
// trusted: the gateway is the public edge.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
