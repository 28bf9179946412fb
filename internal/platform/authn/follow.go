package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"folio/internal/platform/broker"
)

// RevokedEvent is the type of the auth service's account revocation events, on
// subject <prefix>.account.revoked.
const RevokedEvent = "account.revoked"

// revokedData is the data of an account.revoked event.
type revokedData struct {
	ID            string `json:"id"`             // the account, the tokens' sub
	RevokedBefore int64  `json:"revoked_before"` // Unix seconds: earlier iat are refused
}

// FollowRevocations applies the account revocations published on b under prefix
// until ctx ends. It starts a token lifetime (plus the leeway) in the past, so
// that a verifier that has just started knows every revocation that can still
// refuse an unexpired token.
func (v *Verifier) FollowRevocations(ctx context.Context, b *broker.Broker, prefix string) error {
	since := v.now().Add(-v.revoked.keep)
	err := b.Follow(ctx, []string{prefix + "." + RevokedEvent}, since, func(_ context.Context, m broker.Message) error {
		return v.applyRevocation(m.Body)
	})
	if err != nil {
		return fmt.Errorf("follow revocations: %w", err)
	}
	return nil
}

// applyRevocation applies one account.revoked event body.
func (v *Verifier) applyRevocation(body []byte) error {
	var e struct {
		Type string      `json:"type"`
		Data revokedData `json:"data"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("revocation event: %w", err)
	}
	if e.Data.ID == "" || e.Data.RevokedBefore <= 0 {
		return errors.New("revocation event: no account id or revoked_before")
	}
	before := time.Unix(e.Data.RevokedBefore, 0)
	v.Revoke(e.Data.ID, before)
	v.log.Info("account's earlier tokens revoked", "subject", e.Data.ID, "revoked_before", before.UTC().Format(time.RFC3339))
	return nil
}
