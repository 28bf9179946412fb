package auth

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"folio/internal/platform/clientip"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// Problem types of the auth service, beyond the chassis's.
const (
	TypeUnauthorized    = "/problems/unauthorized"
	TypeForbidden       = "/problems/forbidden"
	TypeTooManyRequests = "/problems/too-many-requests"
	TypeBusy            = "/problems/busy"
)

// writeError writes err as problem+json: the auth errors here, every other one
// through problem.WriteError.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var rl *RateLimitedError
	var busy *BusyError
	switch {
	case errors.Is(err, ErrUnauthorized):
		if r.URL.Path != "/auth/token" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="folio"`)
		}
		problem.Write(w, r, problem.Problem{Type: TypeUnauthorized, Status: http.StatusUnauthorized,
			Detail: "the credentials or the access token are not valid"})
	case errors.Is(err, ErrForbidden):
		problem.Write(w, r, problem.Problem{Type: TypeForbidden, Status: http.StatusForbidden,
			Detail: "this needs the admin role"})
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(rl.RetryAfter))
		detail := "too many login attempts; retry later"
		if r.URL.Path == "/auth/register" {
			detail = "too many registrations from this address; retry later"
		}
		problem.Write(w, r, problem.Problem{Type: TypeTooManyRequests, Status: http.StatusTooManyRequests, Detail: detail})
	case errors.As(err, &busy):
		w.Header().Set("Retry-After", strconv.Itoa(busy.RetryAfter))
		problem.Write(w, r, problem.Problem{Type: TypeBusy, Status: http.StatusServiceUnavailable,
			Detail: "too many password checks in progress; retry later"})
	default:
		problem.WriteError(w, r, log, err)
	}
}

// writeUser sends one account with its ETag.
func writeUser(w http.ResponseWriter, status int, u User) {
	w.Header().Set("ETag", rest.ETag(u.Version))
	_ = rest.WriteJSON(w, status, u)
}

// maxRegisterBody bounds a register body, read whole before a hashing slot is
// taken: an email and a password fit many times over.
const maxRegisterBody = 64 << 10

// limitRegister takes a registration attempt from the client's bucket, reads the
// body, then takes a password-hashing slot for the rest of the request, before next
// (the idempotency layer, whose fingerprint hashes, then the handler) runs: a flood
// of registers is refused before it costs a hash, a client sending its body slowly
// holds no slot, and the hashes of one request are counted once.
func limitRegister(svc *Service, proxies clientip.Proxies, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := svc.AllowRegister(proxies.Addr(r)); err != nil {
			writeError(w, r, log, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRegisterBody)
		body, err := rest.ReadBody(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		ctx, release, err := svc.HoldHashSlot(r.Context())
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		defer release()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// handleUserRegister serves POST /auth/register.
func handleUserRegister(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in Credentials
		if err := rest.Decode(r, &in); err != nil {
			writeError(w, r, log, err)
			return
		}
		u, err := svc.Register(idempotency.WithAnswer(r.Context(), answerRegistered), in)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		answerRegistered(w, u)
	}
}

// answerRegistered is the answer to POST /auth/register, which an Idempotency-Key
// stores in the transaction that creates the account.
func answerRegistered(w http.ResponseWriter, u User) {
	w.Header().Set("Location", "/auth/users/"+u.ID)
	writeUser(w, http.StatusCreated, u)
}

// handleTokenCreate serves POST /auth/token.
func handleTokenCreate(svc *Service, proxies clientip.Proxies, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in Credentials
		if err := rest.Decode(r, &in); err != nil {
			writeError(w, r, log, err)
			return
		}
		tok, err := svc.Token(r.Context(), in, proxies.Addr(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		_ = rest.WriteJSON(w, http.StatusOK, tok)
	}
}

// handleKeysGet serves GET /.well-known/jwks.json.
func handleKeysGet(svc *Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		_ = rest.WriteJSON(w, http.StatusOK, svc.JWKS())
	}
}

// handleUserGet serves GET /auth/users/{id}.
func handleUserGet(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller, err := svc.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		u, err := svc.User(r.Context(), caller, r.PathValue("id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if rest.NotModified(r, u.Version) {
			w.Header().Set("ETag", rest.ETag(u.Version))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeUser(w, http.StatusOK, u)
	}
}

// handleUserRolesReplace serves PUT /auth/users/{id}/roles.
func handleUserRolesReplace(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller, err := svc.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var in RolesInput
		if err := rest.Decode(r, &in); err != nil {
			writeError(w, r, log, err)
			return
		}
		u, err := svc.SetRoles(r.Context(), caller, r.PathValue("id"), in, rest.IfMatch(r).Check)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		writeUser(w, http.StatusOK, u)
	}
}
