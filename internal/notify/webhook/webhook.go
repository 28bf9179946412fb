// Package webhook sends the notify service's webhooks over HTTP, signed as the
// Standard Webhooks specification says, only to the addresses the egress policy
// allows; and checks a subscription's URL against that policy when it is made.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"folio/internal/notify"
	"folio/internal/platform/egress"
)

// Webhook request headers: the Standard Webhooks ones (webhook-id is the event id),
// and the event type, which lets a receiver route before parsing the body.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	HeaderEventType = "Folio-Event-Type"
)

// SigningKey returns the HMAC key of a subscription secret: the decoded bytes of a
// "whsec_<base64>" secret, else the secret's own bytes. (A whsec_ secret that is not
// base64 is never accepted, so never reaches here.)
func SigningKey(secret string) []byte {
	if b64, ok := strings.CutPrefix(secret, notify.SecretPrefix); ok {
		if key, err := base64.StdEncoding.DecodeString(b64); err == nil {
			return key
		}
	}
	return []byte(secret)
}

// Sign returns the webhook-signature of a message under secret, as the Standard
// Webhooks specification has it: "v1," and the base64 HMAC-SHA256 of
// "<id>.<timestamp>.<body>", the timestamp in Unix seconds. Signing the id and the
// time with the body lets a receiver refuse a captured delivery replayed later.
func Sign(secret, id string, timestamp time.Time, body []byte) string {
	mac := hmac.New(sha256.New, SigningKey(secret))
	mac.Write([]byte(id + "." + strconv.FormatInt(timestamp.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Config says where webhooks may go and how they are sent.
type Config struct {
	// Egress says where webhooks may go: by default only to public addresses,
	// checked when a subscription is made and again at every dial.
	Egress egress.Policy
	// Client sends the webhooks; nil means Egress's client, which checks every
	// address it dials, takes no proxy and follows no redirect. Its transport is
	// wrapped, not replaced, to trace each POST.
	Client *http.Client
}

// Sender is the service's notify.Webhooks over HTTP.
type Sender struct {
	egress egress.Policy
	client *http.Client
}

var _ notify.Webhooks = (*Sender)(nil)

// New returns the sender of cfg.
func New(cfg Config) *Sender {
	client := cfg.Client
	if client == nil {
		// A redirect is not a 2xx: the subscriber should fix its URL, and following
		// it could lead to an address the check never saw.
		client = cfg.Egress.Client()
	}
	c := *client // the caller's client stays as it was
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = traced{next: next}
	return &Sender{egress: cfg.Egress, client: &c}
}

// CheckURL implements notify.Webhooks: the egress policy's check, its refusal of
// a non-public address as notify.ErrNotPublic.
func (s *Sender) CheckURL(ctx context.Context, url string) error {
	err := s.egress.CheckURL(ctx, url)
	if errors.Is(err, egress.ErrForbidden) {
		return fmt.Errorf("%w: %w", notify.ErrNotPublic, err)
	}
	return err
}

// statusError is a subscriber's answer that is not 2xx.
type statusError int

func (e statusError) Error() string {
	if e >= 300 && e < 400 {
		return fmt.Sprintf("http %d (redirects are not followed)", int(e))
	}
	return fmt.Sprintf("http %d", int(e))
}

// Send implements notify.Webhooks: it POSTs the event to the subscriber, signed,
// and returns nil on a 2xx answer. A failure names its kind in a few words of
// Folio's own (egress.Describe), never what the peer sent.
func (s *Sender) Send(ctx context.Context, w notify.Webhook) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(w.Body))
	if err != nil {
		return &notify.SendError{Reason: egress.Describe(err), Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Folio-Notify/1")
	req.Header.Set(HeaderID, w.EventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(w.SentAt.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(w.Secret, w.EventID, w.SentAt, w.Body))
	req.Header.Set(HeaderEventType, w.EventType)
	resp, err := s.client.Do(req)
	if err != nil {
		return &notify.SendError{Reason: egress.Describe(err), Err: err}
	}
	// Read a little of the answer so that the connection can be reused, but never
	// let a subscriber stream at us.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		st := statusError(resp.StatusCode)
		return &notify.SendError{Reason: st.Error(), Err: st, StatusCode: resp.StatusCode}
	}
	return nil
}
