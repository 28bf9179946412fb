package sqlstore_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"folio/internal/auth"
	"folio/internal/auth/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// cheap are argon2id parameters that keep tests fast.
var cheap = auth.Params{Time: 1, Memory: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// startService starts the domain service over db with box, as a program does:
// NewService, then Rotate.
func startService(t *testing.T, db *sqldb.DB, box *secrets.Box) *auth.Service {
	t.Helper()
	outboxtest.Migrate(t, db)
	svc, err := auth.NewService(sqlstore.New(outbox.NewWriter(db, nil), box), auth.Options{Hashing: cheap, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Rotate(context.Background()); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return svc
}

// login registers email (unless it exists) and returns a token for it.
func login(t *testing.T, svc *auth.Service, email string) string {
	t.Helper()
	ctx, password := context.Background(), "twelve chars"
	if _, err := svc.Register(ctx, auth.Credentials{Email: &email, Password: &password}); fault.KindOf(err) != fault.Conflict && err != nil {
		t.Fatalf("Register: %v", err)
	}
	tok, err := svc.Token(ctx, auth.Credentials{Email: &email, Password: &password})
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok.AccessToken
}

// kidOf returns the key id a token's header names.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Kid string }
	if err := json.Unmarshal(h, &v); err != nil {
		t.Fatal(err)
	}
	return v.Kid
}

// activeKID returns the stored key that signs.
func activeKID(t *testing.T, db *sqldb.DB, box *secrets.Box) auth.SigningKey {
	t.Helper()
	keys, err := sqlstore.New(outbox.NewWriter(db, nil), box).SigningKeys(context.Background())
	if err != nil || auth.ActiveKey(keys) == nil {
		t.Fatalf("SigningKeys: got %v, %v, want an active key", keys, err)
	}
	return *auth.ActiveKey(keys)
}

// TestSigningKeysAreStoredSealed replays finding 4 of issue 8: auth.db held the
// Ed25519 private keys in clear, so a copy of it signed admin tokens.
func TestSigningKeysAreStoredSealed(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		box := newBox(t)
		svc := startService(t, db, box)
		key := activeKID(t, db, box)
		if got := kidOf(t, login(t, svc, "ada@example.com")); got != key.KID {
			t.Fatalf("the service signs with %s, want the stored %s", got, key.KID)
		}
		seed := key.Private.Seed()
		raw := rawKeys(t, db)
		if stored := raw[key.KID]; !secrets.IsSealed(string(stored)) || bytes.Contains(stored, seed) ||
			bytes.Contains(stored, []byte(base64.RawStdEncoding.EncodeToString(seed))) {
			t.Fatalf("the stored key %q is not sealed or holds the seed", stored)
		}
		// A sealed key moved to another key id does not open: the kid is the context.
		if _, err := box.Unseal(string(raw[key.KID]), []byte("another-kid")); err == nil {
			t.Error("a sealed key opened under another key id")
		}
	})
}

// TestSigningKeysNeedTheSecretsKey: without the secrets key the database signs
// nothing; a service with another key does not start.
func TestSigningKeysNeedTheSecretsKey(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		startService(t, db, newBox(t))
		thief := sqlstore.New(outbox.NewWriter(db, nil), newBox(t))
		if _, err := thief.SigningKeys(ctx); !errors.Is(err, secrets.ErrUnseal) {
			t.Errorf("SigningKeys with another secrets key: got %v, want ErrUnseal", err)
		}
		svc, err := auth.NewService(thief, auth.Options{Hashing: cheap, Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Rotate(ctx); err == nil {
			t.Error("a service with another secrets key loaded the signing keys")
		}
	})
}

// TestSigningKeysInClearAreSealedAtStart: an older version's key, stored in clear,
// is sealed at start, in place: the same key signs on, and its tokens still verify.
func TestSigningKeysInClearAreSealedAtStart(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		box := newBox(t)
		svc := startService(t, db, box)
		kid := activeKID(t, db, box).KID
		tok := login(t, svc, "ada@example.com")
		_, plain, _ := ed25519.GenerateKey(rand.Reader)
		oldKID := id.New()
		if _, err := db.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, created_at, retired_at) VALUES ($1, $2, $3, $4)`,
			oldKID, []byte(plain.Seed()), time.Now().UTC().Add(-time.Hour), time.Now().UTC()); err != nil {
			t.Fatal(err)
		}

		restarted := startService(t, db, box)
		raw := rawKeys(t, db)
		for k, stored := range raw {
			if !secrets.IsSealed(string(stored)) {
				t.Errorf("key %s left in clear after a start: %q", k, stored)
			}
		}
		got, err := box.Unseal(string(raw[oldKID]), []byte(oldKID))
		if err != nil || !bytes.Equal(got, plain.Seed()) {
			t.Errorf("the sealed old key: got %x, %v, want its seed", got, err)
		}
		fresh := login(t, restarted, "ada@example.com")
		if got := kidOf(t, fresh); got != kid {
			t.Errorf("after the start the service signs with %s, want %s", got, kid)
		}
		for _, tok := range []string{tok, fresh} {
			if _, err := restarted.Authenticate(ctx, "Bearer "+tok); err != nil {
				t.Errorf("a token after the start: %v, want it verified", err)
			}
		}
	})
}

// rawKeys reads the signing_keys rows as stored, by kid.
func rawKeys(t *testing.T, db *sqldb.DB) map[string][]byte {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT kid, private_key FROM signing_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var kid string
		var stored []byte
		if err := rows.Scan(&kid, &stored); err != nil {
			t.Fatal(err)
		}
		out[kid] = stored
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
