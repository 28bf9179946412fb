// Package idempotency makes creating POSTs safe to retry: a request that carries an
// Idempotency-Key is answered once, and a repeat of it gets the first answer back.
// The keys live in the service's own database, in a table this package migrates.
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
	// Abandoned is how long a request may run before its key is taken to belong to a
	// process that died mid-request, so that a retry is served instead of 409 forever.
	Abandoned time.Duration
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
}

// New returns the key store kept in db, which Migrate has prepared.
func New(db *sqldb.DB, log *slog.Logger) *Keys {
	return &Keys{db: db, log: log, TTL: 24 * time.Hour, Abandoned: time.Minute, now: time.Now,
		Caller: func(r *http.Request) string {
			id, _ := authn.FromContext(r.Context())
			return id.Subject
		},
		Fingerprint: func(_ string, request []byte) []byte {
			sum := sha256.Sum256(request)
			return sum[:]
		}}
}

type record struct {
	hash      string
	state     string
	status    int
	headers   string
	body      string
	createdAt int64
}

// Wrap makes next idempotent for requests that carry an Idempotency-Key. Only 2xx
// answers are remembered: after a 4xx or 5xx the key is free again, so that a client
// can fix its request and retry with the same key.
func (k *Keys) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(Header)
		if key == "" {
			next.ServeHTTP(w, r)
			return
		}
		if len(key) > MaxKeyLength {
			problem.WriteError(w, r, k.log, &fault.Error{Kind: fault.Malformed, Message: "Idempotency-Key is longer than 200 characters",
				Fields: []fault.FieldError{{Field: Header, Message: "must be at most 200 characters"}}})
			return
		}
		if !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
			// The key is stored as text, which PostgreSQL refuses when it is not UTF-8.
			problem.WriteError(w, r, k.log, &fault.Error{Kind: fault.Malformed, Message: "Idempotency-Key is not UTF-8 text",
				Fields: []fault.FieldError{{Field: Header, Message: "must be UTF-8 text"}}})
			return
		}
		body, err := rest.ReadBody(r)
		if err != nil {
			problem.WriteError(w, r, k.log, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		hash := hex.EncodeToString(k.Fingerprint(key, append([]byte(r.Method+" "+r.URL.RequestURI()+"\n"), body...)))
		scope := r.Method + " " + r.URL.Path + " " + k.Caller(r)

		// Claiming and recording outlive a client that hangs up: a create that commits
		// must have its answer stored, or the client's retry would create again.
		ctx := context.WithoutCancel(r.Context())
		prev, claimed, err := k.claim(ctx, scope, key, hash)
		if err != nil {
			problem.WriteError(w, r, k.log, err)
			return
		}
		if prev != nil {
			replay(w, prev)
			return
		}

		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		remembered := false
		defer func() {
			// Free the key after a failure, a panic included, so that it is not held
			// until it counts as abandoned.
			if !remembered {
				k.release(scope, key, claimed)
			}
		}()
		next.ServeHTTP(rec, r)
		if rec.status >= 200 && rec.status <= 299 {
			if err := k.complete(ctx, scope, key, claimed, rec); err != nil {
				k.log.ErrorContext(ctx, "store idempotent response", "err", err)
			} else {
				remembered = true
			}
		}
		for name, vals := range rec.header {
			w.Header()[name] = vals
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	})
}

// claim takes the key for this request, or returns the stored response to replay, or
// an error: 422 for the same key with another body, 409 while the first still runs.
// A claim is known by the created_at it wrote, which it returns: a request whose key
// was taken over (as abandoned) must neither complete nor release the new claim.
func (k *Keys) claim(ctx context.Context, scope, key, hash string) (*record, int64, error) {
	for attempt := 0; attempt < 3; attempt++ {
		now := k.now().UnixNano()
		res, err := k.db.ExecContext(ctx, `INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, status, headers, body, created_at)
			VALUES ($1, $2, $3, 'running', 0, '', '', $4) ON CONFLICT DO NOTHING`, scope, key, hash, now)
		if err != nil {
			return nil, 0, fmt.Errorf("claim idempotency key: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, now, nil
		}
		var rec record
		err = k.db.QueryRowContext(ctx, `SELECT request_hash, state, status, headers, body, created_at
			FROM idempotency_keys WHERE scope = $1 AND idem_key = $2`, scope, key).
			Scan(&rec.hash, &rec.state, &rec.status, &rec.headers, &rec.body, &rec.createdAt)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released meanwhile: claim again
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read idempotency key: %w", err)
		}
		age := time.Duration(now - rec.createdAt)
		stale := age > k.TTL || (rec.state == "running" && age > k.Abandoned)
		if stale {
			// Take the key over only if nobody else did since we read it.
			res, err := k.db.ExecContext(ctx, `UPDATE idempotency_keys SET request_hash = $1, state = 'running', status = 0,
				headers = '', body = '', created_at = $2 WHERE scope = $3 AND idem_key = $4 AND created_at = $5`,
				hash, now, scope, key, rec.createdAt)
			if err != nil {
				return nil, 0, fmt.Errorf("take over idempotency key: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return nil, now, nil
			}
			continue
		}
		if rec.hash != hash {
			return nil, 0, &fault.Error{Kind: fault.Invalid, Message: "this Idempotency-Key was used with a different request",
				Fields: []fault.FieldError{{Field: Header, Message: "was used with a different request body"}}}
		}
		if rec.state == "running" {
			return nil, 0, fault.New(fault.Conflict, "a request with this Idempotency-Key is still being processed")
		}
		return &rec, 0, nil
	}
	return nil, 0, fault.New(fault.Conflict, "a request with this Idempotency-Key is still being processed")
}

func (k *Keys) complete(ctx context.Context, scope, key string, claimed int64, rec *recorder) error {
	kept := map[string]string{}
	for _, h := range replayedHeaders {
		if v := rec.header.Get(h); v != "" {
			kept[h] = v
		}
	}
	headers, _ := json.Marshal(kept)
	_, err := k.db.ExecContext(ctx, `UPDATE idempotency_keys SET state = 'done', status = $1, headers = $2, body = $3
		WHERE scope = $4 AND idem_key = $5 AND state = 'running' AND created_at = $6`,
		rec.status, string(headers), rec.body.String(), scope, key, claimed)
	return err
}

// release frees the key; it runs even when the request's context has ended.
func (k *Keys) release(scope, key string, claimed int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := k.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND state = 'running'
		AND created_at = $3`, scope, key, claimed); err != nil {
		k.log.Error("release idempotency key", "err", err)
	}
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

// recorder holds a response until it is known whether to remember it.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

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
