package notify

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// workStore hands out its claims once and keeps what the worker records.
type workStore struct {
	Store
	mu        sync.Mutex
	claims    []Claim
	refusals  int // Finish calls to fail before one succeeds
	finished  []Outcome
	released  []Claim
	recording chan struct{} // closed once an outcome or a release is kept
}

func newWorkStore(refusals int, claims ...Claim) *workStore {
	return &workStore{claims: claims, refusals: refusals, recording: make(chan struct{})}
}

func (s *workStore) Claim(context.Context, time.Time, time.Duration, int) ([]Claim, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.claims
	s.claims = nil
	return cs, nil
}

func (s *workStore) Finish(_ context.Context, _ Claim, o Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals > 0 {
		s.refusals--
		return errors.New("database is locked")
	}
	s.finished = append(s.finished, o)
	close(s.recording)
	return nil
}

func (s *workStore) Release(_ context.Context, c Claim) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = append(s.released, c)
	close(s.recording)
	return nil
}

// sender answers each webhook with send's error, after telling started.
type sender struct {
	hooks
	started chan Webhook
	send    func(ctx context.Context) error
}

func (s sender) Send(ctx context.Context, w Webhook) error {
	s.started <- w
	return s.send(ctx)
}

// counted counts the results the worker reports.
type counted struct {
	mu      sync.Mutex
	results []string
}

func (*counted) Attempted(time.Duration) {}
func (c *counted) Recorded(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results = append(c.results, result)
}

// runUntil runs the worker until stop is closed and returns Run's error.
func runUntil(svc *Service, stop <-chan struct{}) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	go func() { <-stop; cancel() }()
	return done
}

func claimOf(subID string) Claim {
	return Claim{ID: "d1", SubscriptionID: subID, EventID: "e1", EventType: "book.created", Body: []byte(`{}`),
		URL: "https://hooks.example.com/", Secret: sealer{}.Seal([]byte("0123456789abcdef"), []byte(subID))}
}

func TestWorkerRecordsAnOutcomeTheStoreRefusedAtFirst(t *testing.T) {
	st := newWorkStore(2, claimOf("s1"))
	m := &counted{}
	snd := sender{started: make(chan Webhook, 1), send: func(context.Context) error { return nil }}
	svc := newTestService(t, st, snd, Config{PollInterval: time.Hour, Metrics: m})
	stop := make(chan struct{})
	done := runUntil(svc, stop)
	w := <-snd.started
	<-st.recording
	close(stop)
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if w.Secret != "0123456789abcdef" || w.EventID != "e1" || w.URL != "https://hooks.example.com/" {
		t.Errorf("sent %+v, want the claim with its secret unsealed", w)
	}
	if len(st.finished) != 1 || st.finished[0].Status != StatusDelivered || len(st.released) != 0 {
		t.Errorf("recorded %+v, released %+v; want delivered once", st.finished, st.released)
	}
	if len(m.results) != 1 || m.results[0] != "delivered" {
		t.Errorf("reported %v, want delivered", m.results)
	}
}

func TestWorkerHandsBackADeliveryCutShortByShutdown(t *testing.T) {
	st := newWorkStore(0, claimOf("s1"))
	m := &counted{}
	snd := sender{started: make(chan Webhook, 1), send: func(ctx context.Context) error {
		<-ctx.Done() // the subscriber has not answered when the worker stops
		return &SendError{Reason: "connection failed", Err: ctx.Err()}
	}}
	svc := newTestService(t, st, snd, Config{PollInterval: time.Hour, Metrics: m})
	stop := make(chan struct{})
	done := runUntil(svc, stop)
	<-snd.started
	close(stop)
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	<-st.recording
	if len(st.released) != 1 || len(st.finished) != 0 || len(m.results) != 0 {
		t.Errorf("released %+v, recorded %+v, reported %v; want it released uncounted", st.released, st.finished, m.results)
	}
}

func TestWorkerDoesNotSendWhatItCannotUnseal(t *testing.T) {
	c := claimOf("s1")
	c.SubscriptionID = "s2" // sealed for another subscription
	st := newWorkStore(0, c)
	snd := sender{started: make(chan Webhook, 1), send: func(context.Context) error { return nil }}
	svc := newTestService(t, st, snd, Config{PollInterval: time.Hour})
	stop := make(chan struct{})
	done := runUntil(svc, stop)
	<-st.recording
	close(stop)
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if len(snd.started) != 0 {
		t.Error("the webhook was sent")
	}
	if len(st.finished) != 1 || st.finished[0].Status != StatusPending || st.finished[0].LastError == nil ||
		*st.finished[0].LastError != "the secret cannot be unsealed" {
		t.Errorf("recorded %+v, want a retry for the unsealable secret", st.finished)
	}
}

func TestWorkerNamesAnAttemptPastItsTimeout(t *testing.T) {
	st := newWorkStore(0, claimOf("s1"))
	snd := sender{started: make(chan Webhook, 1), send: func(ctx context.Context) error {
		<-ctx.Done()
		return &SendError{Reason: "timeout", Err: ctx.Err()}
	}}
	svc := newTestService(t, st, snd, Config{PollInterval: time.Hour, AttemptTimeout: 20 * time.Millisecond})
	stop := make(chan struct{})
	done := runUntil(svc, stop)
	<-st.recording
	close(stop)
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if len(st.finished) != 1 || st.finished[0].LastError == nil || *st.finished[0].LastError != "timeout: no answer within 20ms" {
		t.Errorf("recorded %+v, want the timeout named", st.finished)
	}
}
