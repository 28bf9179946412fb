package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/devtools/localbuild"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
	"folio/internal/platform/secrets"
)

// sagaConsumers are the durable consumers of the saga's commands and replies.
var sagaConsumers = []string{"inventory-orders", "payment-orders", "order-replies"}

// broker is an admin's connection to folio up's NATS, for what no service may do:
// read the saga's messages and deliver them again.
func (s *shop) broker(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, js, err := natsAs(s.u.natsURL(), filepath.Join(s.u.dataDir, natsKeysDirName, "admin.nk"))
	if err != nil {
		t.Fatalf("connect to folio up's NATS as admin: %v", err)
	}
	t.Cleanup(nc.Close)
	return js
}

// natsKeysDirName is where folio up keeps the programs' nkey seeds.
const natsKeysDirName = "nats-keys"

// sagaMessages returns every message of the saga (commands and replies) about the
// order, in the order the stream holds them.
func sagaMessages(t *testing.T, js jetstream.JetStream, orderID string) []*nats.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, "FOLIO_EVENTS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"folio.order.stock.>", "folio.order.payment.>", "folio.inventory.>", "folio.payment.>"}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*nats.Msg
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var env struct {
				Data struct {
					OrderID string `json:"order_id"`
				} `json:"data"`
			}
			if json.Unmarshal(m.Data(), &env) == nil && env.Data.OrderID == orderID {
				msgs = append(msgs, &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()})
			}
		}
		if n == 0 {
			return msgs
		}
	}
}

// deliverAgain publishes m again as a new message (a new broker id): with its
// event id, which the receiver's inbox knows, or, fresh is set, with a new one,
// which only the receiver's own idempotency by order id can recognise.
func deliverAgain(t *testing.T, js jetstream.JetStream, m *nats.Msg, fresh bool) {
	t.Helper()
	body := m.Data
	if fresh {
		var env map[string]any
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatal(err)
		}
		env["id"] = id.New()
		body, _ = json.Marshal(env)
	}
	out := &nats.Msg{Subject: m.Subject, Data: body, Header: nats.Header{}}
	for k, v := range m.Header {
		if k != jetstream.MsgIDHeader {
			out.Header[k] = v
		}
	}
	if _, err := js.PublishMsg(context.Background(), out, jetstream.WithMsgID(id.New())); err != nil {
		t.Fatalf("publish %s again: %v", m.Subject, err)
	}
}

// publishCommand publishes a saga command as the order service would.
func publishCommand(t *testing.T, js jetstream.JetStream, typ string, data map[string]any) {
	t.Helper()
	eventID := id.New()
	body, _ := json.Marshal(map[string]any{"id": eventID, "type": typ, "occurred_at": time.Now().UTC(), "data": data})
	if _, err := js.Publish(context.Background(), "folio."+typ, body, jetstream.WithMsgID(eventID)); err != nil {
		t.Fatalf("publish %s: %v", typ, err)
	}
}

// sagaConsumerInfos are the saga's durable consumers as the server has them.
func sagaConsumerInfos(js jetstream.JetStream) ([]*jetstream.ConsumerInfo, error) {
	var infos []*jetstream.ConsumerInfo
	for _, name := range sagaConsumers {
		c, err := js.Consumer(context.Background(), "FOLIO_EVENTS", name)
		if err != nil {
			return nil, err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// acknowledged is how many messages the saga's consumers have acknowledged so far.
func acknowledged(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	infos, err := sagaConsumerInfos(js)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, info := range infos {
		n += info.AckFloor.Stream
	}
	return n
}

// settled waits until the saga's consumers have handled every message.
func settled(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	polltest.UntilWithin(t, orderSaga, "the saga's consumers handle every message", func() error {
		infos, err := sagaConsumerInfos(js)
		if err != nil {
			return err
		}
		for _, info := range infos {
			if info.NumPending > 0 || info.NumAckPending > 0 {
				return fmt.Errorf("%s: %d pending, %d unacknowledged", info.Name, info.NumPending, info.NumAckPending)
			}
		}
		return nil
	})
}

// testDuplicatesAndReordering delivers every message of a confirmed order's saga
// again, last first, both as the same events and as new ones, and sends commands
// out of order for an order nobody placed: nothing is reserved, charged or
// refunded twice.
func testDuplicatesAndReordering(t *testing.T, s *shop, buyer string) {
	js := s.broker(t)
	book := s.book(t, "Delivered twice", 5, 1100)
	orderID := s.place(t, buyer, cardApproved, line{book, 2})
	if o := s.final(t, buyer, orderID, orderSaga); o["state"] != "confirmed" {
		t.Fatalf("order %v, want confirmed", o)
	}
	msgs := sagaMessages(t, js, orderID)
	var kinds []string
	for _, m := range msgs {
		kinds = append(kinds, strings.TrimPrefix(m.Subject, "folio."))
	}
	for _, want := range []string{"order.stock.reserve", "inventory.reserved", "order.payment.authorise", "payment.authorised",
		"order.payment.capture", "payment.captured", "order.stock.commit", "inventory.committed"} {
		if !slices.Contains(kinds, want) {
			t.Fatalf("the saga's messages %v lack %s", kinds, want)
		}
	}
	before := s.order(t, buyer, orderID)
	settled(t, js)
	floor := acknowledged(t, js)
	for _, fresh := range []bool{false, true} {
		for _, m := range slices.Backward(msgs) {
			deliverAgain(t, js, m, fresh)
		}
	}

	// Reordered commands for an order never placed: its release before its
	// reserve, its void before its authorise.
	ghost := id.New()
	publishCommand(t, js, "order.stock.release", map[string]any{"order_id": ghost})
	publishCommand(t, js, "order.stock.reserve", map[string]any{"order_id": ghost,
		"items": []map[string]any{{"book_id": book, "quantity": 1}}, "expires_at": time.Now().Add(time.Hour).UTC()})
	publishCommand(t, js, "order.payment.void", map[string]any{"order_id": ghost})
	card, err := secrets.EnsureRecipientKeyFile(filepath.Join(s.u.dataDir, "payment-card.key"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := secrets.SealTo(card.PublicKey(), []byte(`{"number":"`+cardApproved+`","expiry":"12/39","cvc":"123"}`))
	if err != nil {
		t.Fatal(err)
	}
	publishCommand(t, js, "order.payment.authorise", map[string]any{"order_id": ghost,
		"amount": map[string]any{"amount": 1100, "currency": "EUR"}, "sealed_card": sealed})
	settled(t, js)
	// Each consumer's floor is a stream sequence: the repeats came after floor,
	// so every consumer's floor passed it once they were handled.
	if got := acknowledged(t, js); got < floor+uint64(len(sagaConsumers)) {
		t.Fatalf("the consumers' acknowledgement floors moved from %d to %d: the repeats were not handled", floor, got)
	}

	after := s.order(t, buyer, orderID)
	if after["state"] != "confirmed" || after["version"] != before["version"] {
		t.Errorf("order after the repeats: %v, want it unchanged from %v", after, before)
	}
	if st := s.stock(t, book); st.quantity != 3 || st.reserved != 0 {
		t.Errorf("stock %+v, want 3 on hand and none reserved: no reservation, sale or restock twice", st)
	}
	if p := s.payment(t, orderID); p == nil || amount(p, "captured") != 2200 || amount(p, "refunded") != 0 {
		t.Errorf("payment %v, want 2200 captured once and nothing refunded", p)
	}
	if p := s.payment(t, ghost); p != nil && (p["state"] == "authorised" || p["state"] == "captured" || amount(p, "captured") != 0) {
		t.Errorf("the never-placed order's payment %v: an authorise after its void went through", p)
	}
}

var (
	crashBuildOnce sync.Once
	crashBin       map[string]string
	crashBuildErr  error
)

// crashPrograms returns folio and its services, the order service built with its
// crash points compiled in (build tag foliocrash): FOLIO_ORDER_CRASH_AFTER names
// the states after whose commit it kills itself, once each. The others are
// upPrograms', hard-linked into the same directory, where folio finds them.
func crashPrograms(t *testing.T) map[string]string {
	t.Helper()
	built := upPrograms(t)
	crashBuildOnce.Do(func() {
		root, err := localbuild.ModuleRoot()
		if err != nil {
			crashBuildErr = err
			return
		}
		dir := filepath.Join(binDir, "crash")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			crashBuildErr = err
			return
		}
		crashBin = map[string]string{}
		for _, n := range upProgramNames {
			crashBin[n] = filepath.Join(dir, n)
			if n == "order" {
				continue
			}
			// A hard link: folio looks for the services beside its own path,
			// which for a symbolic link would be upPrograms' directory.
			if err := os.Link(built[n], crashBin[n]); err != nil && !os.IsExist(err) {
				crashBuildErr = err
				return
			}
		}
		cmd := exec.Command("go", "build", "-tags", "foliocrash", "-o", crashBin["order"], "./cmd/order")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			crashBuildErr = fmt.Errorf("go build -tags foliocrash ./cmd/order: %w\n%s", err, out)
		}
	})
	if crashBuildErr != nil {
		t.Fatal(crashBuildErr)
	}
	return crashBin
}

// TestOrdersSurviveCrashes kills the order service (SIGKILL, from inside, right
// after the commit of each state of the saga: reserved, authorised, paid, and
// releasing for a declined card); folio up restarts it, and every order still
// reaches its final state with the invariants whole.
func TestOrdersSurviveCrashes(t *testing.T) {
	// Parallel with the other order tests: most of their time is spent waiting.
	t.Parallel()
	markers := t.TempDir()
	s := startShop(t, upOptions{bin: crashPrograms(t), env: []string{
		"FOLIO_ORDER_CRASH_AFTER=reserved,authorised,paid,releasing", "FOLIO_ORDER_CRASH_MARKERS=" + markers}})
	buyer := s.customer(t)
	book := s.book(t, "Crash course", 6, 2000)

	approved := s.place(t, buyer, cardApproved, line{book, 2})
	if o := s.final(t, buyer, approved, orderSaga); o["state"] != "confirmed" {
		t.Fatalf("order %v, want confirmed after the crashes", o)
	}
	declined := s.place(t, buyer, cardDeclined, line{book, 1})
	if o := s.final(t, buyer, declined, orderSaga); o["state"] != "payment_failed" {
		t.Fatalf("order %v, want payment_failed after the crash", o)
	}
	for _, state := range []string{"reserved", "authorised", "paid", "releasing"} {
		if _, err := os.Stat(filepath.Join(markers, state)); err != nil {
			t.Errorf("the order service did not crash after %s: %v", state, err)
		}
	}
	if n := strings.Count(s.u.out.String(), "order started (pid"); n < 5 {
		t.Errorf("the order service started %d times, want at least 5 (four crashes)", n)
	}
	s.checkInvariants(t)
}

// TestOrdersWhilePaymentIsDown stops the payment service for 30 s while orders are
// placed: they wait and then complete, within the step timeout (60 s here: twice
// the outage, so that a slow machine has 30 s to catch up). Meanwhile a card
// whose answer comes after the step timeout (75 s) is compensated: voided, its
// stock released.
func TestOrdersWhilePaymentIsDown(t *testing.T) {
	t.Parallel()
	s := startShop(t, upOptions{env: []string{"FOLIO_ORDER_STEP_TIMEOUT=60s", "FOLIO_ORDER_RETRY_INTERVAL=1s",
		"FOLIO_PAYMENT_SLOW_DELAY=75s"}})
	buyer := s.customer(t)
	book := s.book(t, "Patient", 10, 500)

	// The slow card first: its authorisation is under way through the outage.
	slow := s.place(t, buyer, cardSlow, line{book, 1})
	polltest.Until(t, "the slow order is reserved", func() error {
		if st := s.order(t, buyer, slow)["state"]; st != "reserved" {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})

	// folio up would restart a program that stops answering: it is paused too, so
	// that the payment service stays down the whole 30 s.
	pid := s.u.pids()["payment"]
	if pid == 0 {
		t.Fatal("folio up named no payment pid")
	}
	signal := func(sig syscall.Signal) {
		for _, p := range []int{s.u.cmd.Process.Pid, pid} {
			if err := syscall.Kill(p, sig); err != nil {
				t.Fatal(err)
			}
		}
	}
	signal(syscall.SIGSTOP)
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	var ids []string
	for range 5 {
		ids = append(ids, s.place(t, buyer, cardApproved, line{book, 1}))
	}
	time.Sleep(30 * time.Second) // the outage itself, not a bet on timing
	for _, id := range ids {
		if st := s.order(t, buyer, id)["state"]; st != "reserved" && st != "pending" {
			t.Errorf("order %s is %v while payment is down, want it waiting (reserved, or pending)", id, st)
		}
	}
	resume()
	for _, id := range ids {
		if o := s.final(t, buyer, id, orderSaga); o["state"] != "confirmed" {
			t.Errorf("order %v, want confirmed once payment is back", o)
		}
	}

	o := s.final(t, buyer, slow, orderSaga)
	if o["state"] != "payment_failed" || o["reason"] != "payment_timeout" {
		t.Errorf("order %v, want payment_failed after the step timeout", o)
	}
	// The late authorisation, whichever came first, is voided or refused.
	polltest.UntilWithin(t, 2*time.Minute, "the late authorisation is voided", func() error {
		if p := s.payment(t, slow); p != nil && p["state"] != "voided" && p["state"] != "declined" {
			return fmt.Errorf("payment %v", p)
		}
		return nil
	})
	s.checkInvariants(t)
}
