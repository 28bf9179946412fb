package auth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"folio/internal/auth"
	"folio/internal/platform/fault"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

func newUser(email string, roles []string, now time.Time) auth.User {
	return auth.User{ID: rest.NewID(), Email: email, Roles: roles, Version: 1, CreatedAt: now, UpdatedAt: now,
		PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA"}
}

func sameUser(a, b auth.User) bool {
	return a.ID == b.ID && a.Email == b.Email && slices.Equal(a.Roles, b.Roles) && a.Version == b.Version &&
		a.PasswordHash == b.PasswordHash && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.RevokedBefore == b.RevokedBefore &&
		a.CreatedAt.Location() == time.UTC
}

func signingKey(t *testing.T, now time.Time) auth.SigningKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return auth.SigningKey{KID: rest.NewID(), Private: priv, CreatedAt: now}
}

func TestSQLStore(t *testing.T) {
	sqldbtest.ForEach(t, auth.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		s := auth.NewSQLStore(db, newBox(t))
		now := time.Now().UTC().Truncate(time.Microsecond)

		ada := newUser("ada@example.com", []string{"reader"}, now)
		bob := newUser("bob@example.com", []string{"reader", "editor", "admin"}, now.Add(time.Second))
		for _, u := range []auth.User{ada, bob} {
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
		}

		t.Run("get", func(t *testing.T) {
			for _, want := range []auth.User{ada, bob} {
				got, err := s.User(ctx, want.ID)
				if err != nil || !sameUser(got, want) {
					t.Errorf("User: got %+v, %v, want %+v", got, err, want)
				}
				got, err = s.UserByEmail(ctx, want.Email)
				if err != nil || !sameUser(got, want) {
					t.Errorf("UserByEmail: got %+v, %v, want %+v", got, err, want)
				}
			}
			if _, err := s.User(ctx, rest.NewID()); fault.KindOf(err) != fault.NotFound {
				t.Errorf("User of a missing id: got %v, want NotFound", err)
			}
			if _, err := s.UserByEmail(ctx, "nobody@example.com"); fault.KindOf(err) != fault.NotFound {
				t.Errorf("UserByEmail of a missing email: got %v, want NotFound", err)
			}
		})

		t.Run("email is unique", func(t *testing.T) {
			err := s.CreateUser(ctx, newUser("ada@example.com", []string{"admin"}, now))
			if fault.KindOf(err) != fault.Conflict {
				t.Errorf("got %v, want Conflict", err)
			}
		})

		t.Run("update roles", func(t *testing.T) {
			u := ada
			u.Roles, u.Version, u.UpdatedAt = []string{"editor"}, 2, now.Add(time.Minute)
			if err := s.UpdateRoles(ctx, u, false); err != nil {
				t.Fatalf("UpdateRoles: %v", err)
			}
			got, _ := s.User(ctx, ada.ID)
			if !sameUser(got, u) {
				t.Errorf("got %+v, want %+v", got, u)
			}
			if err := s.UpdateRoles(ctx, u, false); !errors.Is(err, auth.ErrStale) {
				t.Errorf("UpdateRoles at an old version: got %v, want ErrStale", err)
			}
			u.ID = rest.NewID()
			if err := s.UpdateRoles(ctx, u, false); fault.KindOf(err) != fault.NotFound {
				t.Errorf("UpdateRoles of a missing account: got %v, want NotFound", err)
			}
			u = bob
			u.Roles, u.Version = []string{}, 2
			if err := s.UpdateRoles(ctx, u, false); err != nil {
				t.Fatalf("UpdateRoles to none: %v", err)
			}
			if got, _ := s.User(ctx, bob.ID); len(got.Roles) != 0 || got.Roles == nil {
				t.Errorf("got roles %#v, want an empty list", got.Roles)
			}
			if events, _ := outboxtest.Events(t, db, 0); len(events) != 0 {
				t.Errorf("updates without revoke wrote events %+v, want none", events)
			}
		})

		t.Run("update roles and revoke", func(t *testing.T) {
			_, last := outboxtest.Events(t, db, 0)
			u, _ := s.User(ctx, ada.ID)
			u.Roles, u.Version, u.UpdatedAt, u.RevokedBefore = []string{"reader"}, u.Version+1, now.Add(2*time.Minute), now.Unix()+121
			if err := s.UpdateRoles(ctx, u, true); err != nil {
				t.Fatalf("UpdateRoles: %v", err)
			}
			if got, _ := s.User(ctx, ada.ID); !sameUser(got, u) {
				t.Errorf("got %+v, want %+v", got, u)
			}
			events, _ := outboxtest.Events(t, db, last)
			want := fmt.Sprintf(`{"id":%q,"revoked_before":%d}`, ada.ID, u.RevokedBefore)
			if len(events) != 1 || events[0].Envelope.Type != auth.EventAccountRevoked || events[0].Aggregate != ada.ID ||
				!outboxtest.SameJSON(t, events[0].Envelope.Data, []byte(want)) {
				t.Fatalf("got events %+v, want one account.revoked with data %s", events, want)
			}
			// A stale write changes nothing and records no event.
			if err := s.UpdateRoles(ctx, u, true); !errors.Is(err, auth.ErrStale) {
				t.Errorf("UpdateRoles at an old version: got %v, want ErrStale", err)
			}
			if events, _ := outboxtest.Events(t, db, last); len(events) != 1 {
				t.Errorf("a stale update wrote an event: got %d events, want 1", len(events))
			}
		})

		t.Run("signing keys", func(t *testing.T) {
			keys, err := s.SigningKeys(ctx)
			if err != nil || len(keys) != 0 {
				t.Fatalf("SigningKeys of a new database: got %v, %v, want none", keys, err)
			}
			k1 := signingKey(t, now)
			if err := s.RotateSigningKey(ctx, k1, now.Add(-time.Hour)); err != nil {
				t.Fatalf("RotateSigningKey: %v", err)
			}
			// An active key newer than the cutoff: another instance rotated already.
			if err := s.RotateSigningKey(ctx, signingKey(t, now.Add(time.Second)), now.Add(-time.Hour)); err != nil {
				t.Fatalf("RotateSigningKey: %v", err)
			}
			keys, _ = s.SigningKeys(ctx)
			if len(keys) != 1 || keys[0].KID != k1.KID || !keys[0].Private.Equal(k1.Private) || keys[0].RetiredAt != nil ||
				!keys[0].CreatedAt.Equal(now) {
				t.Fatalf("got keys %+v, want only %s, active", keys, k1.KID)
			}
			later := now.Add(25 * time.Hour)
			k2 := signingKey(t, later)
			if err := s.RotateSigningKey(ctx, k2, later.Add(-24*time.Hour)); err != nil {
				t.Fatalf("RotateSigningKey: %v", err)
			}
			keys, _ = s.SigningKeys(ctx)
			if len(keys) != 2 || keys[0].KID != k1.KID || keys[1].KID != k2.KID {
				t.Fatalf("got keys %+v, want %s then %s", keys, k1.KID, k2.KID)
			}
			if keys[0].RetiredAt == nil || !keys[0].RetiredAt.Equal(later) || keys[1].RetiredAt != nil {
				t.Errorf("got retired_at %v and %v, want %v and none", keys[0].RetiredAt, keys[1].RetiredAt, later)
			}
		})
	})
}

// TestSigningKeysSealed replays finding 4 of issue 8: auth.db held the Ed25519
// private keys in clear, so a copy of it signed admin tokens. Now the rows hold
// sealed keys, a database read without the secrets key cannot sign, and keys stored
// in clear by an older version are sealed at start.
func TestSigningKeysSealed(t *testing.T) {
	sqldbtest.ForEach(t, auth.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newServer(t, db)
		kid := auth.CurrentKID(s.svc)
		keys, err := auth.NewSQLStore(db, s.box).SigningKeys(ctx)
		if err != nil || len(keys) != 1 {
			t.Fatalf("SigningKeys: got %v, %v, want one key", keys, err)
		}
		seed := keys[0].Private.Seed()

		raw := rawKeys(t, db)
		if stored := raw[kid]; !secrets.IsSealed(string(stored)) || bytes.Contains(stored, seed) ||
			bytes.Contains(stored, []byte(base64.RawStdEncoding.EncodeToString(seed))) {
			t.Fatalf("the stored key %q is not sealed or holds the seed", stored)
		}

		// Without the secrets key the database signs nothing.
		thief := auth.NewSQLStore(db, newBox(t))
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
		// A sealed key moved to another key id does not open: the kid is the context.
		if _, err := s.box.Unseal(string(raw[kid]), []byte("another-kid")); err == nil {
			t.Error("a sealed key opened under another key id")
		}

		// An older version's key, stored in clear, is sealed at start, in place: the
		// same key signs on, and its tokens still verify.
		tok := s.token(s.register("ada@example.com", "twelve chars").Email, "twelve chars")
		_, plain, _ := ed25519.GenerateKey(rand.Reader)
		oldKID := rest.NewID()
		if _, err := db.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, created_at, retired_at) VALUES ($1, $2, $3, $4)`,
			oldKID, []byte(plain.Seed()), time.Now().UTC().Add(-time.Hour), time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
		restarted := newServerWith(t, db, s.box)
		raw = rawKeys(t, db)
		for k, stored := range raw {
			if !secrets.IsSealed(string(stored)) {
				t.Errorf("key %s left in clear after a start: %q", k, stored)
			}
		}
		got, err := s.box.Unseal(string(raw[oldKID]), []byte(oldKID))
		if err != nil || !bytes.Equal(got, plain.Seed()) {
			t.Errorf("the sealed old key: got %x, %v, want its seed", got, err)
		}
		if auth.CurrentKID(restarted.svc) != kid {
			t.Errorf("after the start the service signs with %s, want %s", auth.CurrentKID(restarted.svc), kid)
		}
		restarted.verify(tok)
		restarted.verify(restarted.token("ada@example.com", "twelve chars"))
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
