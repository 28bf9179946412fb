package e2e

// Finding 1 of issue 8, replayed against the real programs on a NATS server that
// requires the credentials folio up generates: a forged registry entry and a
// forged event are refused, while the services, each with its own credential,
// still publish, consume and register.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/devtools/localnats"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker/natsconn"
	"folio/internal/platform/polltest"
)

// securedNATS runs the embedded server with a user per program and an
// unrestricted admin, as folio up does; it returns its URL and the seed files.
func securedNATS(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	seeds := map[string]string{}
	var users []localnats.User
	for _, name := range append(natsconn.Programs(), "admin") {
		seed := filepath.Join(dir, "keys", name+".nk")
		pub, err := natsconn.LoadOrCreateSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = seed
		u := localnats.User{Name: name, Nkey: pub, Unrestricted: name == "admin"}
		if !u.Unrestricted {
			if u.Permissions, err = natsconn.For(name, natsconn.DefaultNames); err != nil {
				t.Fatal(err)
			}
		}
		users = append(users, u)
	}
	srv, err := localnats.Start("127.0.0.1", -1, filepath.Join(dir, "nats"), users...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv.URL(), seeds
}

// natsAs connects to url with seed, or anonymously when seed is "".
func natsAs(url, seed string) (*nats.Conn, jetstream.JetStream, error) {
	var opts []nats.Option
	if seed != "" {
		o, err := natsconn.Config{NkeyFile: seed}.Options()
		if err != nil {
			return nil, nil, err
		}
		opts = o
	}
	nc, err := nats.Connect(url, append(opts, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	return nc, js, err
}

func TestBrokerTrust(t *testing.T) {
	url, seeds := securedNATS(t)
	issuer := authntest.New(t)
	editor := bearer(issuer.Token("e2e-editor", "editor"))
	env := func(program string) []string {
		return append([]string{"FOLIO_BROKER=nats", "FOLIO_NATS_URL=" + url, "FOLIO_NATS_NKEY_FILE=" + seeds[program],
			"FOLIO_EVENTS_STREAM=FOLIO_EVENTS", "FOLIO_EVENTS_PREFIX=folio", "FOLIO_DISCOVERY=nats", "FOLIO_INSTANCE_ID=" + program + "-1"},
			issuer.Env()...)
	}
	authorSvc := startService(t, "author", anyAddr, env("author")...)
	bookSvc := startService(t, "book", anyAddr, env("book")...)

	_, admin, err := natsAs(url, seeds["admin"])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// A real author, which the book service learns of from the author's event.
	r := call(t, "POST", authorSvc.URL()+"/authors", map[string]any{"name": "Real Author"}, "Authorization", editor)
	expect(t, r, http.StatusCreated)
	authorID := r.json(t)["id"].(string)
	polltest.Until(t, "the book service knowing the author from its event", func() error {
		st, err := admin.Stream(ctx, "FOLIO_EVENTS")
		if err != nil {
			return err
		}
		c, err := st.Consumer(ctx, "book-authors")
		if err != nil {
			return err
		}
		if info, err := c.Info(ctx); err != nil || info.Delivered.Stream == 0 || info.NumAckPending > 0 || info.NumPending > 0 {
			return fmt.Errorf("consumer book-authors not caught up: %v", err)
		}
		return nil
	})

	forgedDelete, _ := json.Marshal(map[string]any{"id": "forged-1", "type": "author.deleted",
		"occurred_at": time.Now().UTC(), "data": map[string]string{"id": authorID}})
	forgedEntry := []byte(`{"service":"author","id":"evil","url":"http://127.0.0.1:9","started_at":"2026-01-01T00:00:00Z"}`)

	t.Run("no credential: no connection", func(t *testing.T) {
		if nc, _, err := natsAs(url, ""); err == nil {
			nc.Close()
			t.Fatal("connected to the broker without a credential")
		}
	})
	// Any program's credential, stolen: none may speak for the author service.
	for _, thief := range []string{"notify", "gateway", "book", "auth"} {
		t.Run("with the "+thief+" credential", func(t *testing.T) {
			_, js, err := natsAs(url, seeds[thief])
			if err != nil {
				t.Fatal(err)
			}
			fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
			defer fcancel()
			if _, err := js.Publish(fctx, "folio.author.deleted", forgedDelete, jetstream.WithMsgID("forged-"+thief)); err == nil {
				t.Error("a forged author.deleted event was accepted")
			}
			fctx, fcancel = context.WithTimeout(ctx, 2*time.Second)
			defer fcancel()
			if _, err := js.Publish(fctx, "$KV.folio_discovery.author.evil", forgedEntry); err == nil {
				t.Error("a forged registry entry for the author service was accepted")
			}
		})
	}

	// Nothing forged arrived: the stream holds no author.deleted, the registry
	// only the real author instance, and the book service still takes books by
	// the author the forged event named.
	st, err := admin.Stream(ctx, "FOLIO_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("folio.author.deleted"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["folio.author.deleted"]; n != 0 {
		t.Errorf("%d forged author.deleted events in the stream", n)
	}
	kv, err := admin.KeyValue(ctx, "folio_discovery")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "author.evil"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("forged registry entry author.evil: %v", err)
	}
	if _, err := kv.Get(ctx, "author.author-1"); err != nil {
		t.Errorf("the real author instance is not registered: %v", err)
	}
	r = call(t, "POST", bookSvc.URL()+"/books", map[string]any{"title": "Still Welcome", "author_id": authorID, "genre": "fantasy"}, "Authorization", editor)
	expect(t, r, http.StatusCreated)
}
