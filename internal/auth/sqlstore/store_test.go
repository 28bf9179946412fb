package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

var quiet = slog.New(slog.DiscardHandler)

// newBox returns a secrets box with a fresh key.
func newBox(tb testing.TB) *secrets.Box {
	tb.Helper()
	box, err := secrets.Load(secrets.Config{Key: secrets.GenerateKey()}, "", quiet)
	if err != nil {
		tb.Fatalf("secrets: %v", err)
	}
	return box
}

// newStore returns a store over db, with the outbox beside it, and a new box.
func newStore(t *testing.T, db *sqldb.DB) *sqlstore.Store {
	t.Helper()
	outboxtest.Migrate(t, db)
	return sqlstore.New(outbox.NewWriter(db, nil), newBox(t))
}

func newUser(email string, roles []string, now time.Time) auth.User {
	return auth.User{ID: id.New(), Email: email, Roles: roles, Version: 1, CreatedAt: now, UpdatedAt: now,
		PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA"}
}

func sameUser(a, b auth.User) bool {
	return a.ID == b.ID && a.Email == b.Email && slices.Equal(a.Roles, b.Roles) && a.Version == b.Version &&
		a.PasswordHash == b.PasswordHash && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.RevokedBefore == b.RevokedBefore &&
		a.CreatedAt.Location() == time.UTC
}

// seed stores ada (a reader) and bob (every role) created at now.
func seed(t *testing.T, s *sqlstore.Store, now time.Time) (ada, bob auth.User) {
	t.Helper()
	ada = newUser("ada@example.com", []string{"reader"}, now)
	bob = newUser("bob@example.com", []string{"reader", "editor", "admin"}, now.Add(time.Second))
	for _, u := range []auth.User{ada, bob} {
		if err := s.CreateUser(context.Background(), u); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
	}
	return ada, bob
}

func timestamp() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func TestStoreFindsUsersByIDAndEmail(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		ada, bob := seed(t, s, timestamp())
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
		if _, err := s.User(ctx, id.New()); fault.KindOf(err) != fault.NotFound {
			t.Errorf("User of a missing id: got %v, want NotFound", err)
		}
		if _, err := s.UserByEmail(ctx, "nobody@example.com"); fault.KindOf(err) != fault.NotFound {
			t.Errorf("UserByEmail of a missing email: got %v, want NotFound", err)
		}
	})
}

func TestStoreRefusesATakenEmail(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		now := timestamp()
		seed(t, s, now)
		err := s.CreateUser(context.Background(), newUser("ada@example.com", []string{"admin"}, now))
		if fault.KindOf(err) != fault.Conflict {
			t.Errorf("got %v, want Conflict", err)
		}
	})
}

// TestStoreUpdateRolesAtTheReadVersionOnly: a write applies to the version it read,
// a stale one is refused with auth.ErrStale, and without revoke no event is recorded.
func TestStoreUpdateRolesAtTheReadVersionOnly(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		now := timestamp()
		ada, bob := seed(t, s, now)

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
		u.ID = id.New()
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
}

// TestStoreRevocationRecordsAnEvent: an update with revoke records account.revoked
// in its transaction; a stale one changes nothing and records nothing.
func TestStoreRevocationRecordsAnEvent(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		now := timestamp()
		ada, _ := seed(t, s, now)

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
		if err := s.UpdateRoles(ctx, u, true); !errors.Is(err, auth.ErrStale) {
			t.Errorf("UpdateRoles at an old version: got %v, want ErrStale", err)
		}
		if events, _ := outboxtest.Events(t, db, last); len(events) != 1 {
			t.Errorf("a stale update wrote an event: got %d events, want 1", len(events))
		}
	})
}

func signingKey(t *testing.T, now time.Time) auth.SigningKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return auth.SigningKey{KID: id.New(), Private: priv, CreatedAt: now}
}

// TestStoreRotatesSigningKeys: a new key retires the active one, unless an active
// key newer than the cutoff exists (another instance rotated already).
func TestStoreRotatesSigningKeys(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		now := timestamp()
		keys, err := s.SigningKeys(ctx)
		if err != nil || len(keys) != 0 {
			t.Fatalf("SigningKeys of a new database: got %v, %v, want none", keys, err)
		}
		k1 := signingKey(t, now)
		if err := s.RotateSigningKey(ctx, k1, now.Add(-time.Hour)); err != nil {
			t.Fatalf("RotateSigningKey: %v", err)
		}
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
}
