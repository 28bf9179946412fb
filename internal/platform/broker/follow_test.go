package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/polltest"
)

// follower runs b.Follow until the test ends, passing what it gets to a channel;
// it fails on messages whose id starts with "fail", to show they are passed over.
func follower(t *testing.T, b *Broker, subjects []string, since time.Time) <-chan Message {
	t.Helper()
	got := make(chan Message, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Follow(ctx, subjects, since, func(_ context.Context, m Message) error {
			got <- m
			if strings.HasPrefix(m.ID, "fail") {
				return errors.New("refused")
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Follow returned %v", err)
			}
		case <-time.After(wait):
			t.Error("Follow did not return after its context ended")
		}
	})
	return got
}

// probe publishes probes until every follower got one, so that what is
// published next reaches them all; it drains the probes.
func probe(t *testing.T, e *env, b *Broker, followers ...<-chan Message) {
	t.Helper()
	seen := make([]bool, len(followers))
	// Each check drains what arrived since the last and publishes one more probe;
	// polling spaces the probes out.
	polltest.Until(t, "every follower gets a probe", func() error {
		for f, ch := range followers {
			for drained := false; !drained; {
				select {
				case m := <-ch:
					if strings.HasPrefix(m.ID, "probe-") {
						seen[f] = true
					}
				default:
					drained = true
				}
			}
		}
		if all(seen) {
			return nil
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_ = b.Publish(ctx, Message{Subject: e.subject("book.probe"), ID: fmt.Sprint("probe-", time.Now().UnixNano())})
		return fmt.Errorf("probes seen by followers: %v", seen)
	})
}

func all(bs []bool) bool {
	return !slices.Contains(bs, false)
}

// next is the next message on ch that is not a probe.
func next(t *testing.T, ch <-chan Message) Message {
	t.Helper()
	for {
		m := receive(t, ch, "followed message")
		if !strings.HasPrefix(m.ID, "probe-") {
			return m
		}
	}
}

func TestFollow(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		since := time.Now().Add(-time.Second)
		publish(t, b, Message{Subject: e.subject("book.created"), ID: "old", Body: []byte(`{}`)})
		subjects := []string{e.subject("book.>"), e.subject("*.deleted")}
		fromSince := follower(t, b, subjects, since)
		fromNow := follower(t, b, subjects, time.Time{})
		if e.a.kind != "rabbitmq" {
			// NATS and Kafka replay from since; RabbitMQ keeps no history.
			if m := next(t, fromSince); m.ID != "old" || m.Subject != e.subject("book.created") {
				t.Fatalf("first followed message %s %s, want old on book.created", m.ID, m.Subject)
			}
		}
		probe(t, e, b, fromSince, fromNow)

		// Neither is shared with the other; what the filters leave out does not
		// come; a message the handler fails on is passed over.
		publish(t, b, Message{Subject: e.subject("book.updated"), ID: "fail-a", Header: map[string]string{HeaderRequestID: "req-a"}})
		publish(t, b, Message{Subject: e.subject("author.created"), ID: "x"})
		publish(t, b, Message{Subject: e.subject("author.deleted"), ID: "b"})
		publish(t, b, Message{Subject: e.subject("book.sentinel"), ID: "z"})
		for name, ch := range map[string]<-chan Message{"since": fromSince, "now": fromNow} {
			var ids []string
			for !slices.Contains(ids, "z") || !slices.Contains(ids, "b") {
				m := next(t, ch)
				if m.ID == "fail-a" && m.Header[HeaderRequestID] != "req-a" {
					t.Errorf("%s: headers %v, want the request id", name, m.Header)
				}
				ids = append(ids, m.ID)
			}
			slices.Sort(ids)
			if want := []string{"b", "fail-a", "z"}; !slices.Equal(ids, want) {
				t.Errorf("follower from %s got %v, want %v", name, ids, want)
			}
		}

		// It rides out a broken connection.
		e.a.drop(t, e, b)
		probe(t, e, b, fromSince, fromNow)
		publish(t, b, Message{Subject: e.subject("book.deleted"), ID: "after"})
		publish(t, b, Message{Subject: e.subject("book.sentinel"), ID: "z2"})
		for _, ch := range []<-chan Message{fromSince, fromNow} {
			if m := next(t, ch); m.ID != "after" {
				t.Errorf("after the reconnect got %s, want after", m.ID)
			}
			// It matched both filters, and came once.
			if m := next(t, ch); m.ID != "z2" {
				t.Errorf("after the reconnect got %s, want z2", m.ID)
			}
		}
	})
}

func TestFollowValidation(t *testing.T) {
	b := &Broker{prefix: "folio"}
	for _, subjects := range [][]string{nil, {"other.book.>"}, {"folio.>.x"}, {"folio.book.created", ""}} {
		if err := b.Follow(t.Context(), subjects, time.Time{}, nil); err == nil {
			t.Errorf("Follow(%q) accepted", subjects)
		}
	}
}
