package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// Claim is a delivery reserved to this instance until its lease ends, with what
// sending it takes.
type Claim struct {
	ID             string
	SubscriptionID string
	EventID        string
	EventType      string
	Body           []byte // the event as received
	URL            string
	Secret         string // as stored: sealed
	Attempts       int    // made before this one
	FirstAttemptAt *time.Time
	// TraceContext is the trace context of the event that made the delivery, as
	// the propagator writes it (traceparent, tracestate...); nil when the delivery
	// was stored without one.
	TraceContext map[string]string
}

// Outcome is the result of one attempt to send a claimed delivery.
type Outcome struct {
	Status    string
	LastError *string
	Started   time.Time // when the attempt began
	Next      time.Time // when to try again, for a pending delivery
	Finished  time.Time
}

// Webhook is one attempt to deliver an event to a subscriber.
type Webhook struct {
	URL       string
	Secret    string // in clear, to sign with
	EventID   string
	EventType string
	Body      []byte
	// SentAt is the attempt's time, which the signature covers, so that a
	// receiver's tolerance window applies to the attempt it receives.
	SentAt time.Time
}

// SendError is an attempt that failed. Reason is what the delivery's last_error
// shows: words of the service's own, never bytes the peer sent, so that the
// deliveries list is no window onto whatever answers at a URL (a banner, an
// internal page, a port scan). Err is the cause, for the logs.
type SendError struct {
	Reason string
	Err    error
	// StatusCode is the subscriber's HTTP answer, when it answered (not 2xx).
	StatusCode int
}

func (e *SendError) Error() string { return e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// Run sends due deliveries, at most Config.Concurrency at once, until ctx ends; it
// returns nil then, once the sends in flight have stopped. Its state is all in the
// store, so a restarted instance carries on where the last one stopped, and
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
		var claims []Claim
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
func (s *Service) claim(ctx context.Context, n int) []Claim {
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
func (s *Service) deliver(ctx context.Context, c Claim, leaseEnd time.Time) {
	ctx, end := s.cfg.Tracer.Attempt(ctx, c)
	started, timer := s.cfg.Now(), time.Now()
	err := s.send(ctx, c)
	s.cfg.Metrics.Attempted(time.Since(timer))
	// Record the outcome even while shutting down: a delivered event must not be
	// sent again because the process was stopping. Nor because the database was
	// slow to take the write (a busy disk): the record is tried again until
	// shortly before the lease ends, when another worker may claim the delivery.
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), leaseEnd.Add(-s.cfg.Lease/10))
	defer cancel()
	if err != nil && ctx.Err() != nil {
		// Shutting down: the attempt was cut short by us, not failed by the
		// subscriber. Hand the delivery back without counting it.
		end("released", "", 0)
		if err := s.store.Release(rctx, c); err != nil {
			s.log.Warn("release delivery", "delivery", c.ID, "error", err)
		}
		return
	}
	o := s.outcome(c, started, err)
	reason, status := failure(err)
	end(result(o), reason, status)
	if err := s.record(rctx, c, o); err != nil {
		s.log.Error("record delivery", "delivery", c.ID, "event_id", c.EventID, "error", err)
		return
	}
	s.cfg.Metrics.Recorded(result(o))
	log := s.log.With("delivery", c.ID, "event_id", c.EventID, "type", c.EventType, "attempts", c.Attempts+1)
	switch o.Status {
	case StatusDelivered:
		log.Debug("webhook delivered")
	case StatusFailed:
		log.Warn("webhook failed; giving up", "error", err)
	default:
		log.Info("webhook attempt failed; will retry", "error", err, "next_attempt_at", o.Next)
	}
}

// failure is what a tracer may say of a failed attempt: its reason, in the
// service's own words (err's text may hold the subscriber's URL, whose query or
// path can be a secret), and the subscriber's status code when it answered.
func failure(err error) (reason string, status int) {
	if err == nil {
		return "", 0
	}
	if se, ok := errors.AsType[*SendError](err); ok {
		status = se.StatusCode
	}
	return lastError(err), status
}

// result names what o makes of its delivery: delivered, retry (it failed and will
// be retried) or failed (given up).
func result(o Outcome) string {
	if o.Status == StatusPending {
		return "retry"
	}
	return o.Status
}

// record stores o, trying again with a backoff until ctx ends.
func (s *Service) record(ctx context.Context, c Claim, o Outcome) error {
	again := retrypolicy.NewBuilder[any]().
		WithMaxRetries(-1).
		WithBackoff(50*time.Millisecond, 2*time.Second).
		ReturnLastFailure().
		OnRetry(func(e failsafe.ExecutionEvent[any]) {
			s.log.Warn("record delivery: trying again", "delivery", c.ID, "error", e.LastError())
		}).
		Build()
	return failsafe.With(again).WithContext(ctx).Run(func() error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return s.store.Finish(actx, c, o)
	})
}

// send makes one attempt to deliver c, signed with its secret, within
// Config.AttemptTimeout.
func (s *Service) send(ctx context.Context, c Claim) error {
	secret, err := s.unseal(c.SubscriptionID, c.Secret)
	if err != nil {
		return &SendError{Reason: "the secret cannot be unsealed", Err: err}
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	err = s.hooks.Send(actx, Webhook{URL: c.URL, Secret: secret, EventID: c.EventID, EventType: c.EventType, Body: c.Body, SentAt: s.cfg.Now()})
	if err != nil && errors.Is(err, context.DeadlineExceeded) && actx.Err() != nil && ctx.Err() == nil {
		timeout := fmt.Sprintf("timeout: no answer within %s", s.cfg.AttemptTimeout)
		return &SendError{Reason: timeout, Err: errors.New(timeout)}
	}
	return err
}

// outcome decides what an attempt that began at started and ended with err means
// for c: delivered, retried after a backoff, or failed for good once the retry
// window since the first attempt has passed.
func (s *Service) outcome(c Claim, started time.Time, err error) Outcome {
	now := s.cfg.Now()
	o := Outcome{Started: started, Finished: now, Next: now}
	if err == nil {
		o.Status = StatusDelivered
		return o
	}
	msg := lastError(err)
	o.LastError = &msg
	first := started
	if c.FirstAttemptAt != nil {
		first = *c.FirstAttemptAt
	}
	deadline := first.Add(s.cfg.GiveUpAfter)
	if !now.Before(deadline) {
		o.Status = StatusFailed
		return o
	}
	o.Status = StatusPending
	o.Next = now.Add(s.backoff(c.Attempts + 1))
	if o.Next.After(deadline) {
		o.Next = deadline // one last try at the end of the window
	}
	return o
}

// lastError is what a failed attempt shows in its delivery's last_error.
func lastError(err error) string {
	if se, ok := errors.AsType[*SendError](err); ok {
		return se.Reason
	}
	return "connection failed" // a sender's error that says nothing safe to show
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
