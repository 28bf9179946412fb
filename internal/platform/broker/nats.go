package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"folio/internal/platform/broker/natsconn"
)

// NATS JetStream settings.
const (
	natsDuplicateWindow = 2 * time.Minute
	// natsAckWait is how long a delivery may go unacknowledged before JetStream
	// sends it again: after a consumer crash, its deliveries in flight come back
	// this much later. Handlers take milliseconds; one that takes longer only
	// causes a redelivery, which the inbox absorbs.
	natsAckWait = 10 * time.Second
	// natsMaxAckPending leaves room beyond Concurrency: messages waiting out a
	// NakWithDelay backoff still count as pending, and must not stall the ones
	// behind them.
	natsMaxAckPending = 1000
	// natsFetchWait bounds one pull request, hence how long Consume takes to
	// notice that its context ended.
	natsFetchWait = 5 * time.Second
	// natsPublishWait bounds the wait for one publish's acknowledgement; in a
	// batch, the wait for the next acknowledgement once the previous one came.
	natsPublishWait = 5 * time.Second
	// natsAsyncAckTimeout is when the client forgets a batch publish nobody
	// waits for any more (its batch failed earlier): otherwise it would stay
	// pending until the next reconnect, and enough of them stall publishing.
	natsAsyncAckTimeout = time.Minute
	// natsAtomicMin is the smallest batch sent as one atomic batch. Each atomic
	// batch costs the server a staging store of its own, so below this the
	// pipelined path, one disk sync per message, is as cheap.
	natsAtomicMin = 4
	// natsAtomicMax is the server's default limit on an atomic batch's size.
	natsAtomicMax = 1000
	// retryPause is the wait before reconnecting a consumer after an error.
	retryPause = time.Second
)

type natsTransport struct {
	cfg  Config
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream
	done chan struct{} // closed by close

	mu sync.Mutex
	// streamReady says the stream was created on the current connection; it is
	// cleared on reconnect so that a server that lost it gets it back.
	streamReady bool
	// atomic says the stream takes atomic batch publishes (NATS 2.12 and later,
	// with allow_atomic on the stream).
	atomic bool
	// warnedUnbounded says the warning about a stream without limits was
	// given, so that reconnects do not repeat it.
	warnedUnbounded bool
}

func openNATS(ctx context.Context, cfg Config, log *slog.Logger) (*natsTransport, error) {
	t := &natsTransport{cfg: cfg, log: log, done: make(chan struct{})}
	auth, err := cfg.NATS.Options()
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	nc, err := nats.Connect(cfg.NATSURL, append(auth,
		nats.Name("folio"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// A connection silently dropped (a NAT or firewall forgetting it, a frozen
		// server) is noticed after two unanswered pings: 30 s, not the client's
		// default of 4 minutes, during which events would wait in the outbox.
		nats.PingInterval(15*time.Second),
		nats.MaxPingsOutstanding(2),
		// Fail publishes at once while disconnected rather than buffering them:
		// the outbox keeps them, and Publish must not report what was not acked.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(*nats.Conn) { log.Info("connected to NATS") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from NATS", "err", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			log.Info("reconnected to NATS")
			t.mu.Lock()
			t.streamReady = false
			t.mu.Unlock()
		}),
		// A refused publish or subscription is worth a line: it is a
		// permission the program lacks, or one it should not use.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("NATS error", "err", err)
		}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("broker: nats: %w", err)
	}
	t.nc = nc
	if t.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(natsAsyncAckTimeout)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("broker: jetstream: %w", err)
	}
	if nc.IsConnected() {
		if err := t.ensureStream(ctx); err != nil {
			log.Warn("cannot create the stream yet, will retry", "stream", cfg.Stream, "err", err)
		}
	} else {
		log.Warn("NATS unreachable, connecting in the background", "url", natsconn.Redact(cfg.NATSURL))
	}
	return t, nil
}

// ensureStream creates the stream unless it exists, and learns whether it takes
// atomic batches. A stream it creates gets the configured limits (or the
// defaults); an existing one keeps its own, unless a limit was configured
// explicitly and differs (see applyLimits).
func (t *natsTransport) ensureStream(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.streamReady {
		return nil
	}
	maxAge, maxBytes := t.cfg.streamLimits()
	// A server older than 2.12 ignores allow_atomic: the stream it creates, or
	// already has, says false, and batches take the pipelined path.
	st, err := t.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:               t.cfg.Stream,
		Description:        "folio events",
		Subjects:           []string{t.cfg.Prefix + ".>"},
		Storage:            jetstream.FileStorage,
		Duplicates:         natsDuplicateWindow,
		MaxAge:             maxAge,
		MaxBytes:           maxBytes,
		Discard:            jetstream.DiscardOld,
		AllowAtomicPublish: true,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// It exists with other settings, limits an operator chose say: not ours
		// to undo. (With the same settings, CreateStream succeeds.)
		if st, err = t.js.Stream(ctx, t.cfg.Stream); err == nil {
			st = t.applyLimits(ctx, st)
		}
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", t.cfg.Stream, err)
	}
	t.atomic = st.CachedInfo().Config.AllowAtomicPublish
	t.streamReady = true
	return nil
}

// applyLimits sets on an existing stream the limits configured explicitly
// (FOLIO_EVENTS_MAX_AGE, FOLIO_EVENTS_MAX_BYTES) that it does not have, and
// returns the stream as it now is. Limits not configured are the operator's, or
// an earlier version's, and are kept; a stream with no limit at all is worth a
// warning, since it grows for ever. Lowering a limit discards events at once,
// so it is logged as a warning too. A credential that may not update the stream
// (decision 13) leaves it as it is, with a warning: publishing goes on.
func (t *natsTransport) applyLimits(ctx context.Context, st jetstream.Stream) jetstream.Stream {
	cfg := st.CachedInfo().Config
	want := cfg
	if t.cfg.MaxAge.Set {
		want.MaxAge = t.cfg.MaxAge.Value
	}
	if t.cfg.MaxBytes.Set {
		want.MaxBytes = t.cfg.MaxBytes.Value
		if want.MaxBytes == 0 {
			want.MaxBytes = -1
		}
	}
	if want.MaxAge == cfg.MaxAge && want.MaxBytes == cfg.MaxBytes {
		if cfg.MaxAge == 0 && cfg.MaxBytes <= 0 && cfg.MaxMsgs <= 0 && !t.warnedUnbounded {
			t.warnedUnbounded = true
			t.log.Warn("the event stream has no age, size or count limit and grows for ever; set FOLIO_EVENTS_MAX_AGE and FOLIO_EVENTS_MAX_BYTES to bound it",
				"stream", cfg.Name)
		}
		return st
	}
	if want.MaxAge > 0 && want.Duplicates > want.MaxAge {
		want.Duplicates = want.MaxAge // the server refuses a window longer than the age limit
	}
	level := slog.LevelInfo
	if lowers(cfg.MaxAge, want.MaxAge) || lowers(cfg.MaxBytes, want.MaxBytes) {
		level = slog.LevelWarn // events beyond the new limits are discarded now
	}
	updated, err := t.js.UpdateStream(ctx, want)
	if err != nil {
		t.log.Warn("cannot apply the configured limits to the event stream; it keeps its own", "stream", cfg.Name,
			"max_age", cfg.MaxAge, "max_bytes", cfg.MaxBytes, "want_max_age", want.MaxAge, "want_max_bytes", want.MaxBytes, "err", err)
		return st
	}
	t.log.Log(ctx, level, "event stream limits changed as configured", "stream", cfg.Name,
		"max_age", cfg.MaxAge, "max_bytes", cfg.MaxBytes, "new_max_age", want.MaxAge, "new_max_bytes", want.MaxBytes)
	return updated
}

// lowers reports whether limit to is stricter than limit from, where 0 and
// negative values mean no limit.
func lowers[N time.Duration | int64](from, to N) bool {
	return to > 0 && (from <= 0 || to < from)
}

func (t *natsTransport) forgetStream() {
	t.mu.Lock()
	t.streamReady = false
	t.mu.Unlock()
}

func (t *natsTransport) atomicBatches() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.atomic
}

func (t *natsTransport) publish(ctx context.Context, m Message) error {
	if t.nc.IsClosed() {
		return errClosed
	}
	if !t.nc.IsConnected() {
		return errNotConnected
	}
	if err := t.ensureStream(ctx); err != nil {
		return err
	}
	msg := natsMsg(m)
	// The client does not fail a publish whose acknowledgement was lost with the
	// connection: without a bound of its own it would wait for the caller's
	// deadline (the outbox relay's is 30 s) while the broker is already back.
	// Publishing again is safe: the message id de-duplicates.
	pctx, cancel := context.WithTimeout(ctx, natsPublishWait)
	defer cancel()
	_, err := t.js.PublishMsg(pctx, msg, jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(t.cfg.Stream))
	t.noticeStreamLoss(err)
	return err
}

func natsMsg(m Message) *nats.Msg {
	msg := nats.NewMsg(m.Subject)
	msg.Data = m.Body
	for k, v := range m.Header {
		msg.Header.Set(k, v)
	}
	return msg
}

// noticeStreamLoss has the stream created again when a publish says it is gone.
func (t *natsTransport) noticeStreamLoss(err error) {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrNoResponders) {
		t.forgetStream()
	}
}

func (t *natsTransport) publishBatch(ctx context.Context, ms []Message) (int, error) {
	if t.nc.IsClosed() {
		return 0, errClosed
	}
	if !t.nc.IsConnected() {
		return 0, errNotConnected
	}
	if err := t.ensureStream(ctx); err != nil {
		return 0, err
	}
	if len(ms) < natsAtomicMin || !t.atomicBatches() {
		return t.publishPipelined(ctx, ms)
	}
	done := 0
	for done < len(ms) {
		chunk := ms[done:min(len(ms), done+natsAtomicMax)]
		err := t.publishAtomic(ctx, chunk)
		var refused *jetstream.APIError
		if errors.As(err, &refused) {
			// The server refused the batch as a whole and stored none of it:
			// it holds one of its messages already (a retry after a lost
			// acknowledgement), has too many batches in flight, or the stream
			// no longer allows them. Sent one by one, duplicates are
			// acknowledged without being stored again.
			t.log.Debug("atomic batch refused, publishing it message by message", "err", err)
			n, err := t.publishPipelined(ctx, chunk)
			done += n
			if err != nil {
				return done, err
			}
			continue
		}
		if err != nil {
			t.noticeStreamLoss(err)
			return done, err
		}
		done += len(chunk)
	}
	return done, nil
}

// publishAtomic publishes ms as one JetStream atomic batch: the server stores all
// of them or none, and, when it syncs every write, syncs the batch once rather
// than once per message, which is what limits the pipelined path.
func (t *natsTransport) publishAtomic(ctx context.Context, ms []Message) error {
	msgs := make([]*nats.Msg, len(ms))
	for i, m := range ms {
		msgs[i] = natsMsg(m)
		msgs[i].Header.Set(jetstream.MsgIDHeader, m.ID)
		msgs[i].Header.Set(jetstream.ExpectedStreamHeader, t.cfg.Stream)
	}
	pctx, cancel := context.WithTimeout(ctx, natsPublishWait)
	defer cancel()
	_, err := jetstreamext.PublishMsgBatch(pctx, t.js, msgs,
		jetstreamext.BatchFlowControl{AckFirst: true, AckTimeout: natsPublishWait})
	return err
}

// publishPipelined sends ms without waiting for each acknowledgement, then
// waits for them in order.
func (t *natsTransport) publishPipelined(ctx context.Context, ms []Message) (int, error) {
	opts := []jetstream.PublishOpt{
		jetstream.WithExpectStream(t.cfg.Stream),
		// The client retries a publish that found no stream by itself, later:
		// by then the messages sent after it may be stored, and it would land
		// behind them. Failing it instead has the caller send it and those
		// after it again, in order.
		jetstream.WithRetryAttempts(0),
		jetstream.WithStallWait(natsPublishWait),
	}
	// All sent from this goroutine, on one connection: the server stores them
	// in this order.
	futures := make([]jetstream.PubAckFuture, 0, len(ms))
	var sendErr error
	for _, m := range ms {
		if err := ctx.Err(); err != nil {
			sendErr = err
			break
		}
		f, err := t.js.PublishMsgAsync(natsMsg(m), append(opts, jetstream.WithMsgID(m.ID))...)
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
	}
	// The client does not fail an acknowledgement lost with the connection
	// (publish explains): the wait for each is bounded, counted from the one
	// before, since the server stores them one after the other.
	timer := time.NewTimer(natsPublishWait)
	defer timer.Stop()
	for i, f := range futures {
		timer.Reset(natsPublishWait)
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.noticeStreamLoss(err)
			return i, err
		case <-timer.C:
			return i, fmt.Errorf("no acknowledgement within %s", natsPublishWait)
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return len(futures), sendErr
}

func (t *natsTransport) close() error {
	close(t.done)
	t.nc.Close()
	return nil
}

func (t *natsTransport) consume(ctx context.Context, s Subscription, deliver deliverFunc) error {
	ctx, cancel := untilClosed(ctx, t.done)
	defer cancel()
	// A slot per handler running; fetching only as many messages as there are
	// free slots keeps messages from waiting client-side while their AckWait runs.
	slots := make(chan struct{}, s.Concurrency)
	var handlers sync.WaitGroup
	defer handlers.Wait()

	var cons jetstream.Consumer
	var match func(subject string) bool
	for ctx.Err() == nil {
		if !t.nc.IsConnected() {
			pause(ctx, retryPause)
			continue
		}
		if cons == nil {
			var err error
			if cons, match, err = t.consumer(ctx, s); err != nil {
				var apiErr *jetstream.APIError
				if errors.As(err, &apiErr) && apiErr.Code == 400 {
					// The server refused the configuration: retrying will not help.
					return fmt.Errorf("broker: consumer %s: %w", s.Name, err)
				}
				t.log.Warn("cannot create consumer, will retry", "subscription", s.Name, "err", err)
				pause(ctx, retryPause)
				continue
			}
		}

		n, ok := acquire(ctx, slots)
		if !ok {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, natsFetchWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range batch.Messages() {
				n--
				handlers.Go(func() {
					defer func() { <-slots }()
					t.handle(ctx, s, match, msg, deliver)
				})
			}
			err = batch.Error()
		}
		cancel()
		for range n {
			<-slots
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			t.log.Warn("fetch failed, will retry", "subscription", s.Name, "err", err)
			// The consumer may be gone with the server's state: set it up again.
			cons = nil
			t.forgetStream()
			pause(ctx, retryPause)
		}
	}
	return closedErr(t.done)
}

// consumer creates or updates the durable consumer for s. Servers before 2.10
// cannot filter on several subjects; then the consumer gets the whole stream and
// match drops the rest client-side (it is nil when the server filters).
func (t *natsTransport) consumer(ctx context.Context, s Subscription) (jetstream.Consumer, func(string) bool, error) {
	if err := t.ensureStream(ctx); err != nil {
		return nil, nil, err
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       s.Name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       natsAckWait,
		MaxAckPending: max(natsMaxAckPending, 2*s.Concurrency),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(s.Subjects) == 1 {
		cfg.FilterSubject = s.Subjects[0]
	} else {
		cfg.FilterSubjects = s.Subjects
	}
	c, err := t.js.CreateOrUpdateConsumer(ctx, t.cfg.Stream, cfg)
	if !errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
		return c, nil, err
	}
	cfg.FilterSubjects = nil
	c, err = t.js.CreateOrUpdateConsumer(ctx, t.cfg.Stream, cfg)
	match := func(subject string) bool { return anySubjectMatches(s.Subjects, subject) }
	return c, match, err
}

func (t *natsTransport) handle(ctx context.Context, s Subscription, match func(string) bool, msg jetstream.Msg, deliver deliverFunc) {
	log := t.log.With("subscription", s.Name, "subject", msg.Subject())
	if match != nil && !match(msg.Subject()) {
		if err := msg.Ack(); err != nil {
			log.Warn("cannot ack a message outside the subscription", "err", err)
		}
		return
	}
	meta, err := msg.Metadata()
	if err != nil {
		log.Error("message without JetStream metadata", "err", err)
		_ = msg.Nak()
		return
	}
	m := natsMessage(msg)
	v := deliver(ctx, m, int(meta.NumDelivered))
	switch v.outcome {
	case outcomeOK:
		// Not waiting for the server to take the ack: should it be lost, the
		// message comes again after AckWait and the consumer's inbox absorbs it.
		err = msg.Ack()
	case outcomeDeadLetter:
		// Waiting for the server to take the ack means a message given up on is
		// not dead-lettered twice.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), natsFetchWait)
		err = msg.DoubleAck(actx)
		cancel()
	case outcomeRetry:
		err = msg.NakWithDelay(v.delay)
	case outcomeRequeue:
		err = msg.Nak()
	}
	if err != nil {
		// The server redelivers it after AckWait anyway.
		log.Warn("cannot settle message", "id", m.ID, "outcome", v.outcome, "err", err)
	}
}

// acquire takes one free slot, waiting for it, then any other free ones, and
// returns how many it took; false if ctx ended first.
func acquire(ctx context.Context, slots chan struct{}) (int, bool) {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	n := 1
	for n < cap(slots) {
		select {
		case slots <- struct{}{}:
			n++
			continue
		default:
		}
		break
	}
	return n, true
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// untilClosed is ctx, also cancelled when done is closed: Close ends Consume
// without waiting for a pull request to expire.
func untilClosed(ctx context.Context, done <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// closedErr is what Consume returns when it ends: nil, unless the Broker was closed.
func closedErr(done <-chan struct{}) error {
	select {
	case <-done:
		return errClosed
	default:
		return nil
	}
}

// natsFollowHeartbeat is how often the server shows a follower's consumer is
// alive when there is nothing to deliver; two missed, and the follower creates
// its consumer again (the server may have restarted without it).
const natsFollowHeartbeat = 5 * time.Second

// natsFollowInactive is how long a follower's consumer outlives its process.
const natsFollowInactive = time.Minute

func (t *natsTransport) follow(ctx context.Context, subjects []string, since time.Time, h func(context.Context, Message)) error {
	ctx, cancel := untilClosed(ctx, t.done)
	defer cancel()
	// A consumer per filter, so that each is created through the API subject
	// that names its filter: the broker's permissions can then say which
	// subjects a service may follow.
	var followers sync.WaitGroup
	for i, subj := range subjects {
		// A message under several filters comes once, from the first.
		earlier := subjects[:i]
		followers.Go(func() {
			t.followOne(ctx, subj, since, func(ctx context.Context, m Message) {
				if !anySubjectMatches(earlier, m.Subject) {
					h(ctx, m)
				}
			})
		})
	}
	followers.Wait()
	return closedErr(t.done)
}

// followOne follows one filter through an ephemeral push consumer without
// acknowledgements, created again from the next stream sequence whenever it is
// lost (missed heartbeats, deleted, a gap in its deliveries).
func (t *natsTransport) followOne(ctx context.Context, subject string, since time.Time, h func(context.Context, Message)) {
	var next uint64 // the stream sequence to resume from; 0 until one came
	for ctx.Err() == nil {
		if !t.nc.IsConnected() {
			pause(ctx, retryPause)
			continue
		}
		if err := t.ensureStream(ctx); err != nil {
			t.log.Warn("cannot follow yet, will retry", "subject", subject, "err", err)
			pause(ctx, retryPause)
			continue
		}
		cfg := jetstream.ConsumerConfig{
			DeliverSubject:    nats.NewInbox(),
			FilterSubject:     subject,
			AckPolicy:         jetstream.AckNonePolicy,
			IdleHeartbeat:     natsFollowHeartbeat,
			InactiveThreshold: natsFollowInactive,
			MemoryStorage:     true,
		}
		switch {
		case next > 0:
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, next
		case !since.IsZero():
			start := since
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		default:
			cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		}
		cons, err := t.js.CreatePushConsumer(ctx, t.cfg.Stream, cfg)
		if err != nil {
			if ctx.Err() == nil {
				t.log.Warn("cannot create follower, will retry", "subject", subject, "err", err)
				t.forgetStream()
				pause(ctx, retryPause)
			}
			continue
		}
		next = t.followConsumer(ctx, cons, subject, next, h)
	}
}

// followConsumer hands cons's deliveries to h until ctx ends or cons is lost,
// and returns the stream sequence to resume from.
func (t *natsTransport) followConsumer(ctx context.Context, cons jetstream.PushConsumer, subject string, next uint64, h func(context.Context, Message)) uint64 {
	msgs := make(chan jetstream.Msg)
	lost := make(chan error, 1)
	stopped := make(chan struct{})
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case msgs <- msg:
		case <-stopped:
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			select {
			case lost <- err:
			default:
			}
		}
	}))
	if err != nil {
		t.log.Warn("cannot follow, will retry", "subject", subject, "err", err)
		pause(ctx, retryPause)
		return next
	}
	defer func() {
		close(stopped)
		cc.Stop()
	}()
	var delivered uint64 // the consumer sequence of the last delivery
	for {
		select {
		case <-ctx.Done():
			return next
		case err := <-lost:
			t.log.Warn("follower lost its consumer, creating it again", "subject", subject, "err", err)
			return next
		case msg := <-msgs:
			meta, err := msg.Metadata()
			if err != nil {
				t.log.Error("message without JetStream metadata", "subject", subject, "err", err)
				continue
			}
			if meta.Sequence.Consumer != delivered+1 {
				// Without acknowledgements the server does not resend what a
				// slow client dropped: start again after the last one handled.
				t.log.Warn("follower missed deliveries, resuming", "subject", subject, "after", next)
				return next
			}
			delivered = meta.Sequence.Consumer
			next = meta.Sequence.Stream + 1
			h(ctx, natsMessage(msg))
		}
	}
}

// natsMessage is msg as the broker's handlers see it.
func natsMessage(msg jetstream.Msg) Message {
	m := Message{
		Subject: msg.Subject(),
		ID:      msg.Headers().Get(jetstream.MsgIDHeader),
		Body:    msg.Data(),
		Header:  make(map[string]string, len(msg.Headers())),
	}
	for k, v := range msg.Headers() {
		// Nats-* are JetStream's own (message id, expected stream), not the event's.
		if !strings.HasPrefix(k, "Nats-") && len(v) > 0 {
			m.Header[k] = v[0]
		}
	}
	return m
}
