// Package notify is the notify service's domain: webhook subscriptions to Folio's
// events, and the signed, retried delivery of every event to each subscription that
// asks for it. What it stores, sends and receives through sits beside it (sqlstore,
// webhook, events, httpapi) behind the interfaces it declares here.
package notify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"folio/internal/platform/fault"
)

// EventTypes are the event types a subscription may ask for: those the book and
// author services publish, and the order service's state changes (docs/orders.md;
// its commands, order.stock.* and order.payment.*, are the saga's, not news).
var EventTypes = []string{
	"author.created", "author.updated", "author.deleted",
	"book.created", "book.updated", "book.deleted",
	"order.pending", "order.reserved", "order.authorised", "order.paid", "order.confirmed",
	"order.voiding", "order.refunding", "order.restocking", "order.releasing",
	"order.rejected", "order.payment_failed", "order.cancelled",
}

// Limits of the writable fields.
const (
	MaxURL    = 2000
	MinSecret = 16
	MaxSecret = 1000
)

// SecretPrefix marks a secret given in the Standard Webhooks form: the base64 of
// the key's bytes.
const SecretPrefix = "whsec_"

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// Subscription is the resource the service owns. Subscriptions cannot change, so
// Version is always 1; it is there because every Folio resource carries one. The
// secret is write-only and never leaves the service except as signatures; at rest it
// is sealed (Config.Secrets) for the subscription's id.
type Subscription struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"-"`
}

// Input is a subscription as a client writes it; nil is a field left out.
type Input struct {
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
	Secret *string   `json:"secret"`
}

// Delivery is the state of one event's delivery to one subscription.
type Delivery struct {
	ID        string    `json:"-"` // orders the list; event ids need not be Folio ids
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	LastError *string   `json:"last_error"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Errors of a URL check (Webhooks.CheckURL). ErrBadURL's message is the one
// clients read, whatever the check found wrong.
var (
	ErrBadURL    = errors.New("must be an absolute http or https URL without user information or a fragment")
	ErrNotPublic = errors.New("not a public address")
)

// validate checks in against every rule, the URL's destination with check, and
// returns the subscription's writable fields, trimmed, or an Invalid error naming
// each broken field.
func (in Input) validate(ctx context.Context, check func(ctx context.Context, url string) error) (Subscription, error) {
	var s Subscription
	var errs fault.Fields
	s.URL = trimmed(in.URL)
	switch {
	case s.URL == "":
		errs.Add("url", "is required")
	case len(s.URL) > MaxURL:
		errs.Add("url", fmt.Sprintf("must be at most %d characters", MaxURL))
	default:
		switch err := check(ctx, s.URL); {
		case errors.Is(err, ErrNotPublic):
			errs.Add("url", "must reach a public address: loopback, private, link-local and other non-public addresses are refused")
		case err != nil:
			errs.Add("url", ErrBadURL.Error())
		}
	}
	if in.Events == nil || len(*in.Events) == 0 {
		errs.Add("events", "is required: at least one of "+strings.Join(EventTypes, ", "))
	} else {
		for _, e := range *in.Events {
			e = strings.TrimSpace(e)
			if !slices.Contains(EventTypes, e) {
				errs.Add("events", fmt.Sprintf("%q is not an event type; use %s", e, strings.Join(EventTypes, ", ")))
				continue
			}
			if !slices.Contains(s.Events, e) { // a repeat adds nothing
				s.Events = append(s.Events, e)
			}
		}
	}
	s.Secret = trimmed(in.Secret)
	switch n := utf8.RuneCountInString(s.Secret); {
	case in.Secret == nil || n == 0:
		errs.Add("secret", "is required")
	case n < MinSecret:
		errs.Add("secret", fmt.Sprintf("must be at least %d characters", MinSecret))
	case n > MaxSecret:
		errs.Add("secret", fmt.Sprintf("must be at most %d characters", MaxSecret))
	case strings.ContainsRune(s.Secret, 0):
		// PostgreSQL cannot store NUL in text; refuse it on every engine alike.
		errs.Add("secret", "must not contain NUL characters")
	case strings.HasPrefix(s.Secret, SecretPrefix):
		if key, err := base64.StdEncoding.DecodeString(s.Secret[len(SecretPrefix):]); err != nil || len(key) < MinSecret {
			errs.Add("secret", fmt.Sprintf("a %s secret must be the standard base64 of at least %d bytes", SecretPrefix, MinSecret))
		}
	}
	return s, errs.Err()
}

func trimmed(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// Errors a Store returns.
var (
	// ErrNotFound: no subscription has the id.
	ErrNotFound = fault.New(fault.NotFound, "no such subscription")
	// ErrFull: CreateSubscription found the maximum of subscriptions reached.
	ErrFull = errors.New("the subscriptions are at their maximum")
)

// SignableEventID reports whether an event id can be a webhook-id: it is signed
// as "<id>.<timestamp>.<body>", so a dot in it would let one signed message pass
// for another, and a control character or a space cannot go in a header.
func SignableEventID(id string) bool {
	return id != "" && !strings.ContainsFunc(id, func(r rune) bool { return r == '.' || r <= ' ' || r == 0x7f })
}
