package order_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"folio/internal/order"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// memStore is an in-memory order.Store, with the version guard of the real one,
// that keeps the commands each write sends.
type memStore struct {
	mu     sync.Mutex
	orders map[string]order.Order
	sent   []order.Command
	events []string
}

func newMemStore() *memStore { return &memStore{orders: map[string]order.Order{}} }

func (m *memStore) Create(_ context.Context, o order.Order, cmds []order.Command) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.orders[o.ID] = o
	m.sent = append(m.sent, cmds...)
	m.events = append(m.events, o.State.Event())
	return nil
}

func (m *memStore) Get(_ context.Context, id string) (order.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.orders[id]
	if !ok {
		return order.Order{}, order.ErrNotFound
	}
	return o, nil
}

func (m *memStore) List(_ context.Context, userID string, page paging.Request) ([]order.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []order.Order
	for _, o := range m.orders {
		if o.UserID == userID && o.ID > page.After {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b order.Order) int { return strings.Compare(a.ID, b.ID) })
	return out[:min(len(out), page.Fetch())], nil
}

func (m *memStore) Advance(_ context.Context, ch order.Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.orders[ch.Order.ID]
	if !ok {
		return order.ErrNotFound
	}
	if cur.Version != ch.FromVersion {
		return order.ErrStale
	}
	m.orders[ch.Order.ID] = ch.Order
	m.sent = append(m.sent, ch.Commands...)
	if ch.From != ch.Order.State {
		m.events = append(m.events, ch.Order.State.Event())
	}
	return nil
}

func (m *memStore) Due(_ context.Context, now time.Time, limit int) ([]order.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []order.Order
	for _, o := range m.orders {
		if o.Saga.NextAttemptAt != nil && !o.Saga.NextAttemptAt.After(now) && len(out) < limit {
			out = append(out, o)
		}
	}
	return out, nil
}

func (m *memStore) Stuck(_ context.Context, since time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, o := range m.orders {
		if o.State.Compensating() && o.Saga.StepStartedAt.Before(since) {
			n++
		}
	}
	return n, nil
}

// clock is a fixed clock a test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// seen records what the metrics hear.
type seen struct {
	mu            sync.Mutex
	transitions   []string
	compensations []string
	answered      []order.Step
	stuck         int
}

func (s *seen) Transition(from, to order.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transitions = append(s.transitions, string(from)+">"+string(to))
}
func (s *seen) Compensation(step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compensations = append(s.compensations, step)
}
func (s *seen) StepAnswered(step order.Step, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answered = append(s.answered, step)
}
func (s *seen) Stuck(n int) { s.mu.Lock(); defer s.mu.Unlock(); s.stuck = n }

// fakeSeal stands for secrets.SealTo: it marks the plaintext, so that a test can
// see what would be sealed.
func fakeSeal(p []byte) (string, error) { return "sealed:" + string(p), nil }

func newService(t *testing.T) (*order.Service, *memStore, *clock, *seen) {
	t.Helper()
	st, c, m := newMemStore(), &clock{now: t0}, &seen{}
	svc, err := order.NewService(st, order.Config{Timing: timing, Seal: fakeSeal, Metrics: m, Now: c.Now},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, c, m
}

func goodInput() order.Input {
	return order.Input{
		Items: []order.ItemInput{{BookID: id.New(), Quantity: 2}, {BookID: id.New(), Quantity: 1}},
		Card:  order.CardInput{Number: "4242 4242 4242 4242", Expiry: "12/30", CVC: "123"},
	}
}

func TestPlaceValidates(t *testing.T) {
	svc, st, _, _ := newService(t)
	dup := id.New()
	tests := []struct {
		name   string
		change func(*order.Input)
		fields []string
	}{
		{"no items", func(in *order.Input) { in.Items = nil }, []string{"items"}},
		{"21 items", func(in *order.Input) {
			in.Items = nil
			for range 21 {
				in.Items = append(in.Items, order.ItemInput{BookID: id.New(), Quantity: 1})
			}
		}, []string{"items"}},
		{"a book twice", func(in *order.Input) { in.Items[0].BookID, in.Items[1].BookID = dup, dup }, []string{"items[1].book_id"}},
		{"no book id", func(in *order.Input) { in.Items[0].BookID = "" }, []string{"items[0].book_id"}},
		{"not an id", func(in *order.Input) { in.Items[1].BookID = "42" }, []string{"items[1].book_id"}},
		{"quantity 0", func(in *order.Input) { in.Items[0].Quantity = 0 }, []string{"items[0].quantity"}},
		{"quantity 101", func(in *order.Input) { in.Items[0].Quantity = 101 }, []string{"items[0].quantity"}},
		{"bad Luhn", func(in *order.Input) { in.Card.Number = "4242424242424241" }, []string{"payment.card.number"}},
		{"11 digits", func(in *order.Input) { in.Card.Number = "42424242424" }, []string{"payment.card.number"}},
		{"20 digits", func(in *order.Input) { in.Card.Number = "42424242424242424242" }, []string{"payment.card.number"}},
		{"letters", func(in *order.Input) { in.Card.Number = "4242x24242424242" }, []string{"payment.card.number"}},
		{"no number", func(in *order.Input) { in.Card.Number = "" }, []string{"payment.card.number"}},
		{"expired last month", func(in *order.Input) { in.Card.Expiry = "12/29" }, []string{"payment.card.expiry"}},
		{"month 13", func(in *order.Input) { in.Card.Expiry = "13/30" }, []string{"payment.card.expiry"}},
		{"expiry not MM/YY", func(in *order.Input) { in.Card.Expiry = "2030-12" }, []string{"payment.card.expiry"}},
		{"cvc of 2", func(in *order.Input) { in.Card.CVC = "12" }, []string{"payment.card.cvc"}},
		{"cvc of 5", func(in *order.Input) { in.Card.CVC = "12345" }, []string{"payment.card.cvc"}},
		{"cvc letters", func(in *order.Input) { in.Card.CVC = "12a" }, []string{"payment.card.cvc"}},
		{"every card field", func(in *order.Input) { in.Card = order.CardInput{} }, []string{"payment.card.number", "payment.card.expiry", "payment.card.cvc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := goodInput()
			tt.change(&in)
			_, err := svc.Place(context.Background(), "u1", in)
			fe := fault.Classify(err)
			if fe == nil || fe.Kind != fault.Invalid {
				t.Fatalf("got %v, want an Invalid error", err)
			}
			var fields []string
			for _, f := range fe.Fields {
				fields = append(fields, f.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("fields %q, want %q", fields, tt.fields)
			}
		})
	}
	if len(st.orders) != 0 || len(st.sent) != 0 {
		t.Errorf("refused orders stored %d orders, sent %d commands", len(st.orders), len(st.sent))
	}
	// This month's card is still good.
	in := goodInput()
	in.Card.Expiry = "01/30"
	if _, err := svc.Place(context.Background(), "u1", in); err != nil {
		t.Errorf("a card expiring this month: %v", err)
	}
}

func TestPlaceSealsTheCardAndSendsTheReserve(t *testing.T) {
	svc, st, _, _ := newService(t)
	in := goodInput()
	o, err := svc.Place(context.Background(), "u1", in)
	if err != nil {
		t.Fatal(err)
	}
	if o.State != order.Pending || o.UserID != "u1" || o.Version != 1 || o.Card != (order.Card{Brand: "visa", Last4: "4242"}) {
		t.Errorf("placed %+v", o)
	}
	if want := `sealed:{"number":"4242424242424242","expiry":"12/30","cvc":"123"}`; o.Saga.SealedCard != want {
		t.Errorf("sealed card %q, want %q", o.Saga.SealedCard, want)
	}
	body, _ := json.Marshal(o)
	if strings.Contains(string(body), "sealed") || strings.Contains(string(body), "4242424242424242") || strings.Contains(string(body), `"cvc"`) {
		t.Errorf("the order as shown carries card data: %s", body)
	}
	if len(st.sent) != 1 || st.sent[0].Type != order.CommandReserve {
		t.Fatalf("sent %+v, want one reserve", st.sent)
	}
	r := st.sent[0].Data.(order.ReserveData)
	if r.OrderID != o.ID || len(r.Items) != 2 || r.Items[0] != (order.ReserveItem{BookID: in.Items[0].BookID, Quantity: 2}) ||
		!r.ExpiresAt.Equal(t0.Add(15*time.Minute)) {
		t.Errorf("reserve %+v", r)
	}
	if !slices.Equal(st.events, []string{"order.pending"}) {
		t.Errorf("events %q", st.events)
	}
}

func TestGetAndCancelAreTheOwners(t *testing.T) {
	svc, st, c, m := newService(t)
	ctx := context.Background()
	o, err := svc.Place(ctx, "u1", goodInput())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Get(ctx, "u2", false, o.ID); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("another user's get: %v, want ErrNotFound", err)
	}
	if got, err := svc.Get(ctx, "admin", true, o.ID); err != nil || got.ID != o.ID {
		t.Errorf("an admin's get: %v", err)
	}
	if _, err := svc.Get(ctx, "u1", false, "nope"); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("get of a malformed id: %v", err)
	}
	if _, err := svc.Cancel(ctx, "u1", o.ID); fault.KindOf(err) != fault.Conflict {
		t.Errorf("cancel of a pending order: %v, want Conflict", err)
	}
	// Carry it to confirmed through the replies.
	cur := o
	for _, typ := range []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptured, order.ReplyCommitted} {
		c.Add(time.Second)
		ch, ok := svc.OnReply(cur, order.Reply{Type: typ, OrderID: o.ID})
		if !ok {
			t.Fatalf("%s stale in %s", typ, cur.State)
		}
		if err := st.Advance(ctx, ch); err != nil {
			t.Fatal(err)
		}
		svc.Observe(ch)
		cur = ch.Order
	}
	if _, err := svc.Cancel(ctx, "u2", o.ID); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("another user's cancel: %v, want ErrNotFound", err)
	}
	got, err := svc.Cancel(ctx, "u1", o.ID)
	if err != nil || got.State != order.Refunding {
		t.Fatalf("owner's cancel: %v, %s", err, got.State)
	}
	if _, err := svc.Cancel(ctx, "u1", o.ID); fault.KindOf(err) != fault.Conflict {
		t.Errorf("second cancel: %v, want Conflict", err)
	}
	want := []string{"pending>reserved", "reserved>authorised", "authorised>paid", "paid>confirmed", "confirmed>refunding"}
	if !slices.Equal(m.transitions, want) || !slices.Equal(m.compensations, []string{"cancel"}) {
		t.Errorf("metrics heard %q %q", m.transitions, m.compensations)
	}
	if want := []order.Step{"reserve", "authorise", "capture", "commit"}; !slices.Equal(m.answered, want) {
		t.Errorf("answered %q, want %q", m.answered, want)
	}
}

// TestTickResendsAndCompensates drives the timer with a fixed clock.
func TestTickResendsAndCompensates(t *testing.T) {
	svc, st, c, m := newService(t)
	ctx := context.Background()
	o, err := svc.Place(ctx, "u1", goodInput())
	if err != nil {
		t.Fatal(err)
	}
	tick := func() int {
		t.Helper()
		n, err := svc.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := tick(); n != 0 {
		t.Errorf("tick at once changed %d orders", n)
	}
	c.Add(5 * time.Second)
	if n := tick(); n != 1 || len(st.sent) != 2 || st.sent[1].Type != order.CommandReserve {
		t.Errorf("tick after 5 s: %d changed, sent %q", n, commandTypes(st.sent))
	}
	c.Add(2 * time.Minute)
	if n := tick(); n != 1 {
		t.Fatalf("tick past the deadline: %d changed", n)
	}
	got, _ := st.Get(ctx, o.ID)
	if got.State != order.Releasing || st.sent[2].Type != order.CommandRelease {
		t.Fatalf("past the deadline: %s, sent %q", got.State, commandTypes(st.sent))
	}
	if m.stuck != 0 {
		t.Errorf("stuck %d just after the compensation started", m.stuck)
	}
	c.Add(2*time.Minute + time.Second)
	tick()
	if m.stuck != 1 {
		t.Errorf("stuck %d, want 1, past the step timeout in releasing", m.stuck)
	}
	if !slices.Equal(m.compensations, []string{"reserve"}) {
		t.Errorf("compensations %q", m.compensations)
	}
}

// TestTickRacesAreHarmless: two timers (two instances) over one store change each
// order once.
func TestTickRacesAreHarmless(t *testing.T) {
	svc, st, c, _ := newService(t)
	other, err := order.NewService(st, order.Config{Timing: timing, Seal: fakeSeal, Now: c.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 20 {
		if _, err := svc.Place(ctx, "u1", goodInput()); err != nil {
			t.Fatal(err)
		}
	}
	c.Add(5 * time.Second)
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, s := range []*order.Service{svc, other} {
		wg.Go(func() {
			n, err := s.Tick(ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		})
	}
	wg.Wait()
	if counts[0]+counts[1] != 20 || len(st.sent) != 40 {
		t.Errorf("changed %v orders, sent %d commands; want 20 in all, 40 sent", counts, len(st.sent))
	}
}

func TestNewServiceRefusesABadConfig(t *testing.T) {
	for _, cfg := range []order.Config{
		{Timing: timing},
		{Timing: order.Timing{StepTimeout: time.Minute, RetryInterval: time.Minute, RetryMax: time.Second}, Seal: fakeSeal},
		{Timing: order.Timing{RetryInterval: time.Second, RetryMax: time.Second}, Seal: fakeSeal},
	} {
		if _, err := order.NewService(newMemStore(), cfg, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("NewService(%+v): nil error", cfg.Timing)
		}
	}
}

// TestBrandAndLast4 checks what an order shows of its card, named as the payment
// service names brands.
func TestBrandAndLast4(t *testing.T) {
	svc, _, _, _ := newService(t)
	for number, want := range map[string]order.Card{
		"4242424242424242":    {Brand: "visa", Last4: "4242"},
		"5555 5555 5555 4444": {Brand: "mastercard", Last4: "4444"},
		"2223003122003222":    {Brand: "mastercard", Last4: "3222"},
		"378282246310005":     {Brand: "amex", Last4: "0005"},
		"6011111111111117":    {Brand: "card", Last4: "1117"},
		"4000-0000-0000-0002": {Brand: "visa", Last4: "0002"},
	} {
		in := goodInput()
		in.Card.Number = number
		o, err := svc.Place(context.Background(), "u1", in)
		if err != nil {
			t.Errorf("%s: %v", number, err)
			continue
		}
		if o.Card != want {
			t.Errorf("%s: card %+v, want %+v", number, o.Card, want)
		}
	}
}
