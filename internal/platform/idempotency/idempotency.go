// Package idempotency makes creating POSTs safe to retry: a request that carries an
// Idempotency-Key is answered once, and a repeat of it gets the first answer back.
// The keys live in the service's own database, in a table this package migrates.
//
// The answer is stored by the create itself, in its own transaction (Save), so that
// a resource and its stored answer commit together or not at all: a retry after a
// crash finds either both (and gets the first answer) or neither (and creates).
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"folio/internal/platform/authn"
	"folio/internal/platform/fault"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates the idempotency_keys table if the database does not have it yet.
// Its migrations are recorded apart from the service's own.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	const versionTable, lockID = "folio_idempotency_version", 0x666f6c696f6964 // "folioid"
	if err := db.MigrateOwn(ctx, migrations, versionTable, lockID); err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	return nil
}

// Header is the request header that carries the key.
const Header = "Idempotency-Key"

// MaxKeyLength is the longest key accepted.
const MaxKeyLength = 200

// replayedHeaders are the response headers stored and replayed with the body.
var replayedHeaders = []string{"Content-Type", "Location", "ETag"}

// Keys stores idempotency keys and the responses they produced.
type Keys struct {
	db  *sqldb.DB
	log *slog.Logger
	// TTL is how long a key is remembered (24 h).
	TTL time.Duration
	// Caller names the caller of a request, so that two clients' keys never meet.
	// The default is the subject of the request's verified token (authn.Require
	// puts it in the context), "" for an anonymous caller; never a header, which
	// any caller could set.
	Caller func(*http.Request) string
	// Fingerprint digests a request (method, URI and body) for comparison with a
	// repeat. The default is SHA-256; a service whose bodies carry secrets, such as
	// passwords, sets a slow salted hash instead, since the digest is stored for the TTL.
	Fingerprint func(key string, request []byte) []byte
	now         func() time.Time

	// running holds the requests this process is serving, so that a repeat that
	// arrives meanwhile gets 409 instead of doing the work a second time. It is
	// memory only: it dies with the process, and a retry after a crash is never
	// held up by a claim nobody will finish.
	mu      sync.Mutex
	running map[keyID]string // → request hash
}

// keyID names a key within its scope (method, path and caller).
type keyID struct{ scope, key string }

// New returns the key store kept in db, which Migrate has prepared.
func New(db *sqldb.DB, log *slog.Logger) *Keys {
	return &Keys{db: db, log: log, TTL: 24 * time.Hour, now: time.Now, running: map[keyID]string{},
		Caller: func(r *http.Request) string {
			id, _ := authn.FromContext(r.Context())
			return id.Subject
		},
		Fingerprint: func(_ string, request []byte) []byte {
			sum := sha256.Sum256(request)
			return sum[:]
		}}
}

// record is a stored answer.
type record struct {
	hash    string
	status  int
	headers string
	body    string
}

// pending is the idempotent request being served, as Save finds it in the context.
type pending struct {
	keys *Keys
	id   keyID
	hash string

	mu    sync.Mutex
	saved bool // Save wrote the answer into a create's transaction
	lost  bool // Save found the key answered by another request
}

type pendingKey struct{}

type answerKey struct{}

// WithAnswer returns the context to run a create under when the request may carry
// an Idempotency-Key: answer writes the response to the created resource, and Save
// runs it inside the create's transaction to store that response. The handler
// writes its response with the same answer once the create returned, so that the
// first answer and its replays are alike.
func WithAnswer[T any](ctx context.Context, answer func(w http.ResponseWriter, created T)) context.Context {
	if ctx.Value(pendingKey{}) == nil {
		return ctx // no Idempotency-Key: nothing will be stored
	}
	return context.WithValue(ctx, answerKey{}, answer)
}

// Save stores, in tx, the answer to the request of ctx when it carries an
// Idempotency-Key, rendered from created by the answer WithAnswer put in ctx; it
// does nothing for a request without a key. A store calls it as the last write of
// the transaction that creates: the answer then exists if and only if the resource
// does. When another request with the same key was answered first (another
// instance, or a repeat that committed sooner), Save returns a Conflict error so
// that the transaction rolls back, and Wrap replays that request's answer instead.
func Save[T any](ctx context.Context, tx *sql.Tx, created T) error {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	if p == nil {
		return nil
	}
	answer, ok := ctx.Value(answerKey{}).(func(http.ResponseWriter, T))
	if !ok {
		return fmt.Errorf("idempotency: no answer for a created %T: the handler must run the create under WithAnswer", created)
	}
	rec := newRecorder()
	answer(rec, created)
	if rec.status < 200 || rec.status > 299 {
		return fmt.Errorf("idempotency: the answer to a create has status %d, not 2xx", rec.status)
	}
	stored, err := p.keys.store(ctx, tx, p.id, p.hash, rec)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.saved, p.lost = stored, !stored
	p.mu.Unlock()
	if !stored {
		return fault.New(fault.Conflict, "a request with this Idempotency-Key was answered meanwhile")
	}
	return nil
}

// Wrap makes next idempotent for requests that carry an Idempotency-Key. next must
// run its create under WithAnswer, and the create must call Save in its
// transaction. Only 2xx answers are remembered: after a 4xx or 5xx the transaction
// rolled back and the key is free again, so that a client can fix its request and
// retry with the same key.
func (k *Keys) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(Header)
		if key == "" {
			next.ServeHTTP(w, r)
			return
		}
		if err := checkKey(key, Header); err != nil {
			problem.WriteError(w, r, k.log, err)
			return
		}
		body, err := rest.ReadBody(r)
		if err != nil {
			problem.WriteError(w, r, k.log, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		hash := hex.EncodeToString(k.Fingerprint(key, append([]byte(r.Method+" "+r.URL.RequestURI()+"\n"), body...)))
		id := keyID{scope: r.Method + " " + r.URL.Path + " " + k.Caller(r), key: key}

		rec := newRecorder()
		prev, unsaved, err := k.once(r.Context(), id, hash, func(ctx context.Context) bool {
			next.ServeHTTP(rec, r.WithContext(ctx))
			return rec.status >= 200 && rec.status <= 299
		})
		switch {
		case err != nil:
			problem.WriteError(w, r, k.log, err)
			return
		case prev != nil:
			k.answerWith(w, r, prev, hash)
			return
		case unsaved:
			// A handler whose create does not call Save: its answer can only be
			// stored now, outside the create's transaction, and a crash before this
			// statement lets a retry create again.
			k.log.ErrorContext(r.Context(), "idempotent create did not store its answer in its transaction; storing it afterwards", "path", r.URL.Path)
			ctx := context.WithoutCancel(r.Context())
			if _, err := k.store(ctx, k.db, id, hash, rec); err != nil {
				k.log.ErrorContext(ctx, "store idempotent response", "err", err)
			}
		}
		rec.writeTo(w)
	})
}

// once runs create under the key id unless an answer is stored for it: it
// returns that answer (prev) when there was one before, or when create failed
// (ok false) or lost its key to another request meanwhile, since then the other
// request's answer is the answer; unsaved says that create succeeded but its
// transaction did not store its answer (it never called Save). err is the key's
// own trouble: its lookup failed, or a request
// with it is running (Conflict) or ran with another request (Invalid).
func (k *Keys) once(ctx context.Context, id keyID, hash string, create func(ctx context.Context) (ok bool)) (prev *record, unsaved bool, err error) {
	// The stored answer is looked up before the running requests: a request
	// commits its answer before it leaves them, so a repeat never misses both.
	prev, err = k.lookup(ctx, id)
	if err != nil || prev != nil {
		return prev, false, err
	}
	if err := k.start(id, hash); err != nil {
		return nil, false, err
	}
	defer k.finish(id)
	p := &pending{keys: k, id: id, hash: hash}
	ok := create(context.WithValue(ctx, pendingKey{}, p))
	p.mu.Lock()
	saved, lost := p.saved, p.lost
	p.mu.Unlock()
	if lost || !ok {
		// Another request with this key may have been answered since the lookup
		// above: another instance, or a repeat that reached its commit first.
		// Its answer is the answer; this one's failure is only the sign of it.
		// A client that hung up does not stop the lookup: its answer is written
		// to the log of a closed connection, harmlessly.
		prev, err := k.lookup(context.WithoutCancel(ctx), id)
		if err != nil {
			k.log.ErrorContext(ctx, "look up idempotent response", "err", err)
		}
		return prev, false, nil
	}
	return nil, !saved, nil
}

// checkKey refuses a key that cannot be stored, naming field as where it came from.
func checkKey(key, field string) error {
	if len(key) > MaxKeyLength {
		return &fault.Error{Kind: fault.Malformed, Message: field + " is longer than 200 characters",
			Fields: []fault.FieldError{{Field: field, Message: "must be at most 200 characters"}}}
	}
	if !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
		// The key is stored as text, which PostgreSQL refuses when it is not UTF-8.
		return &fault.Error{Kind: fault.Malformed, Message: field + " is not UTF-8 text",
			Fields: []fault.FieldError{{Field: field, Message: "must be UTF-8 text"}}}
	}
	return nil
}

// Do is Wrap for a create that is not an HTTP handler (an RPC): it runs create
// once per key and caller, where the caller is the verified identity in ctx and
// operation names what create does ("folio.book.v1.BookService/CreateBook"), so
// that the keys of two operations never meet. request is the request's canonical
// encoding, compared with a repeat's; field names the key in errors. As behind
// Wrap, create must run its create under WithAnswer and call Save in its
// transaction. When the key was answered before for the same request, Do returns
// the body of the stored answer, which that answer function wrote, without
// running create; otherwise it returns create's error, and nil after a create.
func (k *Keys) Do(ctx context.Context, operation, key, field string, request []byte, create func(context.Context) error) (replayed []byte, err error) {
	if err := checkKey(key, field); err != nil {
		return nil, err
	}
	caller, _ := authn.FromContext(ctx)
	id := keyID{scope: operation + " " + caller.Subject, key: key}
	hash := hex.EncodeToString(k.Fingerprint(key, append([]byte(operation+"\n"), request...)))
	answer := func(prev *record) ([]byte, error) {
		if prev.hash != hash {
			return nil, &fault.Error{Kind: fault.Invalid, Message: "this idempotency key was used with a different request",
				Fields: []fault.FieldError{{Field: field, Message: "was used with a different request"}}}
		}
		return []byte(prev.body), nil
	}
	var created error
	prev, unsaved, err := k.once(ctx, id, hash, func(ctx context.Context) bool {
		created = create(ctx)
		return created == nil
	})
	switch {
	case err != nil:
		return nil, err
	case prev != nil:
		return answer(prev)
	case created != nil:
		return nil, created
	case unsaved:
		return nil, fmt.Errorf("idempotency: the create of %s did not store its answer in its transaction", operation)
	}
	return nil, nil
}

// answerWith replays prev to a request with this hash, or refuses a request with
// another: the same key with another body is a client's mistake (422).
func (k *Keys) answerWith(w http.ResponseWriter, r *http.Request, prev *record, hash string) {
	if prev.hash != hash {
		problem.WriteError(w, r, k.log, &fault.Error{Kind: fault.Invalid, Message: "this Idempotency-Key was used with a different request",
			Fields: []fault.FieldError{{Field: Header, Message: "was used with a different request body"}}})
		return
	}
	replay(w, prev)
}

// start marks the key running in this process, or says why it cannot run: 422 for
// the same key with another body, 409 while the first still runs.
func (k *Keys) start(id keyID, hash string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h, ok := k.running[id]; ok {
		if h != hash {
			return &fault.Error{Kind: fault.Invalid, Message: "this Idempotency-Key was used with a different request",
				Fields: []fault.FieldError{{Field: Header, Message: "was used with a different request body"}}}
		}
		return fault.New(fault.Conflict, "a request with this Idempotency-Key is still being processed")
	}
	k.running[id] = hash
	return nil
}

func (k *Keys) finish(id keyID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.running, id)
}

// lookup returns the stored answer for the key, or nil when there is none, or only
// an expired one, or only a claim an earlier version of this package left running.
func (k *Keys) lookup(ctx context.Context, id keyID) (*record, error) {
	var rec record
	err := k.db.QueryRowContext(ctx, `SELECT request_hash, status, headers, body FROM idempotency_keys
		WHERE scope = $1 AND idem_key = $2 AND state = 'done' AND created_at >= $3`,
		id.scope, id.key, k.now().Add(-k.TTL).UnixNano()).
		Scan(&rec.hash, &rec.status, &rec.headers, &rec.body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	return &rec, nil
}

// execer is a transaction, or the database for the fallback outside one.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// store writes the answer rec for the key, unless the key holds a live answer
// already: then it reports false. An expired answer, or a claim an earlier version
// left running, gives way. On PostgreSQL a concurrent transaction that wrote the
// same key makes this one wait for its outcome: its commit means false here, its
// rollback leaves the key to this one.
func (k *Keys) store(ctx context.Context, ex execer, id keyID, hash string, rec *recorder) (bool, error) {
	kept := map[string]string{}
	for _, h := range replayedHeaders {
		if v := rec.header.Get(h); v != "" {
			kept[h] = v
		}
	}
	headers, _ := json.Marshal(kept)
	now := k.now()
	res, err := ex.ExecContext(ctx, `INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, status, headers, body, created_at)
		VALUES ($1, $2, $3, 'done', $4, $5, $6, $7)
		ON CONFLICT (scope, idem_key) DO UPDATE SET request_hash = excluded.request_hash, state = 'done',
			status = excluded.status, headers = excluded.headers, body = excluded.body, created_at = excluded.created_at
		WHERE idempotency_keys.state <> 'done' OR idempotency_keys.created_at < $8`,
		id.scope, id.key, hash, rec.status, string(headers), rec.body.String(), now.UnixNano(), now.Add(-k.TTL).UnixNano())
	if err != nil {
		return false, fmt.Errorf("store idempotent response: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store idempotent response: %w", err)
	}
	return n == 1, nil
}

// Purge deletes keys older than the TTL.
func (k *Keys) Purge(ctx context.Context) (int64, error) {
	res, err := k.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, k.now().Add(-k.TTL).UnixNano())
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return res.RowsAffected()
}

// RunPurger purges expired keys every interval until ctx ends.
func (k *Keys) RunPurger(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := k.Purge(ctx); err != nil && ctx.Err() == nil {
				k.log.Warn("purge idempotency keys", "err", err)
			}
		}
	}
}

func replay(w http.ResponseWriter, rec *record) {
	var headers map[string]string
	_ = json.Unmarshal([]byte(rec.headers), &headers)
	for name, v := range headers {
		w.Header().Set(name, v)
	}
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(rec.status)
	_, _ = io.WriteString(w, rec.body)
}

// recorder holds a response until it is known whether it is the answer.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, status: http.StatusOK} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}

func (r *recorder) writeTo(w http.ResponseWriter) {
	for name, vals := range r.header {
		w.Header()[name] = vals
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body.Bytes())
}
