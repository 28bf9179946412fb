package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/broker"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/tracing"
)

// Backoff bounds after a failed publish.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// publishTimeout bounds one publish, so that a broker that accepts the connection
// but never answers cannot hold the PostgreSQL relay lock for ever.
const publishTimeout = 30 * time.Second

// defaultLeaseDuration is Relay.LeaseDuration's default: long enough that a
// loaded machine's pauses (GC, a busy disk) do not cost the lease, short enough
// that events of a crashed or stopped instance wait seconds, not minutes.
const defaultLeaseDuration = 10 * time.Second

// relayLockID is the transaction-scoped PostgreSQL advisory lock a relay holds while
// it publishes a batch. Advisory locks are per database, and each service has its
// own, so one constant serves them all.
const relayLockID int64 = 0x666f6c696f72656c // "foliorel"

// Relay publishes committed outbox events to the broker, in commit order, at least
// once. Its fields may be changed before Run is called.
type Relay struct {
	// BatchSize is how many events one poll reads and publishes (100).
	BatchSize int
	// PollInterval is how often the relay looks for events when nobody calls Notify
	// (500 ms).
	PollInterval time.Duration
	// Retention is how long published events are kept before being deleted (1 h).
	Retention time.Duration
	// PurgeInterval is how often published events older than Retention are deleted
	// (1 min).
	PurgeInterval time.Duration
	// LeaseDuration is, on SQLite, how long the relay that publishes holds the
	// outbox's lease without renewing it (10 s): how long events wait when that
	// relay's process stops or hangs before another instance takes over.
	LeaseDuration time.Duration

	db     *sqldb.DB
	pub    broker.Publisher
	prefix string
	log    *slog.Logger
	wake   chan struct{}
	lease  *lease // SQLite only; made by Run

	leader    prometheus.Gauge
	pending   prometheus.Gauge
	oldest    prometheus.Gauge
	published prometheus.Counter
	errors    prometheus.Counter
}

// NewRelay returns a relay publishing the events in db to pub, under subjects
// prefix + "." + type. Its metrics are registered on reg unless reg is nil.
func NewRelay(db *sqldb.DB, pub broker.Publisher, prefix string, log *slog.Logger, reg prometheus.Registerer) *Relay {
	if log == nil {
		log = slog.Default()
	}
	return &Relay{
		BatchSize:     100,
		PollInterval:  500 * time.Millisecond,
		Retention:     time.Hour,
		PurgeInterval: time.Minute,
		LeaseDuration: defaultLeaseDuration,
		db:            db,
		pub:           pub,
		prefix:        prefix,
		log:           log,
		wake:          make(chan struct{}, 1),
		leader: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "folio_outbox_relay_leader",
			Help: "1 while this relay is the one publishing its outbox (SQLite: it holds the lease; PostgreSQL: it held the lock at its last turn), else 0."})),
		pending: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "folio_outbox_pending", Help: "Events committed to the outbox and not yet published."})),
		oldest: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "folio_outbox_oldest_age_seconds", Help: "Age of the oldest event not yet published, 0 when none is."})),
		published: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "folio_outbox_published_total", Help: "Events the broker acknowledged."})),
		errors: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "folio_outbox_publish_errors_total", Help: "Failed attempts to publish an event; each is retried."})),
	}
}

// register registers c on reg, or returns the collector of the same name that a
// relay on another database in this process registered already.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Notify wakes the relay to publish at once. Services call it after committing a
// transaction that added events; it never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Lag returns how many events wait to be published and how long the oldest of them
// has waited.
func (r *Relay) Lag(ctx context.Context) (pending int, oldest time.Duration, err error) {
	var first int64
	// The oldest is the first in publishing order: found through the index,
	// where MIN(created_at) would read every unsent row.
	if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE((SELECT created_at FROM outbox
		WHERE sent_at IS NULL ORDER BY seq LIMIT 1), 0) FROM outbox WHERE sent_at IS NULL`).
		Scan(&pending, &first); err != nil {
		return 0, 0, fmt.Errorf("outbox lag: %w", err)
	}
	if pending > 0 {
		oldest = max(time.Since(time.Unix(0, first)), 0)
	}
	return pending, oldest, nil
}

// Run publishes events until ctx ends. While the broker or the database fails it
// retries with a growing backoff, never skipping an event.
func (r *Relay) Run(ctx context.Context) {
	if r.BatchSize <= 0 {
		r.BatchSize = 100
	}
	if r.PollInterval <= 0 {
		r.PollInterval = 500 * time.Millisecond
	}
	if r.PurgeInterval <= 0 {
		r.PurgeInterval = time.Minute
	}
	if r.LeaseDuration <= 0 {
		r.LeaseDuration = defaultLeaseDuration
	}
	idle, longestBackoff := r.PollInterval, maxBackoff
	if r.db.Dialect == sqldb.SQLite {
		r.lease = newLease(r.db, r.LeaseDuration)
		defer r.releaseLease()
		// The holder renews every third of the lease, idle or backing off.
		idle, longestBackoff = min(idle, r.LeaseDuration/3), min(longestBackoff, r.LeaseDuration/3)
	}
	backoff := minBackoff
	var nextPurge, nextObserve time.Time
	for ctx.Err() == nil {
		if now := time.Now(); !now.Before(nextPurge) {
			r.purge(ctx)
			nextPurge = now.Add(r.PurgeInterval)
		}
		more, err := r.publishBatch(ctx)
		// Through a backlog, the lag is measured once a second rather than after
		// every batch: counting the unsent rows costs more as they grow.
		if now := time.Now(); !more || !now.Before(nextObserve) {
			r.observe(ctx)
			nextObserve = now.Add(time.Second)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			wait := min(backoff, longestBackoff)/2 + rand.N(min(backoff, longestBackoff)/2+1)
			r.log.WarnContext(ctx, "outbox relay: will retry", "err", err, "retry_in", wait)
			backoff = min(2*backoff, longestBackoff)
			// Notify is ignored here: a busy service must not hammer a broker that is down.
			sleep(ctx, wait, nil)
			continue
		}
		backoff = minBackoff
		if !more {
			sleep(ctx, idle, r.wake)
		}
	}
}

// releaseLease lets another instance take over at once when this relay stops,
// rather than after the lease expires.
func (r *Relay) releaseLease() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.lease.release(ctx); err != nil {
		r.log.Warn("outbox relay: release the lease", "err", err)
	}
	r.leader.Set(0)
}

func (r *Relay) setLeader(leading bool) {
	if leading {
		r.leader.Set(1)
	} else {
		r.leader.Set(0)
	}
}

// sleep waits for d, for ctx to end or for wake, whichever comes first.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

// queryer is a *sql.Tx or an *sqldb.DB.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type row struct {
	seq     int64
	id      string
	typ     string
	body    string
	headers string
}

// publishBatch publishes the next batch of events in seq order, stopping at the first
// failure, and marks those the broker acknowledged as sent. It reports whether a
// full batch was read, so that more are likely waiting.
//
// Of several instances of a service, one relay publishes at a time: two relays
// publishing the same rows would send them twice (beyond JetStream's two-minute
// de-duplication window, twice on the stream) and could reorder them.
//
// On PostgreSQL the batch runs in a transaction holding an advisory lock, released
// at commit, after the marks, so the next holder never sees a row published
// already; a holder whose connection dies loses the lock with it.
//
// On SQLite the instances share the file, and a transaction there would take the
// write lock and stall the service's writes for as long as the broker takes; the
// relay holding the outbox's lease publishes (see lease), and only until the lease
// runs out by its own clock.
func (r *Relay) publishBatch(ctx context.Context) (more bool, err error) {
	// The database work outlives ctx: events the broker acknowledged just before
	// shutdown are still marked, rather than published again at the next start.
	dctx := context.WithoutCancel(ctx)
	var q queryer = r.db
	var tx *sql.Tx
	var until time.Time // when the relay must stop sending; zero: no bound of the lease's
	var epoch int64
	if r.db.Dialect == sqldb.Postgres {
		if tx, err = r.db.BeginTx(dctx, nil); err != nil {
			return false, fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback()
		var locked bool
		if err := tx.QueryRowContext(dctx, `SELECT pg_try_advisory_xact_lock($1)`, relayLockID).Scan(&locked); err != nil {
			return false, fmt.Errorf("lock: %w", err)
		}
		r.setLeader(locked)
		if !locked {
			return false, nil // another instance is publishing
		}
		q = tx
	} else {
		var held bool
		until, held, err = r.lease.hold(dctx)
		r.setLeader(held)
		if err != nil || !held {
			return false, err // another instance is publishing, or may be
		}
		epoch = r.lease.epoch
	}
	rows, err := r.load(dctx, q)
	if err != nil {
		return false, err
	}
	sent, pubErr := r.publish(ctx, rows, until)
	if len(sent) > 0 {
		if tx == nil {
			err = r.db.InTx(dctx, func(tx *sql.Tx) error {
				if err := r.lease.check(dctx, tx, epoch); err != nil {
					return err
				}
				return markSent(dctx, tx, sent)
			})
			if errors.Is(err, errLeaseLost) {
				r.lease.epoch = 0
				r.setLeader(false)
			}
		} else if err = markSent(dctx, tx, sent); err == nil {
			err = tx.Commit()
		}
		if err != nil {
			// Published but not marked: they go out again, which consumers tolerate.
			return false, fmt.Errorf("mark %d published events: %w", len(sent), err)
		}
	}
	if pubErr != nil {
		return false, pubErr
	}
	return len(rows) == r.BatchSize, nil
}

// publishContext bounds one call to the broker by publishTimeout and by until,
// when the relay's lease ends (unless it is zero).
func publishContext(ctx context.Context, until time.Time) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(publishTimeout)
	if !until.IsZero() && until.Before(deadline) {
		deadline = until
	}
	return context.WithDeadline(ctx, deadline)
}

// expired reports whether a lease that ends at until (never, when zero) has ended,
// by the monotonic clock: also true after the process was stopped past it.
func expired(until time.Time) bool {
	return !until.IsZero() && !time.Now().Before(until)
}

func (r *Relay) load(ctx context.Context, q queryer) ([]row, error) {
	rs, err := q.QueryContext(ctx, `SELECT seq, id, event_type, body, headers FROM outbox
		WHERE sent_at IS NULL ORDER BY seq LIMIT $1`, r.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var w row
		if err := rs.Scan(&w.seq, &w.id, &w.typ, &w.body, &w.headers); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		rows = append(rows, w)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return rows, nil
}

// publish sends rows in order and returns the seqs the broker acknowledged, a
// prefix of rows. Nothing is sent once until has passed. A BatchPublisher pipelines them: waiting for each
// acknowledgement before sending the next costs a round trip, and a disk sync
// on the broker, per event. Other publishers get them one at a time, each
// acknowledged before the next is sent, so that two events of one aggregate can
// never overtake each other.
func (r *Relay) publish(ctx context.Context, rows []row, until time.Time) (sent []int64, err error) {
	if bp, ok := r.pub.(broker.BatchPublisher); ok {
		return r.publishPipelined(ctx, bp, rows, until)
	}
	for _, w := range rows {
		if ctx.Err() != nil {
			return sent, ctx.Err()
		}
		// Checked before every message: a relay stopped between two of them
		// (SIGSTOP, a paused VM) for longer than its lease sends no more.
		if expired(until) {
			return sent, errLeaseExpired
		}
		msg := r.message(ctx, w)
		span := startSend(msg)
		pctx, cancel := publishContext(ctx, until)
		err := r.pub.Publish(pctx, msg)
		cancel()
		tracing.End(span, err)
		if err != nil {
			if ctx.Err() == nil {
				r.errors.Inc()
			}
			return sent, fmt.Errorf("publish %s %s: %w", msg.Subject, w.id, err)
		}
		r.published.Inc()
		sent = append(sent, w.seq)
	}
	return sent, nil
}

// publishPipelined is publish for a BatchPublisher. Its messages go out in
// order on the wire, so the broker stores them in order; after a failure only
// the acknowledged prefix is reported, and the next attempt starts at the first
// event not acknowledged, which keeps the order too (those after it that the
// broker did take are dropped as duplicates by their ids).
func (r *Relay) publishPipelined(ctx context.Context, bp broker.BatchPublisher, rows []row, until time.Time) (sent []int64, err error) {
	if len(rows) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	msgs := make([]broker.Message, len(rows))
	spans := make([]trace.Span, len(rows))
	for i, w := range rows {
		msgs[i] = r.message(ctx, w)
		spans[i] = startSend(msgs[i])
	}
	// As late as can be: the relay may have been stopped since it renewed.
	if expired(until) {
		for _, span := range spans {
			tracing.End(span, errLeaseExpired)
		}
		return nil, errLeaseExpired
	}
	pctx, cancel := publishContext(ctx, until)
	acked, err := bp.PublishBatch(pctx, msgs)
	cancel()
	acked = min(max(acked, 0), len(rows))
	for i, span := range spans {
		if i < acked {
			tracing.End(span, nil)
		} else {
			tracing.End(span, cmp.Or(err, errNotAcknowledged))
		}
	}
	for _, w := range rows[:acked] {
		sent = append(sent, w.seq)
	}
	r.published.Add(float64(acked))
	if err != nil {
		if ctx.Err() == nil {
			r.errors.Inc()
		}
		if acked < len(rows) {
			return sent, fmt.Errorf("publish %s %s: %w", msgs[acked].Subject, rows[acked].id, err)
		}
		return sent, fmt.Errorf("publish: %w", err)
	}
	if acked < len(rows) {
		// A BatchPublisher that breaks its contract must not lose events: the
		// rest are retried after a backoff.
		return sent, fmt.Errorf("publish: the broker acknowledged %d of %d events without an error", acked, len(rows))
	}
	return sent, nil
}

// message is the broker message for w.
func (r *Relay) message(ctx context.Context, w row) broker.Message {
	var header map[string]string
	if err := json.Unmarshal([]byte(w.headers), &header); err != nil {
		// Never the case for rows Add wrote; publishing without headers beats
		// holding up every later event.
		r.log.ErrorContext(ctx, "outbox relay: unreadable headers, publishing without them", "event_id", w.id, "err", err)
	}
	return broker.Message{Subject: r.prefix + "." + w.typ, ID: w.id, Body: []byte(w.body), Header: header}
}

// errNotAcknowledged marks the send spans of a batch's messages that the broker
// did not acknowledge, though it reported no error.
var errNotAcknowledged = errors.New("not acknowledged")

// startSend starts the producer span of msg's publication, as a child of the
// write that added the event (the trace context its headers carry), and puts the
// span's own context in the headers for the consumers to continue. An event
// written outside any trace gets none: the relay starts no traces of its own.
func startSend(msg broker.Message) trace.Span {
	parent := tracing.Extract(context.Background(), msg.Header)
	if !trace.SpanContextFromContext(parent).IsValid() {
		return nil
	}
	ctx, span := tracing.Tracer().Start(parent, "send "+msg.Subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("send"),
			semconv.MessagingDestinationName(msg.Subject), semconv.MessagingMessageID(msg.ID)))
	tracing.Inject(ctx, msg.Header)
	return span
}

// markSentChunk bounds the parameters of one UPDATE, well under any driver's limit.
const markSentChunk = 500

// markSent marks seqs sent, with one statement per chunk rather than one per
// event: per event, the marking cost as much as the pipelined publishing. The
// seqs are listed rather than given as a range: a row committed late with a seq
// inside the range was not read, hence not published.
func markSent(ctx context.Context, tx *sql.Tx, seqs []int64) error {
	now := time.Now().UnixNano()
	for len(seqs) > 0 {
		chunk := seqs[:min(len(seqs), markSentChunk)]
		seqs = seqs[len(chunk):]
		var q strings.Builder
		q.WriteString(`UPDATE outbox SET sent_at = $1 WHERE seq IN (`)
		args := make([]any, 0, len(chunk)+1)
		args = append(args, now)
		for i, seq := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "$%d", i+2)
			args = append(args, seq)
		}
		q.WriteString(`)`)
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// purge deletes events published more than Retention ago; they are kept that long
// only to help investigate what was sent.
func (r *Relay) purge(ctx context.Context) {
	cutoff := time.Now().Add(-r.Retention).UnixNano()
	if _, err := r.db.ExecContext(ctx, `DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1`, cutoff); err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "outbox relay: purge published events", "err", err)
	}
}

func (r *Relay) observe(ctx context.Context) {
	pending, oldest, err := r.Lag(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "outbox relay: measure lag", "err", err)
		}
		return
	}
	r.pending.Set(float64(pending))
	r.oldest.Set(oldest.Seconds())
}
