package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"testing"

	"folio/internal/platform/broker"
	"folio/internal/platform/inbox"
	"folio/internal/platform/sqldb"
)

func TestConsumer(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		c := inbox.Consumer{Name: "search", Types: []string{"book.created"}, Concurrency: 4,
			Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
				if string(env.Data) == `"bad"` {
					return errors.New("unreadable data")
				}
				return effect(env.ID)(tx)
			}}
		if sub := c.Subscription("folio"); sub.Name != "search" || len(sub.Subjects) != 1 || sub.Subjects[0] != "folio.book.created" || sub.Concurrency != 4 {
			t.Fatalf("Subscription = %+v", sub)
		}
		var committed []string
		c.Committed = func(_ context.Context, env broker.Envelope) {
			committed = append(committed, env.ID+":"+string(env.Body))
		}
		h := c.Handler(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
		msg := func(body string) broker.Message {
			return broker.Message{Subject: "folio.x", ID: "m", Body: []byte(body)}
		}
		for _, tc := range []struct {
			name, body string
			wantErr    bool
		}{
			{"applied", `{"id":"e1","type":"book.created","data":{}}`, false},
			{"applied once however often delivered", `{"id":"e1","type":"book.created","data":{}}`, false},
			{"another type is skipped", `{"id":"e2","type":"author.created","data":{}}`, false},
			{"malformed envelope goes to the retries", `{"id":"e3"}`, true},
			{"unreadable data goes to the retries", `{"id":"e4","type":"book.created","data":"bad"}`, true},
		} {
			if err := h(ctx, msg(tc.body)); (err != nil) != tc.wantErr {
				t.Errorf("%s: error %v, want error %v", tc.name, err, tc.wantErr)
			}
		}
		for id, want := range map[string]int{"e1": 1, "e2": 0, "e4": 0} {
			if n := effects(t, db, id); n != want {
				t.Errorf("effects of %s = %d, want %d", id, n, want)
			}
		}
		if want := `e1:{"id":"e1","type":"book.created","data":{}}`; len(committed) != 1 || committed[0] != want {
			t.Errorf("Committed saw %q, want once %s (the body as received)", committed, want)
		}
		wide := inbox.Consumer{Name: "search", Types: []string{"book.created"}, Subjects: []string{"book.>"}}
		if sub := wide.Subscription("folio"); len(sub.Subjects) != 1 || sub.Subjects[0] != "folio.book.>" {
			t.Errorf("Subscription with Subjects = %+v, want folio.book.>", sub)
		}
		// The failed event was not recorded: its redelivery applies it once readable.
		if applied, err := inbox.Apply(ctx, db, "search", "e4", effect("e4")); err != nil || !applied {
			t.Errorf("e4 after the failure: applied %v, %v", applied, err)
		}
	})
}
