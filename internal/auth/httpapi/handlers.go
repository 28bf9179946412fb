package httpapi

import (
	"bytes"
	"io"
	"net/http"

	"folio/internal/auth"
	"folio/internal/platform/clientip"
	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// writeUser sends one account with its ETag.
func writeUser(w http.ResponseWriter, status int, u auth.User) {
	w.Header().Set("ETag", rest.ETag(u.Version))
	_ = rest.WriteJSON(w, status, u)
}

// authenticate returns the caller the request's bearer token names. A refusal
// carries the challenge RFC 6750 asks of a 401 from a protected resource (the token
// endpoint, which takes no token, sends none).
func authenticate(w http.ResponseWriter, r *http.Request, svc *auth.Service) (auth.Caller, error) {
	c, err := svc.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if fault.KindOf(err) == fault.Unauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="folio"`)
	}
	return c, err
}

// maxRegisterBody bounds a register body, read whole before a hashing slot is
// taken: an email and a password fit many times over.
const maxRegisterBody = 64 << 10

// limitRegister takes a registration attempt from the client's bucket, reads the
// body, then takes a password-hashing slot for the rest of the request, before next
// (the idempotency layer, whose fingerprint hashes, then the handler) runs: a flood
// of registers is refused before it costs a hash, a client sending its body slowly
// holds no slot, and the hashes of one request are counted once.
func limitRegister(svc *auth.Service, proxies clientip.Proxies, limits *clientLimits, next http.Handler) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := limits.allowRegister(proxies.Addr(r)); err != nil {
			return err
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRegisterBody)
		body, err := rest.ReadBody(r)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		ctx, release, err := svc.HoldHashSlot(r.Context())
		if err != nil {
			return err
		}
		defer release()
		next.ServeHTTP(w, r.WithContext(ctx))
		return nil
	}
}

// handleUserRegister serves POST /auth/register.
func handleUserRegister(svc *auth.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in auth.Credentials
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		u, err := svc.Register(idempotency.WithAnswer(r.Context(), answerRegistered), in)
		if err != nil {
			return err
		}
		answerRegistered(w, u)
		return nil
	}
}

// answerRegistered is the answer to POST /auth/register, which an Idempotency-Key
// stores in the transaction that creates the account.
func answerRegistered(w http.ResponseWriter, u auth.User) {
	w.Header().Set("Location", "/auth/users/"+u.ID)
	writeUser(w, http.StatusCreated, u)
}

// handleTokenCreate serves POST /auth/token.
func handleTokenCreate(svc *auth.Service, proxies clientip.Proxies, limits *clientLimits) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in auth.Credentials
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		if err := limits.allowLogin(in, proxies.Addr(r)); err != nil {
			return err
		}
		tok, err := svc.Token(r.Context(), in)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		_ = rest.WriteJSON(w, http.StatusOK, tok)
		return nil
	}
}

// handleKeysGet serves GET /.well-known/jwks.json.
func handleKeysGet(svc *auth.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "public, max-age=60")
		_ = rest.WriteJSON(w, http.StatusOK, svc.JWKS())
		return nil
	}
}

// handleUserGet serves GET /auth/users/{id}.
func handleUserGet(svc *auth.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		caller, err := authenticate(w, r, svc)
		if err != nil {
			return err
		}
		u, err := svc.User(r.Context(), caller, r.PathValue("id"))
		if err != nil {
			return err
		}
		if rest.NotModified(r, u.Version) {
			w.Header().Set("ETag", rest.ETag(u.Version))
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		writeUser(w, http.StatusOK, u)
		return nil
	}
}

// handleUserRolesReplace serves PUT /auth/users/{id}/roles.
func handleUserRolesReplace(svc *auth.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		caller, err := authenticate(w, r, svc)
		if err != nil {
			return err
		}
		var in auth.RolesInput
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		u, err := svc.SetRoles(r.Context(), caller, r.PathValue("id"), in, rest.IfMatch(r).Check)
		if err != nil {
			return err
		}
		writeUser(w, http.StatusOK, u)
		return nil
	}
}
