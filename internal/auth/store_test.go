package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"folio/internal/auth"
	"folio/internal/platform/fault"
	"folio/internal/platform/rest"
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
		s := auth.NewSQLStore(db)
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
			if err := s.UpdateRoles(ctx, u); err != nil {
				t.Fatalf("UpdateRoles: %v", err)
			}
			got, _ := s.User(ctx, ada.ID)
			if !sameUser(got, u) {
				t.Errorf("got %+v, want %+v", got, u)
			}
			if err := s.UpdateRoles(ctx, u); !errors.Is(err, auth.ErrStale) {
				t.Errorf("UpdateRoles at an old version: got %v, want ErrStale", err)
			}
			u.ID = rest.NewID()
			if err := s.UpdateRoles(ctx, u); fault.KindOf(err) != fault.NotFound {
				t.Errorf("UpdateRoles of a missing account: got %v, want NotFound", err)
			}
			u = bob
			u.Roles, u.Version = []string{}, 2
			if err := s.UpdateRoles(ctx, u); err != nil {
				t.Fatalf("UpdateRoles to none: %v", err)
			}
			if got, _ := s.User(ctx, bob.ID); len(got.Roles) != 0 || got.Roles == nil {
				t.Errorf("got roles %#v, want an empty list", got.Roles)
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
