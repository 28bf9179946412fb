package authn

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/polltest"
)

// TestFollowRevocationsOnNATS replays finding 8 of issue 8 through the broker: a
// revocation published before the verifier started (a restart) and one published
// while it runs both refuse the subject's earlier tokens.
func TestFollowRevocationsOnNATS(t *testing.T) {
	feed := authntest.NewFeed(t)
	f := newFixture(t, nil)
	early, late := f.token("early", []string{RoleEditor}), f.token("late", []string{RoleEditor})
	for _, tok := range []string{early, late} {
		if a := f.write(tok); a.status != http.StatusOK {
			t.Fatalf("before any revocation: status = %d, want 200", a.status)
		}
	}
	feed.Revoke("early", time.Now().Add(time.Second))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.v.FollowRevocations(ctx, feed.Broker, feed.Prefix) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("FollowRevocations returned %v", err)
			}
		case <-time.After(polltest.Deadline):
			t.Error("FollowRevocations did not return after its context ended")
		}
	}()

	waitRefused(t, f, early, "a revocation published before the verifier followed")
	// Until the follower is known to be live, keep publishing: an event it has
	// already applied changes nothing.
	polltest.Until(t, "a revocation published while following applied", func() error {
		feed.Revoke("late", time.Now().Add(time.Second))
		a := f.write(late)
		if a.status != http.StatusUnauthorized {
			return fmt.Errorf("status %d", a.status)
		}
		wantRefused(t, a, "revoked")
		return nil
	})
	fresh := f.token("late", []string{RoleEditor}, func(c *authntest.Claims) {
		c.IssuedAt = jwt.NewNumericDate(time.Now().Add(2 * time.Second))
	})
	if a := f.write(fresh); a.status != http.StatusOK {
		t.Errorf("a token issued after the revocation: status = %d, want 200 (%s)", a.status, a.body)
	}
}

func waitRefused(t *testing.T, f *fixture, tok, what string) {
	t.Helper()
	polltest.Until(t, what+" applied", func() error {
		a := f.write(tok)
		if a.status != http.StatusUnauthorized {
			return fmt.Errorf("status %d", a.status)
		}
		wantRefused(t, a, "revoked")
		return nil
	})
}
