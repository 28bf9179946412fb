package idempotency

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/platform/authn"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/metrics"
	"folio/internal/platform/polltest"
	"folio/internal/platform/problem"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// clock is a settable time source for Keys.now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// creator is a tiny creating handler: each call makes thing n, a row of the things
// table written in a transaction with its answer (Save), and answers 201 with it,
// unless fail says otherwise. A call can be held until released. Without a db it
// answers without storing anything, as a handler that does not call Save.
type creator struct {
	db    *sqldb.DB
	calls atomic.Int32
	// hold, when set for a call number, is closed by the test to let that call finish;
	// started receives the call number when a held call begins. holdInTx holds the
	// call inside its transaction, once the thing and its answer are written.
	hold     map[int32]chan struct{}
	holdInTx map[int32]chan struct{}
	started  chan int32
	fail     map[int32]int  // call number -> status to answer instead
	failInTx map[int32]bool // call number -> its transaction fails after writing everything
	panics   map[int32]bool
}

// thing is what creator creates.
type thing struct {
	N   int32
	Got string
}

func answerThing(w http.ResponseWriter, t thing) {
	w.Header().Set("Location", fmt.Sprintf("/things/%d", t.N))
	w.Header().Set("ETag", `"1"`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Not-Kept", "x")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"n":%d,"got":%q}`, t.N, t.Got)
}

var errTxFailed = errors.New("the transaction failed after writing the thing and its answer")

func (c *creator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := c.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	if ch, ok := c.hold[n]; ok {
		c.started <- n
		<-ch
	}
	if c.panics[n] {
		panic("boom")
	}
	if status, ok := c.fail[n]; ok {
		http.Error(w, "failed", status)
		return
	}
	t := thing{N: n, Got: string(body)}
	if c.db != nil {
		ctx := WithAnswer(r.Context(), answerThing)
		err := c.db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO things (n, got) VALUES ($1, $2)`, t.N, t.Got); err != nil {
				return err
			}
			if err := Save(ctx, tx, t); err != nil {
				return err
			}
			if ch, ok := c.holdInTx[n]; ok {
				c.started <- n
				<-ch
			}
			if c.failInTx[n] {
				return errTxFailed
			}
			return nil
		})
		if err != nil {
			problem.WriteError(w, r, slog.New(slog.DiscardHandler), err)
			return
		}
	}
	answerThing(w, t)
}

// things returns the numbers of the things stored.
func things(t *testing.T, db *sqldb.DB) []int32 {
	t.Helper()
	rows, err := db.Query(`SELECT n FROM things ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ns []int32
	for rows.Next() {
		var n int32
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ns
}

// openThings opens a database with the keys table and a things table for creator.
func openThings(t *testing.T, db *sqldb.DB) *sqldb.DB {
	t.Helper()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS things (n INTEGER NOT NULL, got TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM things`); err != nil {
		t.Fatal(err)
	}
	return db
}

type result struct {
	status int
	header http.Header
	body   string
}

func post(h http.Handler, path, key, body string, header ...string) result {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(Header, key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return result{rec.Code, rec.Result().Header, rec.Body.String()}
}

func (r result) wantProblem(t *testing.T, status int, field string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %d %s, want %d", r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("got Content-Type %q, want %q", ct, problem.ContentType)
	}
	if field == "" {
		return
	}
	var p problem.Problem
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Errors) != 1 || p.Errors[0].Field != field {
		t.Errorf("got errors %v, want one naming %s", p.Errors, field)
	}
}

func newKeys(db *sqldb.DB) (*Keys, *clock) {
	k := New(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	k.now = c.now
	return k, c
}

// TestKeys checks the middleware on each engine, a subtest per behaviour.
func TestKeys(t *testing.T) {
	sqldbtest.ForEach(t, migrations, func(t *testing.T, db *sqldb.DB) {
		for _, c := range keysBehaviours {
			t.Run(c.name, func(t *testing.T) { c.check(t, db) })
		}
	})
}

// keysBehaviours are TestKeys' subtests, each run on every engine.
var keysBehaviours = []struct {
	name  string
	check func(t *testing.T, db *sqldb.DB)
}{
	{"a repeated key gets the first answer, replayed", keysReplayTheFirstAnswer},
	{"without a key every request runs", keysNoKeyRunsEveryRequest},
	{"a key is scoped to its caller and path", keysScopedToCallerAndPath},
	{"a key reused for another request is refused", keysRefuseAnotherRequest},
	{"an overlong or malformed key is refused", keysRefuseBadKeys},
	{"a body over the limit is refused before the handler runs", keysBodyTooLarge},
	{"failures are not remembered", keysForgetFailures},
	{"a panic frees the key", keysPanicFreesTheKey},
	{"a repeat while the first runs is answered 409", keysConcurrentRepeat},
	{"a failed transaction stores no answer", keysFailedTransactionStoresNoAnswer},
	{"crash after the commit: the retry gets the first answer", keysCrashAfterCommit},
	{"crash before the commit: the retry creates", keysCrashBeforeCommit},
	{"another instance commits first", keysAnotherInstanceCommitsFirst},
	{"another instance answered with another body", keysAnotherInstanceAnotherBody},
	{"a claim left running is no answer", keysClaimLeftRunning},
	{"a handler that does not save is answered and logged", keysHandlerThatDoesNotSave},
	{"an expired key is served again", keysExpiredKeyRunsAgain},
	{"purge deletes the expired keys only", keysPurgeExpired},
}

func keysReplayTheFirstAnswer(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db)}
	h := k.Wrap(c)
	first := post(h, "/things", "replay", `{"a":1}`)
	if first.status != http.StatusCreated {
		t.Fatalf("first: got %d %s, want 201", first.status, first.body)
	}
	for i := range 3 {
		again := post(h, "/things", "replay", `{"a":1}`)
		if again.status != http.StatusCreated || again.body != first.body {
			t.Errorf("repeat %d: got %d %s, want 201 %s", i+1, again.status, again.body, first.body)
		}
		for _, name := range []string{"Location", "ETag", "Content-Type"} {
			if got, want := again.header.Get(name), first.header.Get(name); got != want {
				t.Errorf("repeat %d: %s: got %q, want %q", i+1, name, got, want)
			}
		}
		if got := again.header.Get("Idempotent-Replayed"); got != "true" {
			t.Errorf("repeat %d: Idempotent-Replayed: got %q, want true", i+1, got)
		}
	}
	if got := c.calls.Load(); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
}

func keysNoKeyRunsEveryRequest(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db)}
	h := k.Wrap(c)
	for range 2 {
		if r := post(h, "/things", "", `{}`); r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("got %d %v, want 201, not replayed", r.status, r.header)
		}
	}
	if got := c.calls.Load(); got != 2 {
		t.Errorf("handler ran %d times, want 2", got)
	}
}

func keysScopedToCallerAndPath(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	k.Caller = func(r *http.Request) string { return r.Header.Get("X-Caller") }
	c := &creator{db: openThings(t, db)}
	h := k.Wrap(c)
	post(h, "/things", "scoped", `{}`, "X-Caller", "alice")
	post(h, "/things", "scoped", `{}`, "X-Caller", "bob")     // another caller
	post(h, "/others", "scoped", `{}`, "X-Caller", "alice")   // another path
	post(h, "/things", "scoped", `{}`, "X-Caller", "alice")   // a repeat
	post(h, "/things", "scoped-2", `{}`, "X-Caller", "alice") // another key
	if got := c.calls.Load(); got != 4 {
		t.Errorf("handler ran %d times, want 4", got)
	}
}

func keysRefuseAnotherRequest(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	h := k.Wrap(&creator{db: openThings(t, db)})
	post(h, "/things", "different", `{"a":1}`)
	post(h, "/things", "different", `{"a":2}`).wantProblem(t, http.StatusUnprocessableEntity, Header)
	post(h, "/things?x=1", "different", `{"a":1}`).wantProblem(t, http.StatusUnprocessableEntity, Header)
}

func keysRefuseBadKeys(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db)}
	h := k.Wrap(c)
	post(h, "/things", strings.Repeat("k", MaxKeyLength+1), `{}`).wantProblem(t, http.StatusBadRequest, Header)
	post(h, "/things", "\xff\xfe", `{}`).wantProblem(t, http.StatusBadRequest, Header)
	if r := post(h, "/things", strings.Repeat("k", MaxKeyLength), `{}`); r.status != http.StatusCreated {
		t.Errorf("key of %d: got %d, want 201", MaxKeyLength, r.status)
	}
	if r := post(h, "/things", "clé-😀", `{}`); r.status != http.StatusCreated {
		t.Errorf("UTF-8 key: got %d, want 201", r.status)
	}
	if got := c.calls.Load(); got != 2 {
		t.Errorf("handler ran %d times, want 2", got)
	}
}

func keysBodyTooLarge(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 10)
		k.Wrap(c).ServeHTTP(w, r)
	})
	post(h, "/things", "large", strings.Repeat("x", 11)).wantProblem(t, http.StatusRequestEntityTooLarge, "")
	if got := c.calls.Load(); got != 0 {
		t.Errorf("handler ran %d times, want 0", got)
	}
}

func keysForgetFailures(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db), fail: map[int32]int{1: http.StatusUnprocessableEntity, 2: http.StatusInternalServerError}}
	h := k.Wrap(c)
	if r := post(h, "/things", "fails", `{}`); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("first: got %d, want 422", r.status)
	}
	if r := post(h, "/things", "fails", `{"fixed":true}`); r.status != http.StatusInternalServerError {
		t.Fatalf("second: got %d, want 500", r.status)
	}
	ok := post(h, "/things", "fails", `{"fixed":true}`)
	if ok.status != http.StatusCreated {
		t.Fatalf("third: got %d, want 201", ok.status)
	}
	if r := post(h, "/things", "fails", `{"fixed":true}`); r.body != ok.body {
		t.Errorf("fourth: got %s, want the replay %s", r.body, ok.body)
	}
	if got := c.calls.Load(); got != 3 {
		t.Errorf("handler ran %d times, want 3", got)
	}
}

func keysPanicFreesTheKey(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db), panics: map[int32]bool{1: true}}
	h := k.Wrap(c)
	func() {
		defer func() {
			if v := recover(); v == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		post(h, "/things", "panics", `{}`)
	}()
	if r := post(h, "/things", "panics", `{}`); r.status != http.StatusCreated {
		t.Errorf("after the panic: got %d %s, want 201", r.status, r.body)
	}
}

func keysConcurrentRepeat(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	release := make(chan struct{})
	c := &creator{db: openThings(t, db), hold: map[int32]chan struct{}{1: release}, started: make(chan int32)}
	h := k.Wrap(c)
	done := make(chan result)
	go func() { done <- post(h, "/things", "concurrent", `{}`) }()
	<-c.started

	post(h, "/things", "concurrent", `{}`).wantProblem(t, http.StatusConflict, "")
	// Another body with the same key is told so, even while the first runs.
	post(h, "/things", "concurrent", `{"other":1}`).wantProblem(t, http.StatusUnprocessableEntity, Header)

	close(release)
	first := <-done
	if first.status != http.StatusCreated {
		t.Fatalf("first: got %d, want 201", first.status)
	}
	if r := post(h, "/things", "concurrent", `{}`); r.status != http.StatusCreated || r.body != first.body {
		t.Errorf("after the first finished: got %d %s, want the replay %s", r.status, r.body, first.body)
	}
	if got := c.calls.Load(); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
}

func keysFailedTransactionStoresNoAnswer(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db), failInTx: map[int32]bool{1: true}}
	h := k.Wrap(c)
	post(h, "/things", "tx-fails", `{}`).wantProblem(t, http.StatusInternalServerError, "")
	if got := things(t, db); len(got) != 0 {
		t.Fatalf("after the failed transaction: things %v stored, want none", got)
	}
	retry := post(h, "/things", "tx-fails", `{}`)
	if retry.status != http.StatusCreated || !strings.Contains(retry.body, `"n":2`) || retry.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry: got %d %s %v, want 201 from a new run", retry.status, retry.body, retry.header)
	}
	if got := things(t, db); !slices.Equal(got, []int32{2}) {
		t.Errorf("things %v stored, want [2]", got)
	}
}

// Issue 14, defect 6: the process dies after its create committed and before
// the client had the answer. The retry, served by another process, gets that
// answer: it was stored in the create's transaction. (Before, the key stayed
// "running" and the retry got 409 for a minute.)
func keysCrashAfterCommit(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db)}
	frozen := make(chan struct{})
	t.Cleanup(func() { close(frozen) })
	committed := make(chan struct{})
	dying := k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.ServeHTTP(w, r)
		close(committed)
		<-frozen // the process stops here for good: nothing after this runs
	}))
	go post(dying, "/things", "crash-after-commit", `{"a":1}`)
	<-committed

	restarted, _ := newKeys(db)
	retry := post(restarted.Wrap(c), "/things", "crash-after-commit", `{"a":1}`)
	if retry.status != http.StatusCreated || retry.body != `{"n":1,"got":"{\"a\":1}"}` {
		t.Fatalf("retry: got %d %s, want 201 with the first answer (thing 1)", retry.status, retry.body)
	}
	if got := retry.header.Get("Location"); got != "/things/1" {
		t.Errorf("retry: Location %q, want /things/1", got)
	}
	if got := retry.header.Get("Idempotent-Replayed"); got != "true" {
		t.Errorf("retry: Idempotent-Replayed %q, want true", got)
	}
	if got := things(t, db); !slices.Equal(got, []int32{1}) {
		t.Errorf("things %v stored, want [1]", got)
	}
}

// The process dies inside the create's transaction: the thing and its answer
// are written but not committed. The database undoes both, and the retry,
// served by another process, creates; no claim left behind holds it up.
func keysCrashBeforeCommit(t *testing.T, db *sqldb.DB) {
	k, _ := newKeys(db)
	c := &creator{db: openThings(t, db), failInTx: map[int32]bool{1: true}}
	frozen := make(chan struct{})
	t.Cleanup(func() { close(frozen) })
	undone := make(chan struct{})
	dying := k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.ServeHTTP(w, r) // its transaction rolled back when it returned
		close(undone)
		<-frozen // the process stops here for good: nothing after this runs
	}))
	go post(dying, "/things", "crash-before-commit", `{}`)
	<-undone
	if got := things(t, db); len(got) != 0 {
		t.Fatalf("things %v stored by the transaction that died, want none", got)
	}

	restarted, _ := newKeys(db)
	retry := post(restarted.Wrap(c), "/things", "crash-before-commit", `{}`)
	if retry.status != http.StatusCreated || !strings.Contains(retry.body, `"n":2`) {
		t.Fatalf("retry: got %d %s, want 201 from a new run", retry.status, retry.body)
	}
	if got := things(t, db); !slices.Equal(got, []int32{2}) {
		t.Errorf("things %v stored, want [2]", got)
	}
}

// Two instances over one database: the second answers while the first is
// inside its transaction. One thing is created, and both clients get its answer.
func keysAnotherInstanceCommitsFirst(t *testing.T, db *sqldb.DB) {
	k1, _ := newKeys(db)
	k2, _ := newKeys(db)
	release := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(release) })
	t.Cleanup(letGo)
	c := &creator{db: openThings(t, db), holdInTx: map[int32]chan struct{}{1: release}, started: make(chan int32)}
	firstDone := make(chan result)
	go func() { firstDone <- post(k1.Wrap(c), "/things", "two-instances", `{}`) }()
	<-c.started // the first is in its transaction, thing 1 and its answer written

	secondDone := make(chan result, 1)
	go func() { secondDone <- post(k2.Wrap(c), "/things", "two-instances", `{}`) }()
	polltest.Until(t, "the second request to reach its create", polltest.Holds(func() bool {
		return c.calls.Load() == 2 || len(secondDone) == 1 // answered without: the test fails below
	}))
	letGo()

	first, second := <-firstDone, <-secondDone
	if first.status != http.StatusCreated || !strings.Contains(first.body, `"n":1`) {
		t.Fatalf("first: got %d %s, want 201 with thing 1", first.status, first.body)
	}
	if second.status != http.StatusCreated || second.body != first.body || second.header.Get("Location") != "/things/1" {
		t.Errorf("second: got %d %s %v, want the first answer %s", second.status, second.body, second.header, first.body)
	}
	if got := things(t, db); !slices.Equal(got, []int32{1}) {
		t.Errorf("things %v stored, want [1]", got)
	}
}

func keysAnotherInstanceAnotherBody(t *testing.T, db *sqldb.DB) {
	k1, _ := newKeys(db)
	k2, _ := newKeys(db)
	release := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(release) })
	t.Cleanup(letGo)
	c := &creator{db: openThings(t, db), holdInTx: map[int32]chan struct{}{1: release}, started: make(chan int32)}
	firstDone := make(chan result)
	go func() { firstDone <- post(k1.Wrap(c), "/things", "two-bodies", `{"a":1}`) }()
	<-c.started
	secondDone := make(chan result, 1)
	go func() { secondDone <- post(k2.Wrap(c), "/things", "two-bodies", `{"a":2}`) }()
	polltest.Until(t, "the second request to reach its create", polltest.Holds(func() bool {
		return c.calls.Load() == 2 || len(secondDone) == 1 // answered without: the test fails below
	}))
	letGo()
	if first := <-firstDone; first.status != http.StatusCreated {
		t.Fatalf("first: got %d %s, want 201", first.status, first.body)
	}
	(<-secondDone).wantProblem(t, http.StatusUnprocessableEntity, Header)
	if got := things(t, db); !slices.Equal(got, []int32{1}) {
		t.Errorf("things %v stored, want [1]", got)
	}
}

// A key an earlier version of this package claimed, and whose process died,
// holds nobody up.
func keysClaimLeftRunning(t *testing.T, db *sqldb.DB) {
	k, clk := newKeys(db)
	c := &creator{db: openThings(t, db)}
	h := k.Wrap(c)
	if _, err := db.Exec(`INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, status, headers, body, created_at)
		VALUES ('POST /things ', 'left-running', 'x', 'running', 0, '', '', $1)`, clk.now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	first := post(h, "/things", "left-running", `{}`)
	if first.status != http.StatusCreated || !strings.Contains(first.body, `"n":1`) {
		t.Fatalf("got %d %s, want 201 from a new run", first.status, first.body)
	}
	if r := post(h, "/things", "left-running", `{}`); r.body != first.body || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("repeat: got %s, want the replay of %s", r.body, first.body)
	}
}

func keysHandlerThatDoesNotSave(t *testing.T, db *sqldb.DB) {
	var logged bytes.Buffer
	k := New(db, slog.New(slog.NewTextHandler(&logged, nil)))
	c := &creator{}
	h := k.Wrap(c)
	first := post(h, "/things", "no-save", `{}`)
	if r := post(h, "/things", "no-save", `{}`); r.body != first.body || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("repeat: got %s, want the replay of %s", r.body, first.body)
	}
	if !strings.Contains(logged.String(), "did not store its answer in its transaction") {
		t.Errorf("nothing logged about the answer stored outside the transaction: %q", logged.String())
	}
}

func keysExpiredKeyRunsAgain(t *testing.T, db *sqldb.DB) {
	k, clk := newKeys(db)
	c := &creator{db: openThings(t, db)}
	h := k.Wrap(c)
	first := post(h, "/things", "expires", `{}`)
	clk.advance(k.TTL)
	if r := post(h, "/things", "expires", `{}`); r.body != first.body {
		t.Errorf("at the TTL: got %s, want the replay %s", r.body, first.body)
	}
	clk.advance(time.Nanosecond)
	if r := post(h, "/things", "expires", `{"new":1}`); r.status != http.StatusCreated || !strings.Contains(r.body, `"n":2`) {
		t.Errorf("after the TTL: got %d %s, want a new run", r.status, r.body)
	}
}

func keysPurgeExpired(t *testing.T, db *sqldb.DB) {
	if _, err := db.Exec(`DELETE FROM idempotency_keys`); err != nil {
		t.Fatal(err)
	}
	k, clk := newKeys(db)
	h := k.Wrap(&creator{db: openThings(t, db)})
	post(h, "/things", "old", `{}`)
	clk.advance(k.TTL / 2)
	post(h, "/things", "young", `{}`)
	clk.advance(k.TTL/2 + time.Nanosecond)
	n, err := k.Purge(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("got %d, %v, want 1 key purged", n, err)
	}
	var left []string
	rows, err := db.Query(`SELECT idem_key FROM idempotency_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		left = append(left, s)
	}
	if len(left) != 1 || left[0] != "young" {
		t.Errorf("got keys %v left, want [young]", left)
	}
}

// TestWrapInChassis checks the middleware behind the chassis's body limit.
func TestWrapInChassis(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/keys.db", migrations)
	k, _ := newKeys(db)
	mux := http.NewServeMux()
	mux.Handle("POST /things", k.Wrap(&creator{}))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := httpserver.New(httpserver.Config{}, log, metrics.NewRegistry(), mux, []byte(`{}`), func(context.Context) error { return nil }).Handler()
	body := io.MultiReader(bytes.NewReader(make([]byte, httpserver.MaxBodyBytes+1)))
	req := httptest.NewRequest(http.MethodPost, "/things", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(Header, "big")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	result{rec.Code, rec.Result().Header, rec.Body.String()}.wantProblem(t, http.StatusRequestEntityTooLarge, "")
}

func TestKeysAreScopedToTheCaller(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/callers.db", migrations)
	keys := New(db, slog.New(slog.DiscardHandler))
	n := 0
	h := keys.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"n":%d}`, n)
	}))
	// post sends the request as the verified subject ("" for anonymous), with
	// the extra headers a caller chose.
	post := func(subject string, header map[string]string) string {
		req := httptest.NewRequest(http.MethodPost, "/things", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(Header, "same-key")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if subject != "" {
			req = req.WithContext(authn.NewContext(req.Context(), authn.Identity{Subject: subject}))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	alice, bob, aliceAgain := post("alice", nil), post("bob", nil), post("alice", nil)
	if alice == bob {
		t.Errorf("two callers with one key got the same answer %s; want separate scopes", alice)
	}
	if aliceAgain != alice {
		t.Errorf("alice's repeat got %s, want her first answer %s", aliceAgain, alice)
	}
	// Finding 3 of issue 8: a header naming alice replayed her stored answer to
	// whoever sent it. Only the verified token names the caller now.
	spoof := map[string]string{"X-Folio-Subject": "alice"}
	for _, caller := range []string{"mallory", ""} {
		if got := post(caller, spoof); got == alice {
			t.Errorf("caller %q with X-Folio-Subject: alice got alice's answer %s", caller, got)
		}
	}
}
