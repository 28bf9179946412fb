package notify

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/paging"
)

// sealer "seals" by tagging the secret with its context, so that a test can see
// what was sealed for whom.
type sealer struct{}

func (sealer) Seal(plaintext, context []byte) string {
	return "sealed:" + string(context) + ":" + string(plaintext)
}
func (sealer) Unseal(sealed string, context []byte) ([]byte, error) {
	clear, ok := strings.CutPrefix(sealed, "sealed:"+string(context)+":")
	if !ok {
		return nil, errors.New("not sealed for this context")
	}
	return []byte(clear), nil
}

// hooks answers every URL check with check's error and sends nothing.
type hooks struct{ check error }

func (h hooks) CheckURL(context.Context, string) error { return h.check }
func (hooks) Send(context.Context, Webhook) error      { return errors.New("not in these tests") }

// store keeps what Create stores, and answers CreateSubscription with err.
type store struct {
	Store
	created []Subscription
	err     error
}

func (s *store) CreateSubscription(_ context.Context, sub Subscription, _ int) error {
	if s.err != nil {
		return s.err
	}
	s.created = append(s.created, sub)
	return nil
}

func (s *store) ListSubscriptions(context.Context, paging.Request) ([]Subscription, error) {
	return s.created, nil
}

func newTestService(t *testing.T, st Store, h Webhooks, cfg Config) *Service {
	t.Helper()
	cfg.Secrets = sealer{}
	svc, err := NewService(st, h, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func input(url, secret string, events ...string) Input {
	return Input{URL: &url, Events: &events, Secret: &secret}
}

func TestNewServiceNeedsSecrets(t *testing.T) {
	if _, err := NewService(&store{}, hooks{}, Config{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("no Secrets: got nil, want an error")
	}
}

func TestCreateSealsTheSecretForTheSubscription(t *testing.T) {
	st := &store{}
	svc := newTestService(t, st, hooks{}, Config{})
	sub, err := svc.Create(context.Background(), input(" https://hooks.example.com/x ", "0123456789abcdef", "book.created"))
	if err != nil {
		t.Fatal(err)
	}
	if sub.Secret != "0123456789abcdef" || sub.URL != "https://hooks.example.com/x" || sub.Version != 1 {
		t.Errorf("created %+v", sub)
	}
	if len(st.created) != 1 || st.created[0].Secret != "sealed:"+sub.ID+":0123456789abcdef" {
		t.Errorf("stored %+v, want the secret sealed for the subscription's id", st.created)
	}
}

func TestCreateNamesTheURLsFaultWithoutEchoingTheCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check error
		want  string
	}{
		{"not public", ErrNotPublic, "must reach a public address"},
		{"wrapped not public", errors.Join(errors.New("10.0.0.1"), ErrNotPublic), "must reach a public address"},
		{"anything else", errors.New("parse \"http://x\": secret detail"), ErrBadURL.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newTestService(t, &store{}, hooks{check: tc.check}, Config{})
			_, err := svc.Create(context.Background(), input("http://x", "0123456789abcdef", "book.created"))
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Invalid || len(fe.Fields) != 1 || fe.Fields[0].Field != "url" ||
				!strings.HasPrefix(fe.Fields[0].Message, tc.want) || strings.Contains(fe.Fields[0].Message, "secret detail") {
				t.Errorf("got %v, want Invalid naming url: %q", err, tc.want)
			}
		})
	}
}

func TestCreatePastTheMaximumIsAConflict(t *testing.T) {
	svc := newTestService(t, &store{err: ErrFull}, hooks{}, Config{MaxSubscriptions: 3})
	_, err := svc.Create(context.Background(), input("https://hooks.example.com/", "0123456789abcdef", "book.created"))
	if fault.KindOf(err) != fault.Conflict || !strings.Contains(err.Error(), "maximum of 3") {
		t.Errorf("got %v, want a Conflict naming the maximum", err)
	}
}

func TestGetOfAnIDFolioNeverIssuesIsNotFound(t *testing.T) {
	svc := newTestService(t, &store{}, hooks{}, Config{}) // a store call would panic
	for _, id := range []string{"", "nope", "0192F1C2-0000-7000-8000-000000000000"} {
		if _, err := svc.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): got %v, want ErrNotFound", id, err)
		}
	}
}

func TestListReadsOneMoreToKnowWhetherAPageFollows(t *testing.T) {
	st := &store{created: []Subscription{{ID: "a"}, {ID: "b"}, {ID: "c"}}}
	svc := newTestService(t, st, hooks{}, Config{})
	page, err := svc.List(context.Background(), paging.Request{Limit: 2})
	if err != nil || len(page.Items) != 2 || page.Next != "b" {
		t.Errorf("got %+v, %v; want a, b and the next page after b", page, err)
	}
}

func TestBackoffDoublesFromTheBaseUpToTheCapLessAtMostHalf(t *testing.T) {
	svc := newTestService(t, &store{}, hooks{}, Config{BackoffBase: time.Second, BackoffMax: 5 * time.Minute})
	want := time.Second
	for failures := 1; failures <= 12; failures++ {
		for range 20 {
			if d := svc.backoff(failures); d > want || d < want/2 {
				t.Fatalf("backoff after %d failures: %s, want from %s to %s", failures, d, want/2, want)
			}
		}
		want = min(2*want, 5*time.Minute)
	}
}

func TestOutcome(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	svc := newTestService(t, &store{}, hooks{}, Config{BackoffBase: time.Minute, BackoffMax: 5 * time.Minute,
		GiveUpAfter: time.Hour, Now: func() time.Time { return now }})
	failed := &SendError{Reason: "http 503", Err: errors.New("http 503")}
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }

	t.Run("a success is delivered", func(t *testing.T) {
		o := svc.outcome(Claim{}, now, nil)
		if o.Status != StatusDelivered || o.LastError != nil {
			t.Errorf("got %+v", o)
		}
	})
	t.Run("a failure is retried after a backoff, showing its reason", func(t *testing.T) {
		o := svc.outcome(Claim{Attempts: 2}, now, failed)
		if o.Status != StatusPending || o.LastError == nil || *o.LastError != "http 503" ||
			o.Next.Before(now.Add(2*time.Minute)) || o.Next.After(now.Add(4*time.Minute)) {
			t.Errorf("got %+v, want pending in 2 to 4 minutes", o)
		}
	})
	t.Run("a failure past the window since the first attempt gives up", func(t *testing.T) {
		o := svc.outcome(Claim{Attempts: 12, FirstAttemptAt: at(-time.Hour)}, now, failed)
		if o.Status != StatusFailed {
			t.Errorf("got %+v, want failed", o)
		}
	})
	t.Run("the last retry is at the end of the window", func(t *testing.T) {
		o := svc.outcome(Claim{Attempts: 12, FirstAttemptAt: at(-59 * time.Minute)}, now, failed)
		if o.Status != StatusPending || !o.Next.Equal(now.Add(time.Minute)) {
			t.Errorf("got %+v, want pending at the end of the hour", o)
		}
	})
	t.Run("a sender's error without a reason shows none of its words", func(t *testing.T) {
		o := svc.outcome(Claim{}, now, errors.New("banner: INFO {server_id}"))
		if o.LastError == nil || *o.LastError != "connection failed" {
			t.Errorf("got %+v", o)
		}
	})
}

func TestSignableEventID(t *testing.T) {
	for id, want := range map[string]bool{"0192f1c2-0000-7000-8000-000000000000": true, "msg_p5jXN8AQ": true,
		"": false, "a.b": false, "evt 1": false, "evt\n1": false, "evt\x7f": false} {
		if got := SignableEventID(id); got != want {
			t.Errorf("SignableEventID(%q) = %v, want %v", id, got, want)
		}
	}
}
