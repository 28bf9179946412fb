// Package auth is the domain of the auth service: accounts with roles, argon2id
// password hashes, EdDSA-signed access tokens and the JWKS that verifies them. Its
// store is in auth/sqlstore and its HTTP API in auth/httpapi; this package knows
// neither SQL nor HTTP.
//
// Passwords are hashed with argon2id at OWASP's minimum cost: time=2, memory=19 MiB
// (19456 KiB), threads=1, a 16-byte random salt and a 32-byte key, stored as a PHC
// string ($argon2id$v=19$m=19456,t=2,p=1$salt$hash) and compared in constant time.
// A login for an unknown email still runs argon2id, against a dummy hash, so that it
// costs what a wrong password costs.
//
// Access tokens are JWTs signed with Ed25519 (alg EdDSA) carrying iss, aud, sub (the
// account id), exp, iat, nbf, jti (a UUIDv7) and roles; the header names the key (kid).
// Signing keys are made on first start and kept in the service's own database
// (table signing_keys), sealed with a key-encryption key that is not in the database
// (internal/platform/secrets); a new key is made when the newest is older than the
// rotation period, and a retired key stays in the JWKS for one token lifetime, until
// every token it signed has expired.
//
// A role change revokes the account's earlier tokens: the account keeps
// revoked_before, its new tokens are issued no earlier, and an account.revoked event
// tells every verifier. Tokens living longer than the token lifetime are refused.
//
// At most a few argon2id runs are in flight at once (each holds 19 MiB); a request
// that finds no free slot soon fails with fault.Overloaded. The per-client limits
// of logins and registrations belong to the HTTP API, which knows the client.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/text/unicode/norm"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
)

// The roles an account can hold.
const (
	RoleReader = "reader"
	RoleEditor = "editor"
	RoleAdmin  = "admin"
)

// Roles lists every role in canonical order.
var Roles = []string{RoleReader, RoleEditor, RoleAdmin}

// Limits of the credentials.
const (
	MinPassword = 12
	MaxPassword = 1024
	MaxEmail    = 254
)

// User is an account. The password hash never leaves the service.
type User struct {
	ID           string    `json:"id"`
	Email        string    `json:"email"`
	Roles        []string  `json:"roles"`
	Version      int       `json:"version"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	PasswordHash string    `json:"-"`
	// RevokedBefore is in Unix seconds: the account's tokens issued before it are
	// refused, and none is issued with an earlier iat.
	RevokedBefore int64 `json:"-"`
}

// EventAccountRevoked is the type of the event that revokes an account's earlier
// tokens; verifiers follow "<prefix>.account.revoked".
const EventAccountRevoked = "account.revoked"

// Revocation is the data of an account.revoked event: tokens of the account ID
// issued (iat) before RevokedBefore, in Unix seconds, are refused.
type Revocation struct {
	ID            string `json:"id"`
	RevokedBefore int64  `json:"revoked_before"`
}

// HasRole reports whether u holds role.
func (u User) HasRole(role string) bool { return slices.Contains(u.Roles, role) }

// Credentials are what a client gives to register or to log in.
type Credentials struct {
	Email    *string `json:"email"`
	Password *string `json:"password"`

	// Read-only fields a client may send back; ignored.
	ID        json.RawMessage `json:"id,omitempty"`
	Roles     json.RawMessage `json:"roles,omitempty"`
	Version   json.RawMessage `json:"version,omitempty"`
	CreatedAt json.RawMessage `json:"created_at,omitempty"`
	UpdatedAt json.RawMessage `json:"updated_at,omitempty"`
}

// RolesInput is the new set of roles of an account.
type RolesInput struct {
	Roles *[]string `json:"roles"`
}

// Token is the answer to a successful login.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// Caller is the verified bearer of an access token.
type Caller struct {
	ID    string
	Roles []string
}

// Store keeps accounts and signing keys. Implementations return fault errors:
// NotFound for a missing account, Conflict for a taken email, and ErrStale when the
// version moved on.
type Store interface {
	CreateUser(ctx context.Context, u User) error
	User(ctx context.Context, id string) (User, error)
	UserByEmail(ctx context.Context, email string) (User, error)
	// UpdateRoles writes u's roles, version, updated_at and revoked_before if the
	// stored account is still at version u.Version-1; with revoke it also records
	// the account.revoked event, in the same transaction.
	UpdateRoles(ctx context.Context, u User, revoke bool) error
	// SigningKeys returns every stored signing key.
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	// SealSigningKeys seals the signing keys stored in clear by an older version and
	// returns how many it sealed.
	SealSigningKeys(ctx context.Context) (int, error)
	// RotateSigningKey stores k and retires every other active key, unless an active
	// key created after cutoff exists (another instance rotated already).
	RotateSigningKey(ctx context.Context, k SigningKey, cutoff time.Time) error
}

// ErrStale is returned by Store writes when the account changed since it was read.
var ErrStale = errors.New("account changed concurrently")

// Options configure a Service. Zero fields take the defaults.
type Options struct {
	Issuer      string        // "folio-auth"
	Audience    string        // "folio"
	TokenTTL    time.Duration // 15 min
	KeyRotation time.Duration // 24 h
	Hashing     Params        // DefaultParams
	// HashSlots caps the argon2id runs in flight (runtime.NumCPU()); a request waits
	// at most HashWait (1 s) for a slot, then fails with fault.Overloaded.
	HashSlots int
	HashWait  time.Duration
	// OnHash, when set, is called inside each argon2id run before it hashes, so
	// that tests can hold runs in flight and fill the slots.
	OnHash func()
	Now    func() time.Time
	Log    *slog.Logger
}

// Service applies the rules of the auth service to its store.
type Service struct {
	store  Store
	opts   Options
	keys   *keyRing
	hashes *hashGate
	dummy  string // a hash no password is known for, verified for unknown emails
}

// NewService returns a Service over store. Call Rotate before serving so that a
// signing key exists.
func NewService(store Store, o Options) (*Service, error) {
	if o.Issuer == "" {
		o.Issuer = "folio-auth"
	}
	if o.Audience == "" {
		o.Audience = "folio"
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 15 * time.Minute
	}
	if o.KeyRotation <= 0 {
		o.KeyRotation = 24 * time.Hour
	}
	if o.Hashing == (Params{}) {
		o.Hashing = DefaultParams
	}
	if o.HashSlots <= 0 {
		o.HashSlots = runtime.NumCPU()
	}
	if o.HashWait <= 0 {
		o.HashWait = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dummy, err := HashPassword(id.New(), o.Hashing)
	if err != nil {
		return nil, err
	}
	hashes := newHashGate(o.HashSlots, o.HashWait)
	hashes.hook = o.OnHash
	return &Service{
		store: store, opts: o, dummy: dummy,
		keys:   &keyRing{store: store, now: o.Now, ttl: o.TokenTTL, rotation: o.KeyRotation},
		hashes: hashes,
	}, nil
}

func (s *Service) timestamp() time.Time { return s.opts.Now().UTC().Truncate(time.Microsecond) }

// Rotate seals the signing keys an older version left in clear, then loads the
// signing keys, making a new one first when there is none or the newest is older than
// the rotation period. Errors: only unclassified ones.
func (s *Service) Rotate(ctx context.Context) error {
	n, err := s.store.SealSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("rotate signing keys: %w", err)
	}
	if n > 0 {
		s.opts.Log.InfoContext(ctx, "sealed signing keys stored in clear by an older version", "keys", n)
	}
	if err := s.keys.rotate(ctx); err != nil {
		return fmt.Errorf("rotate signing keys: %w", err)
	}
	return nil
}

// RunRotation calls Rotate every interval until ctx ends, logging failures.
func (s *Service) RunRotation(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Rotate(ctx); err != nil && ctx.Err() == nil {
				s.opts.Log.ErrorContext(ctx, "rotate signing keys", "err", err)
			}
		}
	}
}

// JWKS returns the public keys that verify tokens now.
func (s *Service) JWKS() JWKS { return s.keys.jwks() }

// NormalizeEmail trims email, applies Unicode NFKC and lower-cases it, so that
// look-alike spellings ("ＦＯＯ@example.com", "Foo@Example.com") name one account,
// and checks that it looks like an address: one @, a local part of at most 64
// characters, a dotted domain, no spaces, control, invisible or bidi formatting
// characters, at most MaxEmail characters.
func NormalizeEmail(email string) (string, bool) {
	if !utf8.ValidString(email) {
		return "", false
	}
	// Lower-casing after NFKC, and NFKC again, because either can undo the other's
	// normal form for a few characters.
	e := norm.NFKC.String(strings.ToLower(norm.NFKC.String(strings.TrimSpace(email))))
	e = strings.TrimSpace(e)
	if e == "" || len(e) > MaxEmail {
		return e, false
	}
	if strings.IndexFunc(e, invisible) >= 0 {
		return e, false
	}
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || len(local) > 64 || strings.Contains(domain, "@") {
		return e, false
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return e, false
	}
	for _, l := range labels {
		if l == "" || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return e, false
		}
	}
	return e, true
}

// check validates a registration and returns the normalised email and
// the password, or an Invalid error naming each broken field.
func (in Credentials) check() (string, string, error) {
	var errs fault.Fields
	var email, password string
	switch {
	case in.Email == nil || strings.TrimFunc(*in.Email, invisible) == "":
		errs.Add("email", "is required")
	default:
		var ok bool
		if email, ok = NormalizeEmail(*in.Email); !ok {
			errs.Add("email", "must be an email address")
		}
	}
	switch {
	case in.Password == nil || *in.Password == "":
		errs.Add("password", "is required")
	default:
		password = *in.Password
		switch n := utf8.RuneCountInString(password); {
		case n < MinPassword:
			errs.Add("password", fmt.Sprintf("must be at least %d characters", MinPassword))
		case n > MaxPassword:
			errs.Add("password", fmt.Sprintf("must be at most %d characters", MaxPassword))
		case strings.ContainsRune(password, 0):
			errs.Add("password", "must not contain NUL characters")
		}
	}
	return email, password, errs.Err()
}

// CheckCredentials returns an Invalid error naming each of email and password that
// breaks the rules of a registration, so that a program can refuse a configured
// account before it opens anything.
func CheckCredentials(email, password string) error {
	_, _, err := Credentials{Email: &email, Password: &password}.check()
	return err
}

// invisible reports whether r shows nothing: space, control, or a format character
// such as a zero-width space or a bidi override.
func invisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// CheckRoles returns roles without duplicates in canonical order, or an Invalid error
// naming the roles field when it is missing or names an unknown role.
func CheckRoles(roles *[]string) ([]string, error) {
	var errs fault.Fields
	if roles == nil {
		errs.Add("roles", "is required")
		return nil, errs.Err()
	}
	for _, r := range *roles {
		if !slices.Contains(Roles, r) {
			errs.Add("roles", fmt.Sprintf("%q is not a role; roles are reader, editor and admin", r))
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	out := []string{}
	for _, r := range Roles {
		if slices.Contains(*roles, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Register creates an account with the reader role. Errors: Invalid, Conflict (the
// email is taken), Overloaded.
func (s *Service) Register(ctx context.Context, in Credentials) (User, error) {
	email, password, err := in.check()
	if err != nil {
		return User{}, err
	}
	return s.create(ctx, email, password, []string{RoleReader})
}

// HoldHashSlot takes one of the argon2id slots for the request of ctx and returns
// the context that carries it, and what gives it back: the hashes run under that
// context take no other slot, and those that run where no context reaches (the
// idempotency fingerprint) are inside the cap all the same. Errors: Overloaded.
func (s *Service) HoldHashSlot(ctx context.Context) (context.Context, func(), error) {
	release, err := s.hashes.acquire(ctx)
	if err != nil {
		return ctx, nil, err
	}
	return context.WithValue(ctx, heldSlot{}, true), release, nil
}

func (s *Service) create(ctx context.Context, email, password string, roles []string) (User, error) {
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return User{}, err
	}
	now := s.timestamp()
	u := User{ID: id.New(), Email: email, Roles: roles, Version: 1, CreatedAt: now, UpdatedAt: now, PasswordHash: hash}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return User{}, err
	}
	return u, nil
}

// EnsureAdmin creates an account with the admin role for email unless an account
// with that email exists already (then it changes nothing). Errors: Invalid when
// email or password break the registration rules.
func (s *Service) EnsureAdmin(ctx context.Context, email, password string) (created bool, err error) {
	e, p, err := Credentials{Email: &email, Password: &password}.check()
	if err != nil {
		return false, fmt.Errorf("first admin: %w", err)
	}
	if _, err := s.store.UserByEmail(ctx, e); fault.KindOf(err) != fault.NotFound {
		return false, err // nil: the account exists
	}
	_, err = s.create(ctx, e, p, []string{RoleAdmin})
	if fault.KindOf(err) == fault.Conflict {
		return false, nil // another instance made it first
	}
	return err == nil, err
}

// errUnauthorized is the answer to credentials or a token that identify nobody: one
// error whatever the reason, so that the answer tells an attacker nothing.
var errUnauthorized = fault.New(fault.Unauthorized, "the credentials or the access token are not valid")

// errForbidden is the answer to a caller who is known but not an admin.
var errForbidden = fault.New(fault.Forbidden, "this needs the admin role")

// Token checks credentials and returns an access token. Unknown emails and wrong
// passwords give the same Unauthorized error after the same work (argon2id runs on a
// dummy hash for an unknown email). The caller limits attempts per client before it
// calls. Errors: Overloaded, Unauthorized.
func (s *Service) Token(ctx context.Context, in Credentials) (Token, error) {
	var email, password string
	valid := false
	if in.Email != nil {
		email, valid = NormalizeEmail(*in.Email)
	}
	if in.Password != nil {
		password = *in.Password
	}
	release, err := s.hashes.acquire(ctx)
	if err != nil {
		return Token{}, err
	}
	defer release()
	hash := s.dummy
	var u User
	if valid { // no account has an email that is not valid
		var err error
		u, err = s.store.UserByEmail(ctx, email)
		switch {
		case err == nil:
			hash = u.PasswordHash
		case fault.KindOf(err) != fault.NotFound:
			return Token{}, err
		}
	}
	if utf8.RuneCountInString(password) > MaxPassword {
		password = "" // never matches; argon2id still runs, on the empty string
	}
	var match bool
	s.hashes.run(func() { match, err = VerifyPassword(password, hash) })
	if err != nil {
		return Token{}, fmt.Errorf("verify password of %s: %w", u.ID, err)
	}
	if !match || u.ID == "" || password == "" {
		return Token{}, errUnauthorized
	}
	return s.issue(u)
}

// hashPassword hashes password inside the cap on argon2id runs. Errors: Overloaded.
func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	release, err := s.hashes.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	var hash string
	s.hashes.run(func() { hash, err = HashPassword(password, s.opts.Hashing) })
	return hash, err
}

// Fingerprint is RequestFingerprint, counted among the argon2id runs. It takes no
// slot: the request that has it run holds one already (HoldHashSlot).
func (s *Service) Fingerprint(key string, request []byte) []byte {
	var sum []byte
	s.hashes.run(func() { sum = RequestFingerprint(key, request) })
	return sum
}

func (s *Service) issue(u User) (Token, error) {
	now := s.opts.Now().UTC().Truncate(time.Second)
	// Never before the account's revocation, which may lie up to a second ahead:
	// a token issued in the second of a role change must outlive the change.
	iat := now
	if rb := time.Unix(u.RevokedBefore, 0).UTC(); iat.Before(rb) {
		iat = rb
	}
	claims := Claims{
		Roles: u.Roles,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.opts.Issuer, Audience: jwt.ClaimStrings{s.opts.Audience}, Subject: u.ID,
			ExpiresAt: jwt.NewNumericDate(iat.Add(s.opts.TokenTTL)), IssuedAt: jwt.NewNumericDate(iat),
			NotBefore: jwt.NewNumericDate(now), ID: id.New(),
		},
	}
	tok, err := s.keys.sign(claims)
	if err != nil {
		return Token{}, err
	}
	return Token{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(s.opts.TokenTTL / time.Second)}, nil
}

// Authenticate verifies an Authorization header value ("Bearer <token>") and returns
// the caller. It refuses a token that lives longer than the token lifetime, and one
// issued before its account's tokens were revoked (or whose account is gone).
// Errors: Unauthorized, unclassified store errors.
func (s *Service) Authenticate(ctx context.Context, header string) (Caller, error) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return Caller{}, errUnauthorized
	}
	c, err := s.keys.verify(strings.TrimSpace(tok), s.opts.Issuer, s.opts.Audience, s.opts.TokenTTL)
	if err != nil || !id.Valid(c.Subject) {
		return Caller{}, errUnauthorized
	}
	u, err := s.store.User(ctx, c.Subject)
	switch {
	case fault.KindOf(err) == fault.NotFound:
		return Caller{}, errUnauthorized
	case err != nil:
		return Caller{}, fmt.Errorf("authenticate: %w", err)
	case c.IssuedAt.Unix() < u.RevokedBefore:
		return Caller{}, errUnauthorized
	}
	return Caller{ID: c.Subject, Roles: c.Roles}, nil
}

// User returns the account with accountID to caller, who must be that account or an
// admin. Errors: NotFound (no such account, or not the caller's to see).
func (s *Service) User(ctx context.Context, caller Caller, accountID string) (User, error) {
	if !id.Valid(accountID) || (caller.ID != accountID && !slices.Contains(caller.Roles, RoleAdmin)) {
		return User{}, errNotFound
	}
	return s.store.User(ctx, accountID)
}

// SetRoles replaces the roles of the account with accountID; caller must be an
// admin. check vets the version the account is at (a client's precondition).
// Errors: Forbidden, NotFound, Invalid, PreconditionFailed.
func (s *Service) SetRoles(ctx context.Context, caller Caller, accountID string, in RolesInput, check func(int) error) (User, error) {
	if !slices.Contains(caller.Roles, RoleAdmin) {
		return User{}, errForbidden
	}
	if !id.Valid(accountID) {
		return User{}, errNotFound
	}
	roles, err := CheckRoles(in.Roles)
	if err != nil {
		return User{}, err
	}
	for {
		u, err := s.store.User(ctx, accountID)
		if err != nil {
			return User{}, err
		}
		if err := check(u.Version); err != nil {
			return User{}, err
		}
		// A changed role revokes the tokens that carry the old ones. The second
		// after the change, because iat has whole seconds: a token issued in the
		// same second as the change could otherwise hold either set of roles. A
		// token issued since an earlier change carries the earlier revoked_before
		// as its iat, so a second change moves it on by at least a second more.
		revoke := !slices.Equal(u.Roles, roles)
		now := s.timestamp()
		if revoke {
			u.RevokedBefore = max(u.RevokedBefore+1, now.Unix()+1)
		}
		u.Roles, u.Version, u.UpdatedAt = roles, u.Version+1, now
		err = s.store.UpdateRoles(ctx, u, revoke)
		if errors.Is(err, ErrStale) {
			continue
		}
		if err != nil {
			return User{}, err
		}
		return u, nil
	}
}

var errNotFound = fault.New(fault.NotFound, "no account has this id")
