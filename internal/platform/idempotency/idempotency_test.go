package idempotency

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/platform/authn"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/metrics"
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

// creator is a tiny creating handler: each call makes resource n and answers 201 with
// it, unless fail says otherwise. A call can be held until released.
type creator struct {
	calls atomic.Int32
	// hold, when set for a call number, is closed by the test to let that call finish;
	// started receives the call number when a held call begins.
	hold    map[int32]chan struct{}
	started chan int32
	fail    map[int32]int // call number -> status to answer instead
	panics  map[int32]bool
}

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
	w.Header().Set("Location", fmt.Sprintf("/things/%d", n))
	w.Header().Set("ETag", `"1"`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Not-Kept", "x")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"n":%d,"got":%q}`, n, body)
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

func TestKeys(t *testing.T) {
	sqldbtest.ForEach(t, migrations, func(t *testing.T, db *sqldb.DB) {
		t.Run("replay", func(t *testing.T) {
			k, _ := newKeys(db)
			c := &creator{}
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
		})

		t.Run("no key", func(t *testing.T) {
			k, _ := newKeys(db)
			c := &creator{}
			h := k.Wrap(c)
			for range 2 {
				if r := post(h, "/things", "", `{}`); r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("got %d %v, want 201, not replayed", r.status, r.header)
				}
			}
			if got := c.calls.Load(); got != 2 {
				t.Errorf("handler ran %d times, want 2", got)
			}
		})

		t.Run("scopes", func(t *testing.T) {
			k, _ := newKeys(db)
			k.Caller = func(r *http.Request) string { return r.Header.Get("X-Caller") }
			c := &creator{}
			h := k.Wrap(c)
			post(h, "/things", "scoped", `{}`, "X-Caller", "alice")
			post(h, "/things", "scoped", `{}`, "X-Caller", "bob")     // another caller
			post(h, "/others", "scoped", `{}`, "X-Caller", "alice")   // another path
			post(h, "/things", "scoped", `{}`, "X-Caller", "alice")   // a repeat
			post(h, "/things", "scoped-2", `{}`, "X-Caller", "alice") // another key
			if got := c.calls.Load(); got != 4 {
				t.Errorf("handler ran %d times, want 4", got)
			}
		})

		t.Run("different request", func(t *testing.T) {
			k, _ := newKeys(db)
			h := k.Wrap(&creator{})
			post(h, "/things", "different", `{"a":1}`)
			post(h, "/things", "different", `{"a":2}`).wantProblem(t, http.StatusUnprocessableEntity, Header)
			post(h, "/things?x=1", "different", `{"a":1}`).wantProblem(t, http.StatusUnprocessableEntity, Header)
		})

		t.Run("bad keys", func(t *testing.T) {
			k, _ := newKeys(db)
			c := &creator{}
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
		})

		t.Run("body too large", func(t *testing.T) {
			k, _ := newKeys(db)
			c := &creator{}
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = http.MaxBytesReader(w, r.Body, 10)
				k.Wrap(c).ServeHTTP(w, r)
			})
			post(h, "/things", "large", strings.Repeat("x", 11)).wantProblem(t, http.StatusRequestEntityTooLarge, "")
			if got := c.calls.Load(); got != 0 {
				t.Errorf("handler ran %d times, want 0", got)
			}
		})

		t.Run("failures are not remembered", func(t *testing.T) {
			k, _ := newKeys(db)
			c := &creator{fail: map[int32]int{1: http.StatusUnprocessableEntity, 2: http.StatusInternalServerError}}
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
		})

		t.Run("panic frees the key", func(t *testing.T) {
			k, _ := newKeys(db)
			c := &creator{panics: map[int32]bool{1: true}}
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
		})

		t.Run("concurrent repeat", func(t *testing.T) {
			k, _ := newKeys(db)
			release := make(chan struct{})
			c := &creator{hold: map[int32]chan struct{}{1: release}, started: make(chan int32)}
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
		})

		t.Run("abandoned key is taken over", func(t *testing.T) {
			k, clk := newKeys(db)
			release := make(chan struct{})
			c := &creator{hold: map[int32]chan struct{}{1: release}, started: make(chan int32)}
			h := k.Wrap(c)
			done := make(chan result)
			go func() { done <- post(h, "/things", "abandoned", `{}`) }()
			<-c.started

			clk.advance(k.Abandoned) // not yet abandoned
			post(h, "/things", "abandoned", `{}`).wantProblem(t, http.StatusConflict, "")
			clk.advance(time.Nanosecond)
			second := post(h, "/things", "abandoned", `{}`)
			if second.status != http.StatusCreated || !strings.Contains(second.body, `"n":2`) {
				t.Fatalf("after Abandoned: got %d %s, want 201 from a new run", second.status, second.body)
			}

			// The first request was not dead after all. Its late answer must not
			// replace the one the retry gave.
			close(release)
			<-done
			if r := post(h, "/things", "abandoned", `{}`); r.body != second.body {
				t.Errorf("replay: got %s, want the answer of the run that took the key over, %s", r.body, second.body)
			}
		})

		t.Run("late failure keeps a taken-over key", func(t *testing.T) {
			k, clk := newKeys(db)
			release := make(chan struct{})
			c := &creator{hold: map[int32]chan struct{}{1: release, 2: make(chan struct{})}, started: make(chan int32),
				fail: map[int32]int{1: http.StatusInternalServerError}}
			h := k.Wrap(c)
			firstDone := make(chan result)
			go func() { firstDone <- post(h, "/things", "late-failure", `{}`) }()
			<-c.started
			clk.advance(k.Abandoned + time.Nanosecond)
			secondDone := make(chan result)
			go func() { secondDone <- post(h, "/things", "late-failure", `{}`) }()
			<-c.started // the second run holds the key now

			close(release) // the first run fails late, and frees the key it no longer owns
			<-firstDone
			post(h, "/things", "late-failure", `{}`).wantProblem(t, http.StatusConflict, "")

			close(c.hold[2])
			if r := <-secondDone; r.status != http.StatusCreated {
				t.Errorf("second: got %d, want 201", r.status)
			}
			if got := c.calls.Load(); got != 2 {
				t.Errorf("handler ran %d times, want 2", got)
			}
		})

		t.Run("expired key is served again", func(t *testing.T) {
			k, clk := newKeys(db)
			c := &creator{}
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
		})

		t.Run("purge", func(t *testing.T) {
			if _, err := db.Exec(`DELETE FROM idempotency_keys`); err != nil {
				t.Fatal(err)
			}
			k, clk := newKeys(db)
			h := k.Wrap(&creator{})
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
		})
	})
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
