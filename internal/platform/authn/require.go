package authn

import (
	"context"
	"net/http"
	"strings"

	"folio/internal/platform/problem"
)

// Problem types of refused requests, the same through the gateway and directly.
const (
	TypeUnauthorized = "/problems/unauthorized"
	TypeForbidden    = "/problems/forbidden"
)

// Bearer returns the token of an Authorization: Bearer header, whether the header
// was present, and whether it had the Bearer form.
func Bearer(r *http.Request) (token string, present, ok bool) {
	return bearer(r.Header.Get("Authorization"))
}

func bearer(h string) (token string, present, ok bool) {
	if h == "" {
		return "", false, false
	}
	scheme, tok, found := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", true, false
	}
	return tok, true, true
}

// Authenticate verifies r's bearer token. It returns nil and no error when r
// carries no Authorization header, and an error when the header is not a bearer
// token or the token is not valid.
func (v *Verifier) Authenticate(r *http.Request) (*Identity, error) {
	return v.authenticate(r.Context(), r.Header.Get("Authorization"))
}

func (v *Verifier) authenticate(ctx context.Context, authorization string) (*Identity, error) {
	token, present, ok := bearer(authorization)
	switch {
	case !present:
		return nil, nil
	case !ok:
		return nil, ErrNotBearer
	}
	id, err := v.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	return &id, nil
}

// Refusal is why a request may not go on: a token whose roles do not allow it
// (Forbidden: 403, PERMISSION_DENIED), or no valid token where one is needed (401,
// UNAUTHENTICATED, with Challenge as its WWW-Authenticate). Detail is safe to show.
type Refusal struct {
	Forbidden bool
	Detail    string
	Challenge string
}

// Decide decides whether a request may go on, given its identity (nil when
// anonymous) and the error its token gave: nil when it may, else the refusal,
// counted in the failure metrics. A token that was sent must be valid even where
// none is needed, so that a client learns its token is bad rather than being
// served as anonymous. Every transport answers the same decision its own way.
func (v *Verifier) Decide(need Access, id *Identity, err error) *Refusal {
	switch {
	case err != nil:
	case need != Public && id == nil:
		err = errMissingToken
	case id != nil && !need.Allows(id.Roles):
		v.metrics.authFailures.WithLabelValues("forbidden").Inc()
		return &Refusal{Forbidden: true, Detail: "your roles do not allow this request"}
	default:
		return nil
	}
	reason, detail := FailureReason(err)
	v.metrics.authFailures.WithLabelValues(reason).Inc()
	challenge := `Bearer error="invalid_token"`
	if reason == "missing" {
		challenge = "Bearer"
	}
	return &Refusal{Detail: detail, Challenge: challenge}
}

// Authorize answers Decide's refusal of a request with a 401 or 403 problem and
// returns false, or returns true when the request may go on.
func (v *Verifier) Authorize(w http.ResponseWriter, r *http.Request, need Access, id *Identity, err error) bool {
	refusal := v.Decide(need, id, err)
	switch {
	case refusal == nil:
		return true
	case refusal.Forbidden:
		problem.Write(w, r, problem.Problem{Type: TypeForbidden, Status: http.StatusForbidden, Detail: refusal.Detail})
	default:
		w.Header().Set("WWW-Authenticate", refusal.Challenge)
		problem.Write(w, r, problem.Problem{Type: TypeUnauthorized, Status: http.StatusUnauthorized, Detail: refusal.Detail})
	}
	return false
}

// Require serves next only requests whose token satisfies need, with the verified
// identity in the request's context (see FromContext); others get 401 or 403
// problem+json, as the gateway answers them.
func (v *Verifier) Require(need Access, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Authenticate(r)
		if !v.Authorize(w, r, need, id, err) {
			return
		}
		if id != nil {
			r = r.WithContext(NewContext(r.Context(), *id))
		}
		next.ServeHTTP(w, r)
	})
}
