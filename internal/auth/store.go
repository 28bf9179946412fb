package auth

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the auth database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// SQLStore keeps accounts and signing keys in SQLite or PostgreSQL; its SQL is the
// same on both.
type SQLStore struct {
	db *sqldb.DB
}

var _ Store = (*SQLStore)(nil)

// NewSQLStore returns a store over db, which must be migrated with Migrations.
func NewSQLStore(db *sqldb.DB) *SQLStore { return &SQLStore{db: db} }

const userColumns = `id, email, password_hash, roles, version, created_at, updated_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var roles string
	err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &roles, &u.Version, &u.CreatedAt, &u.UpdatedAt)
	u.Roles = []string{}
	if roles != "" {
		u.Roles = strings.Split(roles, ",")
	}
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, err
}

// CreateUser inserts u. Errors: Conflict when the email is taken.
func (s *SQLStore) CreateUser(ctx context.Context, u User) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		u.ID, u.Email, u.PasswordHash, strings.Join(u.Roles, ","), u.Version, u.CreatedAt, u.UpdatedAt)
	if sqldb.IsUniqueViolation(err) {
		return fault.Wrap(fault.Conflict, err, "an account with this email exists")
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// User returns the account with id. Errors: NotFound.
func (s *SQLStore) User(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, errNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// UserByEmail returns the account with the (normalised) email. Errors: NotFound.
func (s *SQLStore) UserByEmail(ctx context.Context, email string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`, email))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fault.New(fault.NotFound, "no account has this email")
	}
	if err != nil {
		return User{}, fmt.Errorf("get user by email: %w", err)
	}
	return u, nil
}

// UpdateRoles writes u's roles if the stored account is at u.Version-1. Errors:
// NotFound, ErrStale.
func (s *SQLStore) UpdateRoles(ctx context.Context, u User) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET roles = $1, version = $2, updated_at = $3 WHERE id = $4 AND version = $5`,
		strings.Join(u.Roles, ","), u.Version, u.UpdatedAt, u.ID, u.Version-1)
	if err != nil {
		return fmt.Errorf("update roles of %s: %w", u.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update roles of %s: %w", u.ID, err)
	} else if n == 1 {
		return nil
	}
	if _, err := s.User(ctx, u.ID); err != nil {
		return err
	}
	return ErrStale
}

// SigningKeys returns every stored signing key, oldest first.
func (s *SQLStore) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	return signingKeys(ctx, s.db.QueryContext)
}

func signingKeys(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error)) ([]SigningKey, error) {
	rows, err := query(ctx, `SELECT kid, private_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var keys []SigningKey
	for rows.Next() {
		var k SigningKey
		var seed []byte
		var retired sql.NullTime
		if err := rows.Scan(&k.KID, &seed, &k.CreatedAt, &retired); err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %s: seed of %d bytes, want %d", k.KID, len(seed), ed25519.SeedSize)
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

// RotateSigningKey stores k (its seed) and retires every other active key at
// k.CreatedAt, unless an active key created after cutoff exists.
func (s *SQLStore) RotateSigningKey(ctx context.Context, k SigningKey, cutoff time.Time) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		keys, err := signingKeys(ctx, tx.QueryContext)
		if err != nil {
			return err
		}
		if a := activeKey(keys); a != nil && a.CreatedAt.After(cutoff) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL`, k.CreatedAt); err != nil {
			return fmt.Errorf("retire signing keys: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, created_at) VALUES ($1, $2, $3)`,
			k.KID, []byte(k.Private.Seed()), k.CreatedAt); err != nil {
			return fmt.Errorf("store signing key: %w", err)
		}
		return nil
	})
}
