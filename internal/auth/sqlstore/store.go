// Package sqlstore keeps the auth service's accounts and signing keys in SQLite or
// PostgreSQL, and records the account.revoked events of its writes in the outbox.
package sqlstore

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"folio/internal/auth"
	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the auth database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// Store keeps accounts and signing keys in SQLite or PostgreSQL; its SQL is the
// same on both. Private keys are stored sealed by a secrets.Box, whose key is not in
// the database, so that a copy of the database signs nothing.
type Store struct {
	db  *sqldb.DB
	out *outbox.Writer
	box *secrets.Box
}

var _ auth.Store = (*Store)(nil)

// New returns a store over the database of out, which must be migrated with
// Migrations and with outbox.Migrate; box seals the signing keys.
func New(out *outbox.Writer, box *secrets.Box) *Store {
	return &Store{db: out.DB(), out: out, box: box}
}

// errNotFound is the answer for an account id no row has.
var errNotFound = fault.New(fault.NotFound, "no account has this id")

const userColumns = `id, email, password_hash, roles, version, created_at, updated_at, tokens_revoked_before`

func scanUser(row interface{ Scan(...any) error }) (auth.User, error) {
	var u auth.User
	var roles string
	err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &roles, &u.Version, &u.CreatedAt, &u.UpdatedAt, &u.RevokedBefore)
	u.Roles = []string{}
	if roles != "" {
		u.Roles = strings.Split(roles, ",")
	}
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, err
}

// CreateUser inserts u, and the answer to the request of ctx when it carries an
// Idempotency-Key (idempotency.Save), in one transaction. Errors: Conflict when the
// email is taken, or when the request's key was answered meanwhile.
func (s *Store) CreateUser(ctx context.Context, u auth.User) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			u.ID, u.Email, u.PasswordHash, strings.Join(u.Roles, ","), u.Version, u.CreatedAt, u.UpdatedAt, u.RevokedBefore)
		if sqldb.IsUniqueViolation(err) {
			return fault.Wrap(fault.Conflict, err, "an account with this email exists")
		}
		if err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		return idempotency.Save(ctx, tx, u)
	})
}

// User returns the account with id. Errors: NotFound.
func (s *Store) User(ctx context.Context, id string) (auth.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.User{}, errNotFound
	}
	if err != nil {
		return auth.User{}, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// UserByEmail returns the account with the (normalised) email. Errors: NotFound.
func (s *Store) UserByEmail(ctx context.Context, email string) (auth.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`, email))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.User{}, fault.New(fault.NotFound, "no account has this email")
	}
	if err != nil {
		return auth.User{}, fmt.Errorf("get user by email: %w", err)
	}
	return u, nil
}

// UpdateRoles writes u's roles, version, updated_at and revoked_before if the stored
// account is at u.Version-1. With revoke it records the account.revoked event in the
// same transaction, so that the revocation reaches every verifier if and only if it
// committed. Errors: NotFound, ErrStale.
func (s *Store) UpdateRoles(ctx context.Context, u auth.User, revoke bool) error {
	stale := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET roles = $1, version = $2, updated_at = $3, tokens_revoked_before = $4
			WHERE id = $5 AND version = $6`,
			strings.Join(u.Roles, ","), u.Version, u.UpdatedAt, u.RevokedBefore, u.ID, u.Version-1)
		if err != nil {
			return fmt.Errorf("update roles of %s: %w", u.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("update roles of %s: %w", u.ID, err)
		} else if n != 1 {
			stale = true
			return nil
		}
		if !revoke {
			return nil
		}
		// The row was written (and locked) first, so that the events of one account
		// leave in commit order.
		return outbox.AddEvent(ctx, tx, auth.EventAccountRevoked, u.ID,
			auth.Revocation{ID: u.ID, RevokedBefore: u.RevokedBefore})
	})
	if err != nil {
		return err
	}
	if stale {
		if _, err := s.User(ctx, u.ID); err != nil {
			return err
		}
		return auth.ErrStale
	}
	return nil
}

// SigningKeys returns every stored signing key, oldest first. A key stored in clear
// by an older version is read as it is, until SealSigningKeys seals it. Errors: a key
// that does not unseal (another secrets key, or an altered row).
func (s *Store) SigningKeys(ctx context.Context) ([]auth.SigningKey, error) {
	return s.signingKeys(ctx, s.db.QueryContext)
}

func (s *Store) signingKeys(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error)) ([]auth.SigningKey, error) {
	rows, err := query(ctx, `SELECT kid, private_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var keys []auth.SigningKey
	for rows.Next() {
		var k auth.SigningKey
		var stored []byte
		var retired sql.NullTime
		if err := rows.Scan(&k.KID, &stored, &k.CreatedAt, &retired); err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		seed, _, err := s.seed(k.KID, stored)
		if err != nil {
			return nil, err
		}
		k.Private = ed25519.NewKeyFromSeed(seed)
		k.CreatedAt = k.CreatedAt.UTC()
		if retired.Valid {
			t := retired.Time.UTC()
			k.RetiredAt = &t
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return keys, nil
}

// seed returns the Ed25519 seed of a stored key, and whether it was stored sealed.
func (s *Store) seed(kid string, stored []byte) ([]byte, bool, error) {
	sealed := secrets.IsSealed(string(stored))
	seed := stored
	if sealed {
		var err error
		if seed, err = s.box.Unseal(string(stored), []byte(kid)); err != nil {
			return nil, true, fmt.Errorf("signing key %s: %w (is FOLIO_SECRETS_KEY the key this database was sealed with?)", kid, err)
		}
	}
	if len(seed) != ed25519.SeedSize {
		return nil, sealed, fmt.Errorf("signing key %s: seed of %d bytes, want %d", kid, len(seed), ed25519.SeedSize)
	}
	return seed, sealed, nil
}

// SealSigningKeys seals, in place, every signing key an older version stored in
// clear, and returns how many it sealed. Each row is rewritten only if it still holds
// what was read, so that instances doing this at once do not seal twice.
func (s *Store) SealSigningKeys(ctx context.Context) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, private_key FROM signing_keys`)
	if err != nil {
		return 0, fmt.Errorf("seal signing keys: %w", err)
	}
	type clear struct {
		kid    string
		stored []byte
	}
	var found []clear
	for rows.Next() {
		var c clear
		if err := rows.Scan(&c.kid, &c.stored); err != nil {
			rows.Close()
			return 0, fmt.Errorf("seal signing keys: %w", err)
		}
		if !secrets.IsSealed(string(c.stored)) {
			found = append(found, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("seal signing keys: %w", err)
	}
	n := 0
	for _, c := range found {
		seed, _, err := s.seed(c.kid, c.stored)
		if err != nil {
			return n, err
		}
		res, err := s.db.ExecContext(ctx, `UPDATE signing_keys SET private_key = $1 WHERE kid = $2 AND private_key = $3`,
			[]byte(s.box.Seal(seed, []byte(c.kid))), c.kid, c.stored)
		if err != nil {
			return n, fmt.Errorf("seal signing key %s: %w", c.kid, err)
		}
		if m, _ := res.RowsAffected(); m == 1 {
			n++
		}
	}
	return n, nil
}

// RotateSigningKey stores k (its seed, sealed with the key id as context) and
// retires every other active key at k.CreatedAt, unless an active key created after
// cutoff exists.
func (s *Store) RotateSigningKey(ctx context.Context, k auth.SigningKey, cutoff time.Time) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		keys, err := s.signingKeys(ctx, tx.QueryContext)
		if err != nil {
			return err
		}
		if a := auth.ActiveKey(keys); a != nil && a.CreatedAt.After(cutoff) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL`, k.CreatedAt); err != nil {
			return fmt.Errorf("retire signing keys: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, created_at) VALUES ($1, $2, $3)`,
			k.KID, []byte(s.box.Seal(k.Private.Seed(), []byte(k.KID))), k.CreatedAt); err != nil {
			return fmt.Errorf("store signing key: %w", err)
		}
		return nil
	})
}
