package loadbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"folio/internal/platform/id"
	"folio/internal/platform/secrets"
)

// ordersBooks are the books the orders part's orders rotate over, each stocked far
// beyond what a run can sell, so that every order is confirmed.
const ordersBooks = 100

// ordersFinal are the final states of an order (docs/orders.md).
var ordersFinal = []string{"confirmed", "rejected", "payment_failed", "cancelled"}

// ordersResult is what the orders part measured.
type ordersResult struct {
	took     time.Duration // from the first POST until the last worker stopped
	states   map[string]int
	postLat  []time.Duration // POST /orders, sorted
	finalLat []time.Duration // POST sent to the order's final state event received, sorted
	errs     []string
	cpu      cpuUse
}

// ordersSystem is auth, inventory, payment and order on a NATS of their own.
type ordersSystem struct {
	broker                   *brokerSetup
	auth, inventory, payment *proc
	order                    *proc
	authURL, inventoryURL    string
	orderURL                 string
}

// runOrders measures the order saga end to end: -orders-workers clients each place
// an order (POST /orders to the order service, one book of ordersBooks in turn,
// the approved test card) and wait for its final state's event (order.confirmed…,
// which the order service writes in the transaction of the change and its relay
// sends at once: what a webhook subscriber sees), then place the next, for
// -orders-duration. It reports orders confirmed per second and the time from the
// POST to the final state's event. Reading the order until it is final would
// measure the reads: a few ms apart, they are most of what the order service does.
func runOrders(ctx context.Context, s settings, dir string, progs map[string]string, stdout io.Writer) (err error) {
	dir = filepath.Join(dir, "orders")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := startNATS(ctx, dir, "nats")
	if err != nil {
		return err
	}
	sys := &ordersSystem{broker: b}
	defer func() {
		if serr := sys.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := sys.start(ctx, dir, progs); err != nil {
		return err
	}
	token, err := login(ctx, sys.authURL, benchAdminEmail, benchAdminPassword)
	if err != nil {
		return fmt.Errorf("log in to the auth service: %w", err)
	}
	books, err := stockBooks(ctx, sys.inventoryURL, token)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\norders:   %d workers, each placing an order (1 copy of one of %d books, the approved test card) and waiting for its final state's event, for %s; inventory, payment and order on SQLite, on NATS\n",
		s.ordersWorkers, len(books), s.ordersDuration)
	finals, err := watchFinals(sys.broker)
	if err != nil {
		return err
	}
	defer finals.close()
	r := measureOrders(ctx, s, sys, books, token, finals)
	reportOrders(stdout, r)
	return nil
}

// start starts auth, then inventory, payment and order, each on a fresh database
// under dir and any port, verifying auth's tokens, on sys.broker.
func (sys *ordersSystem) start(ctx context.Context, dir string, progs map[string]string) error {
	var err error
	if sys.auth, sys.authURL, err = startAuth(ctx, dir, progs, sys.broker); err != nil {
		return err
	}
	if err := sys.auth.waitReady(ctx, sys.authURL+"/readyz"); err != nil {
		return err
	}
	card, err := secrets.EnsureRecipientKeyFile(filepath.Join(dir, "payment-card.key"))
	if err != nil {
		return err
	}
	start := func(name string, extra ...string) (*proc, string, error) {
		p, addrs, err := startReporting(ctx, dir, name, progs[name], nil, slices.Concat([]string{
			"FOLIO_HTTP_ADDR=" + anyPort,
			"FOLIO_METRICS_ADDR=" + anyPort,
			"FOLIO_DATA_DIR=" + filepath.Join(dir, name+"-data"),
		}, tokenEnv(sys.authURL), sys.broker.env(), extra))
		if err != nil {
			return nil, "", err
		}
		url := "http://" + addrs.HTTP
		return p, url, p.waitReady(ctx, url+"/readyz")
	}
	if sys.inventory, sys.inventoryURL, err = start("inventory"); err != nil {
		return err
	}
	if sys.payment, _, err = start("payment", "FOLIO_PAYMENT_CARD_KEY_FILE="+filepath.Join(dir, "payment-card.key")); err != nil {
		return err
	}
	sys.order, sys.orderURL, err = start("order", "FOLIO_PAYMENT_CARD_PUBLIC_KEY="+card.PublicKey())
	return err
}

// stop stops the services, then NATS.
func (sys *ordersSystem) stop() error {
	return stopAll(sys.broker, sys.order, sys.payment, sys.inventory, sys.auth)
}

// watched are the processes whose CPU the orders part reports, in the order of
// ordersWatchedNames.
func (sys *ordersSystem) watched() []watchedProc {
	return []watchedProc{{pid: os.Getpid()}, {pid: sys.inventory.pid}, {pid: sys.payment.pid}, {pid: sys.order.pid}, {pid: sys.broker.natsProc().pid}}
}

var ordersWatchedNames = []string{"load generator", "inventory", "payment", "order", "nats"}

// stockBooks gives ordersBooks new book ids stock and a price in the inventory
// service, and returns them.
func stockBooks(ctx context.Context, inventoryURL, token string) ([]string, error) {
	books := make([]string, ordersBooks)
	for i := range books {
		books[i] = id.New()
		body := `{"quantity": 1000000, "price": {"amount": 1000, "currency": "EUR"}}`
		if _, err := callJSON(ctx, ordersClient, http.MethodPut, inventoryURL+"/inventory/"+books[i], token, []byte(body), nil); err != nil {
			return nil, fmt.Errorf("stock: %w", err)
		}
	}
	return books, nil
}

// measureOrders runs the workers for s.ordersDuration and collects what they saw.
func measureOrders(ctx context.Context, s settings, sys *ordersSystem, books []string, token string, finals *finalWatch) *ordersResult {
	r := &ordersResult{states: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	begin := time.Now()
	until := begin.Add(s.ordersDuration)
	before := sampleCPU(sys.watched())
	for w := range s.ordersWorkers {
		wg.Go(func() {
			for n := w; time.Now().Before(until) && ctx.Err() == nil; n += s.ordersWorkers {
				post, final, state, err := placeAndWait(ctx, sys.orderURL, token, books[n%len(books)], finals)
				mu.Lock()
				if err != nil {
					if len(r.errs) < 5 {
						r.errs = append(r.errs, err.Error())
					}
					r.states["error"]++
				} else {
					r.states[state]++
					r.postLat = append(r.postLat, post)
					r.finalLat = append(r.finalLat, final)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.took = time.Since(begin)
	r.cpu = cpuBetween(before, sampleCPU(sys.watched()))
	slices.Sort(r.postLat)
	slices.Sort(r.finalLat)
	return r
}

// placeAndWait places one order for book and waits for its final state's event;
// it returns how long the POST took, how long until the event came, and the final
// state.
func placeAndWait(ctx context.Context, orderURL, token, book string, finals *finalWatch) (post, final time.Duration, state string, err error) {
	body := `{"items": [{"book_id": "` + book + `", "quantity": 1}], "payment": {"card": {"number": "4242424242424242", "expiry": "12/39", "cvc": "123"}}}`
	start := time.Now()
	var o struct {
		ID string `json:"id"`
	}
	if _, err := callJSON(ctx, ordersClient, http.MethodPost, orderURL+"/orders", token, []byte(body), &o); err != nil {
		return 0, 0, "", err
	}
	post = time.Since(start)
	state, at, err := finals.wait(ctx, o.ID, 2*time.Minute)
	if err != nil {
		return post, 0, "", err
	}
	return post, at.Sub(start), state, nil
}

// finalWatch hears the order service's state events on the broker and hands each
// order's final one to whoever waits for it, or keeps it for a wait to come (the
// event can arrive before the POST's answer).
type finalWatch struct {
	nc      *nats.Conn
	mu      sync.Mutex
	seen    map[string]finalEvent
	waiting map[string]chan finalEvent
}

type finalEvent struct {
	state string
	at    time.Time
}

// watchFinals subscribes to b's order.* subjects (core NATS: every message
// published to the stream passes there too).
func watchFinals(b *brokerSetup) (*finalWatch, error) {
	nc, err := nats.Connect(b.url)
	if err != nil {
		return nil, fmt.Errorf("watch order events: %w", err)
	}
	w := &finalWatch{nc: nc, seen: map[string]finalEvent{}, waiting: map[string]chan finalEvent{}}
	_, err = nc.Subscribe(b.prefix+".order.*", func(m *nats.Msg) {
		at := time.Now()
		var env struct {
			Data struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &env) != nil || !slices.Contains(ordersFinal, env.Data.State) {
			return
		}
		w.done(env.Data.ID, finalEvent{state: env.Data.State, at: at})
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("watch order events: %w", err)
	}
	// The subscription is in place once the server has it.
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("watch order events: %w", err)
	}
	return w, nil
}

func (w *finalWatch) done(id string, e finalEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.waiting[id]; ok {
		delete(w.waiting, id)
		c <- e
		return
	}
	if _, ok := w.seen[id]; !ok { // a redelivery keeps the first
		w.seen[id] = e
	}
}

func (w *finalWatch) wait(ctx context.Context, id string, timeout time.Duration) (string, time.Time, error) {
	w.mu.Lock()
	if e, ok := w.seen[id]; ok {
		delete(w.seen, id)
		w.mu.Unlock()
		return e.state, e.at, nil
	}
	c := make(chan finalEvent, 1)
	w.waiting[id] = c
	w.mu.Unlock()
	select {
	case e := <-c:
		return e.state, e.at, nil
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	w.mu.Lock()
	delete(w.waiting, id)
	w.mu.Unlock()
	return "", time.Time{}, fmt.Errorf("order %s: no final state's event within %s", id, timeout)
}

func (w *finalWatch) close() { w.nc.Close() }

var ordersClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// reportOrders prints the orders part's figures.
func reportOrders(w io.Writer, r *ordersResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "orders\tconfirmed\tother\tconfirmed/s\tp50 to final\tp99 to final\tmax to final\tp50 POST\tp99 POST\t")
	defer fmt.Fprintln(w, "to final: from sending the POST to receiving the order's final state event (order.confirmed…) from the broker.")
	other := 0
	for state, n := range r.states {
		if state != "confirmed" {
			other += n
		}
	}
	total := len(r.finalLat) + r.states["error"]
	fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", total, r.states["confirmed"], other,
		float64(r.states["confirmed"])/r.took.Seconds(),
		ms(percentile(r.finalLat, 50)), ms(percentile(r.finalLat, 99)), ms(percentile(r.finalLat, 100)),
		ms(percentile(r.postLat, 50)), ms(percentile(r.postLat, 99)))
	_ = tw.Flush()
	if r.cpu.ok {
		fmt.Fprint(w, "CPU (cores):")
		for i, name := range ordersWatchedNames {
			if i < len(r.cpu.procs) {
				fmt.Fprintf(w, " %s %.2f", name, r.cpu.procs[i])
			}
		}
		fmt.Fprintln(w)
	}
	if other > 0 {
		fmt.Fprintf(w, "not confirmed: %v\n", r.states)
	}
	for _, e := range r.errs {
		fmt.Fprintln(w, "error:", e)
	}
}
