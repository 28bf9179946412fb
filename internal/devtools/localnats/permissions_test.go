package localnats

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/platform/broker"
	"folio/internal/platform/broker/natsconn"
	"folio/internal/platform/discovery"
	"folio/internal/platform/polltest"
)

// wait bounds every wait here: polltest's deadline, so that only a real failure
// runs into it.
const wait = polltest.Deadline

// secured is a server with a user per program holding the permissions of
// natsconn's table, and an unrestricted one for the test's own checks.
type secured struct {
	srv   *Server
	seeds map[string]string // program (or "admin") -> seed file
}

func startSecured(t *testing.T) *secured {
	t.Helper()
	dir := t.TempDir()
	s := &secured{seeds: map[string]string{}}
	var users []User
	for _, name := range append(natsconn.Programs(), "admin") {
		seed := filepath.Join(dir, "creds", name+".nk")
		pub, err := natsconn.LoadOrCreateSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		s.seeds[name] = seed
		u := User{Name: name, Nkey: pub, Unrestricted: name == "admin"}
		if !u.Unrestricted {
			if u.Permissions, err = natsconn.For(name, natsconn.DefaultNames); err != nil {
				t.Fatal(err)
			}
		}
		users = append(users, u)
	}
	srv, err := Start("127.0.0.1", -1, filepath.Join(dir, "nats"), users...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s.srv = srv
	return s
}

// conn connects as program, or fails the test.
func (s *secured) conn(t *testing.T, program string) (*nats.Conn, jetstream.JetStream) {
	nc, js, _ := s.connErrs(t, program)
	return nc, js
}

// connErrs is conn that also returns the errors the server sends on the
// connection afterwards (refused publishes and subscriptions).
func (s *secured) connErrs(t *testing.T, program string) (*nats.Conn, jetstream.JetStream, <-chan error) {
	t.Helper()
	opts, err := natsconn.Config{NkeyFile: s.seeds[program]}.Options()
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 100)
	nc, err := nats.Connect(s.srv.URL(), append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", program, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, errs
}

// violation waits for the server to report a permission violation naming subject.
func violation(errs <-chan error, subject string) error {
	timeout := time.After(polltest.Deadline) // a violation expected: it ends the wait
	for {
		select {
		case err := <-errs:
			if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), `"`+subject+`"`) {
				return err
			}
		case <-timeout:
			return nil
		}
	}
}

// warnings collects the warnings a program's broker logs: a permission it
// lacks shows up there.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	w.mu.Lock()
	w.msgs = append(w.msgs, msg)
	w.mu.Unlock()
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		if strings.Contains(strings.ToLower(m), "permission") {
			out = append(out, m)
		}
	}
	return out
}

// serviceConsumers are the durable consumers the services subscribe under the
// prefix "folio", as the README's events section lists them. They are written out
// because the devtools know the services only by what they show outside.
func serviceConsumers() map[string]broker.Subscription {
	return map[string]broker.Subscription{
		"book":   {Name: "book-authors", Subjects: broker.Subjects("folio", "author.created", "author.updated", "author.deleted"), Concurrency: 32},
		"author": {Name: "author-books", Subjects: broker.Subjects("folio", "book.created", "book.updated", "book.deleted"), Concurrency: 64},
		"notify": {Name: "notify", Subjects: []string{"folio.book.>", "folio.author.>"}, Concurrency: 32},
	}
}

// The durable names in the permission table are the services' own.
func TestTableNamesTheServicesConsumers(t *testing.T) {
	for program, sub := range serviceConsumers() {
		p, err := natsconn.For(program, natsconn.DefaultNames)
		if err != nil {
			t.Fatal(err)
		}
		want := "$JS.API.CONSUMER.MSG.NEXT.FOLIO_EVENTS." + sub.Name
		found := false
		for _, s := range p.Publish {
			found = found || s == want
		}
		if !found {
			t.Errorf("%s may not pull from its consumer %s", program, sub.Name)
		}
	}
}

// Each program, with its own credential, does everything it does in Folio:
// publishes its events, consumes and dead-letters with its durable consumer,
// follows revocations, registers itself and watches its peers.
func TestProgramsWorkWithTheirCredentials(t *testing.T) {
	s := startSecured(t)
	consumers := serviceConsumers()
	publishes := map[string]string{"book": "book.created", "author": "author.created", "auth": "account.revoked", "notify": "notify.test"}
	for _, program := range natsconn.Programs() {
		t.Run(program, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			w := &warnings{}
			creds := natsconn.Config{NkeyFile: s.seeds[program]}
			b, err := broker.Open(ctx, broker.Config{Kind: "nats", NATSURL: s.srv.URL(), Stream: "FOLIO_EVENTS", Prefix: "folio", NATS: creds}, slog.New(w), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			_, adminJS := s.conn(t, "admin")

			checkFollowsRevocations(ctx, t, program, b, adminJS, w)
			if subj, ok := publishes[program]; ok {
				if err := b.Publish(ctx, broker.Message{Subject: "folio." + subj, ID: program + "-own"}); err != nil {
					t.Errorf("%s cannot publish its event %s: %v", program, subj, err)
				}
			}
			if sub, ok := consumers[program]; ok {
				checkConsumesAndDeadLetters(ctx, t, program, sub, b, adminJS, w)
			}
			checkUsesTheRegistry(ctx, t, s.srv.URL(), program, creds, w)
			if v := w.violations(); len(v) > 0 {
				t.Errorf("%s was refused: %v", program, v)
			}
		})
	}
}

// checkFollowsRevocations checks that program's broker b follows the revocations
// the admin publishes.
func checkFollowsRevocations(ctx context.Context, t *testing.T, program string, b *broker.Broker, adminJS jetstream.JetStream, w *warnings) {
	t.Helper()
	followed := make(chan broker.Message, 10)
	go func() {
		_ = b.Follow(ctx, []string{"folio.account.revoked"}, time.Now().Add(-time.Minute), func(_ context.Context, m broker.Message) error {
			followed <- m
			return nil
		})
	}()
	if _, err := adminJS.Publish(ctx, "folio.account.revoked", []byte(`{}`), jetstream.WithMsgID("rev-"+program)); err != nil {
		t.Fatal(err)
	}
	for m := (broker.Message{}); m.ID != "rev-"+program; {
		select {
		case m = <-followed:
		case <-ctx.Done():
			t.Fatalf("%s did not follow revocations: %v", program, w.violations())
		}
	}
}

// checkConsumesAndDeadLetters checks that program consumes sub through b, and that
// a message it fails lands on its dead-letter subject.
func checkConsumesAndDeadLetters(ctx context.Context, t *testing.T, program string, sub broker.Subscription, b *broker.Broker, adminJS jetstream.JetStream, w *warnings) {
	t.Helper()
	sub.MaxAttempts = 1
	got := make(chan broker.Message, 10)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(cctx, sub, func(_ context.Context, m broker.Message) error {
			got <- m
			return errors.New("dead-letter it")
		})
	}()
	defer func() { ccancel(); <-done }()
	subject := strings.Replace(sub.Subjects[0], ">", "created", 1)
	if _, err := adminJS.Publish(ctx, subject, []byte(`{}`), jetstream.WithMsgID("in-"+program)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatalf("%s did not consume %s: %v", program, subject, w.violations())
	}
	dl := broker.DeadLetterSubject("folio", sub.Name)
	polltest.Until(t, program+" dead-letters", func() error {
		st, err := adminJS.Stream(ctx, "FOLIO_EVENTS")
		if err != nil {
			return err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(dl))
		if err != nil {
			return err
		}
		if info.State.Subjects[dl] == 0 {
			return fmt.Errorf("nothing on %s; violations %v", dl, w.violations())
		}
		return nil
	})
}

// checkUsesTheRegistry checks that program, with creds, registers itself (all but
// the gateway, which only reads) and watches its peers in the registry.
func checkUsesTheRegistry(ctx context.Context, t *testing.T, url, program string, creds natsconn.Config, w *warnings) {
	t.Helper()
	disc, err := discovery.Open(ctx, discovery.Config{Mode: "nats", NATSURL: url, Bucket: "folio_discovery", TTL: 6 * time.Second, NATS: creds}, nil)
	if err != nil {
		t.Fatalf("%s cannot open the registry: %v", program, err)
	}
	defer disc.Close()
	if program != "gateway" {
		deregister, err := disc.Registry.Register(ctx, discovery.Instance{Service: program, ID: program + "-1", URL: "http://127.0.0.1:1"}, time.Second)
		if err != nil {
			t.Fatalf("%s cannot register: %v", program, err)
		}
		defer func() {
			if err := deregister(context.WithoutCancel(ctx)); err != nil {
				t.Errorf("%s cannot deregister: %v", program, err)
			}
		}()
		if got := disc.Instances(program); len(got) != 1 {
			t.Errorf("%s reads %v from the registry, want itself", program, got)
		}
	}
	select {
	case <-disc.Watch(ctx, "book"):
	case <-ctx.Done():
		t.Fatalf("%s cannot watch the registry: %v", program, w.violations())
	}
}

// Replays of finding 1 of issue 8: whoever reached the embedded NATS could write
// the registry and publish any event.
func TestForgeriesRefused(t *testing.T) {
	s := startSecured(t)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	_, adminJS := s.conn(t, "admin")
	// The stream and bucket exist, as once the services ran.
	st, err := adminJS.CreateStream(ctx, jetstream.StreamConfig{Name: "FOLIO_EVENTS", Subjects: []string{"folio.>"}})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := adminJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "folio_discovery", TTL: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminJS.CreateOrUpdateConsumer(ctx, "FOLIO_EVENTS", jetstream.ConsumerConfig{Durable: "notify", FilterSubjects: []string{"folio.book.>", "folio.author.>"}, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	t.Run("no credential cannot connect", func(t *testing.T) {
		if nc, err := nats.Connect(s.srv.URL()); err == nil {
			nc.Close()
			t.Fatal("connected without a credential")
		}
	})
	t.Run("raw PUB without a credential", func(t *testing.T) {
		// What the attacker typed: no client library, no CONNECT credentials.
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.srv.URL(), "nats://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(wait))
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil { // INFO
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB folio.book.created 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n")); err != nil {
			t.Fatal(err)
		}
		line, _ := r.ReadString('\n')
		if !strings.Contains(line, "Authorization Violation") {
			t.Errorf("server answered %q, want an authorization violation", line)
		}
	})

	book, bookJS, bookErrs := s.connErrs(t, "book")
	refused := bookForgeries(book, bookJS, bookErrs)
	for _, r := range refused {
		t.Run("book cannot "+r.name, func(t *testing.T) {
			// Refused API requests get no answer: waiting for one is the wait.
			rctx, rcancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer rcancel()
			if err := r.try(rctx); err == nil {
				t.Errorf("allowed")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
	// And nothing of it took effect.
	ctx, cancel = context.WithTimeout(t.Context(), wait)
	defer cancel()
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("folio.author.created"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["folio.author.created"]; n != 0 {
		t.Errorf("%d forged author.created events stored", n)
	}
	if _, err := kv.Get(ctx, "auth.evil"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("forged registry entry: %v", err)
	}
	if c, err := adminJS.Consumer(ctx, "FOLIO_EVENTS", "notify"); err != nil || len(c.CachedInfo().Config.FilterSubjects) != 2 {
		t.Errorf("the notify consumer was changed or removed: %v", err)
	}
}

// forgery is something a program's credential must not let it do.
type forgery struct {
	name string
	// try attempts it and returns nil if it worked, the error otherwise.
	try func(ctx context.Context) error
}

// bookForgeries are what the book service's credential (book, bookJS, whose
// refusals come on bookErrs) must not do: another's events, registry entries and
// consumers, the stream and the registry themselves.
func bookForgeries(book *nats.Conn, bookJS jetstream.JetStream, bookErrs <-chan error) []forgery {
	return []forgery{
		{"publish another service's event", func(ctx context.Context) error {
			_, err := bookJS.Publish(ctx, "folio.author.created", []byte(`{"id":"forged"}`), jetstream.WithMsgID("forged-event"))
			return err
		}},
		{"publish a core message on another's subject", func(context.Context) error {
			if err := book.Publish("folio.author.created", []byte("x")); err != nil {
				return err
			}
			return violation(bookErrs, "folio.author.created")
		}},
		{"write another service's registry entry", func(ctx context.Context) error {
			_, err := bookJS.Publish(ctx, "$KV.folio_discovery.auth.evil", []byte(`{"service":"auth","id":"evil","url":"http://evil.example"}`))
			return err
		}},
		{"delete the stream", func(ctx context.Context) error { return bookJS.DeleteStream(ctx, "FOLIO_EVENTS") }},
		{"purge the stream", func(ctx context.Context) error {
			bst, err := bookJS.Stream(ctx, "FOLIO_EVENTS")
			if err != nil {
				return err
			}
			return bst.Purge(ctx)
		}},
		{"delete the registry", func(ctx context.Context) error { return bookJS.DeleteKeyValue(ctx, "folio_discovery") }},
		{"delete another's consumer", func(ctx context.Context) error { return bookJS.DeleteConsumer(ctx, "FOLIO_EVENTS", "notify") }},
		{"take over another's consumer", func(ctx context.Context) error {
			_, err := bookJS.CreateOrUpdateConsumer(ctx, "FOLIO_EVENTS", jetstream.ConsumerConfig{Durable: "notify", FilterSubject: "folio.book.>", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{"redefine another's consumer through the follow permission", func(ctx context.Context) error {
			_, err := bookJS.UpdateConsumer(ctx, "FOLIO_EVENTS", jetstream.ConsumerConfig{Durable: "notify", FilterSubject: "folio.account.revoked", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{"pull another's consumer", func(ctx context.Context) error {
			c, err := bookJS.Consumer(ctx, "FOLIO_EVENTS", "notify")
			if err != nil {
				return err
			}
			_, err = c.Fetch(1, jetstream.FetchMaxWait(time.Second))
			return err
		}},
		{"subscribe to events directly", func(context.Context) error {
			sub, err := book.SubscribeSync("folio.>")
			if err != nil {
				return err
			}
			defer sub.Unsubscribe()
			return violation(bookErrs, "folio.>")
		}},
	}
}

// A program's consumer delivers where its creator says: notify, compromised,
// points one at a registry key and publishes an event of its own shaped like an
// entry. The server delivers it (a subscriber sees it), but the registry's
// stream does not take deliveries as writes.
func TestConsumerCannotDeliverIntoTheRegistry(t *testing.T) {
	s := startSecured(t)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	admin, adminJS := s.conn(t, "admin")
	if _, err := adminJS.CreateStream(ctx, jetstream.StreamConfig{Name: "FOLIO_EVENTS", Subjects: []string{"folio.>"}}); err != nil {
		t.Fatal(err)
	}
	kv, err := adminJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "folio_discovery", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	const key = "$KV.folio_discovery.auth.evil"
	seen, err := admin.SubscribeSync(key)
	if err != nil {
		t.Fatal(err)
	}
	_, js := s.conn(t, "notify")
	if _, err := js.CreatePushConsumer(ctx, "FOLIO_EVENTS", jetstream.ConsumerConfig{Durable: "notify",
		FilterSubject: "folio.notify.>", DeliverSubject: key, AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "folio.notify.x", []byte(`{"service":"auth","id":"evil","url":"http://evil.example"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := seen.NextMsg(wait); err != nil {
		t.Fatalf("the delivery never came: %v", err)
	}
	if e, err := kv.Get(ctx, "auth.evil"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a delivery became a registry entry: %v %v", e, err)
	}
}
