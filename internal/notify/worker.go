package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Webhook request headers.
const (
	HeaderSignature = "Folio-Signature"
	HeaderEventID   = "Folio-Event-Id"
	HeaderEventType = "Folio-Event-Type"
)

// Sign returns the Folio-Signature of body under secret: "sha256=" and the hex
// HMAC-SHA256.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
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
		for _, c := range claims {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.deliver(ctx, c)
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

// deliver makes one attempt to send c and records its outcome.
func (s *Service) deliver(ctx context.Context, c claim) {
	started, timer := s.cfg.Now(), time.Now()
	err := s.send(ctx, c)
	s.stats.duration.Observe(time.Since(timer).Seconds())
	// Record the outcome even while shutting down: a delivered event must not be
	// sent again because the process was stopping.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
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
	if err := s.store.Finish(rctx, c, o); err != nil {
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
	// PostgreSQL text takes neither NUL nor broken UTF-8, which a cut can make.
	msg := strings.ReplaceAll(err.Error(), "\x00", "")
	if len(msg) > maxLastError {
		msg = strings.ToValidUTF8(msg[:maxLastError], "")
	}
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
	return fmt.Sprintf("the subscriber answered %d %s", int(e), http.StatusText(int(e)))
}

// send POSTs the event to the subscriber, signed. It returns nil on a 2xx answer.
func (s *Service) send(ctx context.Context, c claim) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Folio-Notify/1")
	req.Header.Set(HeaderSignature, Sign(c.secret, c.body))
	req.Header.Set(HeaderEventID, c.eventID)
	req.Header.Set(HeaderEventType, c.eventType)
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("no answer within %s", s.cfg.AttemptTimeout)
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
