package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"folio/internal/platform/egress"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// Webhook request headers: the Standard Webhooks ones (webhook-id is the event id),
// and the event type, which lets a receiver route before parsing the body.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	HeaderEventType = "Folio-Event-Type"
)

// secretPrefix marks a secret given in the Standard Webhooks form: the base64 of
// the key's bytes.
const secretPrefix = "whsec_"

// SigningKey returns the HMAC key of a subscription secret: the decoded bytes of a
// "whsec_<base64>" secret, else the secret's own bytes. (A whsec_ secret that is not
// base64 is never accepted, so never reaches here.)
func SigningKey(secret string) []byte {
	if b64, ok := strings.CutPrefix(secret, secretPrefix); ok {
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

// Run sends due deliveries, at most Config.Concurrency at once, until ctx ends; it
// returns nil then, once the sends in flight have stopped. Its state is all in the
// database, so a restarted instance carries on where the last one stopped, and
// several instances can run over one PostgreSQL database.
func (s *Service) Run(ctx context.Context) error {
	slots := make(chan struct{}, s.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	ticker := time.NewTicker(s.cfg.PollInterval)
	defer ticker.Stop()
	for {
		free := cap(slots) - len(slots) // only this goroutine fills slots
		var claims []claim
		if free > 0 {
			claims = s.claim(ctx, free)
		}
		leaseEnd := time.Now().Add(s.cfg.Lease)
		for _, c := range claims {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.deliver(ctx, c, leaseEnd)
				<-slots
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
		}
		if free > 0 && len(claims) == free {
			continue // there may be more due at once
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-s.wake:
		case <-freed:
		}
	}
}

// claim reserves up to n due deliveries. The claim is not cut short by ctx: a claim
// committed but not read back would leave its deliveries leased to nobody until the
// lease ends. Claims made as ctx ends are released by deliver.
func (s *Service) claim(ctx context.Context, n int) []claim {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Lease/2)
	defer cancel()
	claims, err := s.store.Claim(cctx, s.cfg.Now(), s.cfg.Lease, n)
	if err != nil {
		s.log.Error("claim deliveries", "error", err)
	}
	return claims
}

// deliver makes one attempt to send c, leased to this instance until leaseEnd,
// and records its outcome.
func (s *Service) deliver(ctx context.Context, c claim, leaseEnd time.Time) {
	started, timer := s.cfg.Now(), time.Now()
	err := s.send(ctx, c)
	s.stats.duration.Observe(time.Since(timer).Seconds())
	// Record the outcome even while shutting down: a delivered event must not be
	// sent again because the process was stopping. Nor because the database was
	// slow to take the write (a busy disk): the record is tried again until
	// shortly before the lease ends, when another worker may claim the delivery.
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), leaseEnd.Add(-s.cfg.Lease/10))
	defer cancel()
	if err != nil && ctx.Err() != nil {
		// Shutting down: the attempt was cut short by us, not failed by the
		// subscriber. Hand the delivery back without counting it.
		if err := s.store.Release(rctx, c); err != nil {
			s.log.Warn("release delivery", "delivery", c.id, "error", err)
		}
		return
	}
	o := s.outcome(c, started, err)
	record := retrypolicy.NewBuilder[any]().
		WithMaxRetries(-1).
		WithBackoff(50*time.Millisecond, 2*time.Second).
		ReturnLastFailure().
		OnRetry(func(e failsafe.ExecutionEvent[any]) {
			s.log.Warn("record delivery: trying again", "delivery", c.id, "error", e.LastError())
		}).
		Build()
	if err := failsafe.With(record).WithContext(rctx).Run(func() error {
		actx, cancel := context.WithTimeout(rctx, 5*time.Second)
		defer cancel()
		return s.store.Finish(actx, c, o)
	}); err != nil {
		s.log.Error("record delivery", "delivery", c.id, "event_id", c.eventID, "error", err)
		return
	}
	result := o.status
	if result == StatusPending {
		result = "retry"
	}
	s.stats.attempts.WithLabelValues(result).Inc()
	log := s.log.With("delivery", c.id, "event_id", c.eventID, "type", c.eventType, "attempts", c.attempts+1)
	switch o.status {
	case StatusDelivered:
		log.Debug("webhook delivered")
	case StatusFailed:
		log.Warn("webhook failed; giving up", "error", err)
	default:
		log.Info("webhook attempt failed; will retry", "error", err, "next_attempt_at", o.next)
	}
}

// outcome decides what an attempt that began at started and ended with err means
// for c: delivered, retried after a backoff, or failed for good once the retry
// window since the first attempt has passed.
func (s *Service) outcome(c claim, started time.Time, err error) outcome {
	now := s.cfg.Now()
	o := outcome{started: started, finished: now, next: now}
	if err == nil {
		o.status = StatusDelivered
		return o
	}
	msg := lastError(err)
	o.lastError = &msg
	first := started
	if c.firstAttemptAt != nil {
		first = *c.firstAttemptAt
	}
	deadline := first.Add(s.cfg.GiveUpAfter)
	if !now.Before(deadline) {
		o.status = StatusFailed
		return o
	}
	o.status = StatusPending
	o.next = now.Add(s.backoff(c.attempts + 1))
	if o.next.After(deadline) {
		o.next = deadline // one last try at the end of the window
	}
	return o
}

// backoff is the wait after the given number of failed attempts: BackoffBase
// doubled for each failure after the first, at most BackoffMax, less a random part
// of up to half of it.
func (s *Service) backoff(failures int) time.Duration {
	d := s.cfg.BackoffBase
	for i := 1; i < failures && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	return d - rand.N(d/2+1)
}

// errStatus is a subscriber's answer that is not 2xx.
type errStatus int

func (e errStatus) Error() string {
	if e >= 300 && e < 400 {
		return fmt.Sprintf("http %d (redirects are not followed)", int(e))
	}
	return fmt.Sprintf("http %d", int(e))
}

// errTimeout is an attempt that got no answer within Config.AttemptTimeout.
type errTimeout time.Duration

func (e errTimeout) Error() string {
	return fmt.Sprintf("timeout: no answer within %s", time.Duration(e))
}

// lastError is what a failed attempt shows in its delivery's last_error: words of
// the service's own, never bytes the peer sent, so that the deliveries list is no
// window onto whatever answers at a URL (a banner, an internal page, a port scan).
func lastError(err error) string {
	var st errStatus
	var to errTimeout
	switch {
	case errors.As(err, &st):
		return st.Error()
	case errors.As(err, &to):
		return to.Error()
	case errors.Is(err, errSecret):
		return "the secret cannot be unsealed"
	default:
		return egress.Describe(err)
	}
}

// errSecret marks an attempt not made because the subscription's secret could not
// be unsealed: the secrets key is not the one it was sealed with.
var errSecret = errors.New("secret")

// send POSTs the event to the subscriber, signed. It returns nil on a 2xx answer.
func (s *Service) send(ctx context.Context, c claim) error {
	secret, err := s.unseal(c.subscriptionID, c.secret)
	if err != nil {
		return fmt.Errorf("%w: %w", errSecret, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Folio-Notify/1")
	// Each attempt is signed at its own time, so that a receiver's tolerance window
	// applies to the attempt it receives, retries included.
	now := s.cfg.Now()
	req.Header.Set(HeaderID, c.eventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(secret, c.eventID, now, c.body))
	req.Header.Set(HeaderEventType, c.eventType)
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return errTimeout(s.cfg.AttemptTimeout)
		}
		return err
	}
	// Read a little of the answer so that the connection can be reused, but never
	// let a subscriber stream at us.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errStatus(resp.StatusCode)
	}
	return nil
}

// Purge removes deliveries that ended (delivered or failed) more than olderThan ago.
func (s *Service) Purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	return s.store.Purge(ctx, s.cfg.Now().Add(-olderThan))
}
