package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"folio/internal/auth/httpapi"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/polltest"
	"folio/internal/platform/problem"
)

// behind is the header of a request that came through the trusted proxy (the
// gateway) for client.
func behind(client string) []string {
	return []string{"RemoteAddr", trustedProxy + ":40000", "X-Forwarded-For", client}
}

// TestLoginFloodDoesNotLockOutOthers replays finding 2 of issue 8: behind the
// gateway every login came from the gateway's address, so 70 wrong logins from one
// client made the admin's correct password from another client get 429.
func TestLoginFloodDoesNotLockOutOthers(t *testing.T) {
	s := newServer(t, openSQLite(t))
	s.admin()
	const clientA, clientB = "198.51.100.7", "203.0.113.9"
	var last *httptest.ResponseRecorder
	for range 70 {
		last = s.do("POST", "/auth/token", credentials("root@example.com", "wrong password"), behind(clientA)...)
		if last.Code != 401 && last.Code != 429 {
			t.Fatalf("a wrong login: got %d, want 401 or 429: %s", last.Code, last.Body)
		}
	}
	wantProblem(t, last, 429, problem.TypeTooManyRequests)
	wantProblem(t, s.do("POST", "/auth/token", credentials("root@example.com", "root password 123"), behind(clientA)...),
		429, problem.TypeTooManyRequests)
	if rec := s.do("POST", "/auth/token", credentials("root@example.com", "root password 123"), behind(clientB)...); rec.Code != 200 {
		t.Fatalf("client B's correct login after client A's flood: got %d, want 200: %s", rec.Code, rec.Body)
	}

	t.Run("X-Forwarded-For from an untrusted peer is ignored", func(t *testing.T) {
		// A peer that is no proxy names client B in X-Forwarded-For, a new address
		// each time: it is limited as itself and spends nothing of B's.
		var last *httptest.ResponseRecorder
		for i := range 70 {
			last = s.do("POST", "/auth/token", credentials("root@example.com", "wrong password"),
				"RemoteAddr", "192.0.2.50:1234", "X-Forwarded-For", clientB+", 198.18.0."+strconv.Itoa(i))
		}
		wantProblem(t, last, 429, problem.TypeTooManyRequests)
		if rec := s.do("POST", "/auth/token", credentials("root@example.com", "root password 123"), behind(clientB)...); rec.Code != 200 {
			t.Fatalf("client B's correct login after a spoofed flood: got %d, want 200: %s", rec.Code, rec.Body)
		}
	})
}

func TestRegisterRateLimit(t *testing.T) {
	s := newServer(t, openSQLite(t), func(s *settings) { s.limits.Register = httpapi.Limit{Every: time.Hour, Burst: 3} })
	for i := range 3 {
		if rec := s.do("POST", "/auth/register", credentials(fmt.Sprintf("u%d@example.com", i), "twelve chars"), behind("198.51.100.7")...); rec.Code != 201 {
			t.Fatalf("register %d: got %d, want 201: %s", i, rec.Code, rec.Body)
		}
	}
	rec := s.do("POST", "/auth/register", credentials("u3@example.com", "twelve chars"), behind("198.51.100.7")...)
	wantProblem(t, rec, 429, problem.TypeTooManyRequests)
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("got Retry-After %q, want a positive number of seconds", rec.Header().Get("Retry-After"))
	}
	if _, peak, _ := s.svc.HashLoad(); peak > 1 {
		t.Errorf("peak of %d hashes at once for sequential registers", peak)
	}
	if rec := s.do("POST", "/auth/register", credentials("u3@example.com", "twelve chars"), behind("203.0.113.9")...); rec.Code != 201 {
		t.Errorf("register from another client: got %d, want 201: %s", rec.Code, rec.Body)
	}
}

// TestHashingIsCapped replays finding 6 of issue 8: every register ran argon2id at
// once, 19 MiB each. With the cap, N concurrent registers hash at most cap at a time,
// the others wait for a slot.
func TestHashingIsCapped(t *testing.T) {
	const slots, n = 2, 8
	s := newServer(t, openSQLite(t), func(s *settings) { s.opts.HashSlots, s.opts.HashWait = slots, time.Minute })
	release := make(chan struct{})
	s.setHashHook(func() { <-release })

	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i] = s.do("POST", "/auth/register", credentials(fmt.Sprintf("u%d@example.com", i), "twelve chars"),
				"RemoteAddr", fmt.Sprintf("10.1.0.%d:1", i), "Idempotency-Key", fmt.Sprintf("key-%d", i)).Code
		})
	}
	// Every request is in: slots of them hashing (held in the hook), the rest waiting.
	polltest.Until(t, fmt.Sprintf("%d hash and %d wait", slots, n-slots), polltest.Holds(func() bool {
		running, _, waiting := s.svc.HashLoad()
		return running == slots && waiting == n-slots
	}))
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != 201 {
			t.Errorf("register %d: got %d, want 201", i, c)
		}
	}
	// Each request ran two hashes (fingerprint and password), one after another.
	if _, peak, _ := s.svc.HashLoad(); peak != slots {
		t.Errorf("at most %d argon2id runs were in flight at once, want %d (the cap)", peak, slots)
	}
}

// TestHashingBusy: a request that finds no free slot within the wait gets 503 with
// Retry-After, for register and login alike, instead of queueing without bound.
func TestHashingBusy(t *testing.T) {
	s := newServer(t, openSQLite(t), func(s *settings) { s.opts.HashSlots, s.opts.HashWait = 1, 10*time.Millisecond })
	s.register("ada@example.com", "twelve chars")
	release := make(chan struct{})
	var once sync.Once
	s.setHashHook(func() { once.Do(func() { <-release }) })
	done := make(chan int)
	go func() {
		done <- s.do("POST", "/auth/register", credentials("held@example.com", "twelve chars"), "RemoteAddr", "10.2.0.1:1").Code
	}()
	polltest.Until(t, "the slot is taken", polltest.Holds(func() bool { running, _, _ := s.svc.HashLoad(); return running == 1 }))
	for _, rec := range []*httptest.ResponseRecorder{
		s.do("POST", "/auth/register", credentials("bob@example.com", "twelve chars"), "RemoteAddr", "10.2.0.2:1"),
		s.do("POST", "/auth/token", credentials("ada@example.com", "twelve chars"), "RemoteAddr", "10.2.0.3:1"),
	} {
		wantProblem(t, rec, 503, problem.TypeBusy)
		if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("got Retry-After %q, want a positive number of seconds", rec.Header().Get("Retry-After"))
		}
	}
	close(release)
	if code := <-done; code != 201 {
		t.Errorf("the register that held the slot: got %d, want 201", code)
	}
	s.token("ada@example.com", "twelve chars")
}

// TestRoleChangeRevokes replays finding 8 of issue 8 on the auth service itself: an
// editor demoted to reader kept using the old token. The role change revokes it here
// and, through the outbox, everywhere.
func TestRoleChangeRevokes(t *testing.T) {
	db := openSQLite(t)
	s := newServer(t, db)
	_, adminTok := s.admin()
	ada := s.register("ada@example.com", "twelve chars")
	old := s.token("ada@example.com", "twelve chars")
	path := "/auth/users/" + ada.ID
	if rec := s.do("GET", path, "", bearer(old)...); rec.Code != 200 {
		t.Fatalf("GET with the token before the change: got %d, want 200", rec.Code)
	}
	_, last := outboxtest.Events(t, db, 0)

	changed := s.clock.Now()
	if rec := s.do("PUT", path+"/roles", `{"roles":["editor"]}`, bearer(adminTok)...); rec.Code != 200 {
		t.Fatalf("role change: got %d, want 200: %s", rec.Code, rec.Body)
	}
	wantProblem(t, s.do("GET", path, "", bearer(old)...), 401, problem.TypeUnauthorized)

	events, _ := outboxtest.Events(t, db, last)
	if len(events) != 1 {
		t.Fatalf("got %d events, want one account.revoked", len(events))
	}
	e := events[0]
	var data struct {
		ID            string `json:"id"`
		RevokedBefore int64  `json:"revoked_before"`
	}
	if err := json.Unmarshal(e.Envelope.Data, &data); err != nil {
		t.Fatal(err)
	}
	if e.Envelope.Type != "account.revoked" || e.Aggregate != ada.ID || data.ID != ada.ID || data.RevokedBefore != changed.Unix()+1 {
		t.Errorf("got event %s %s %+v, want account.revoked of %s revoked_before %d", e.Envelope.Type, e.Aggregate, data, ada.ID, changed.Unix()+1)
	}
	if c := s.verify(old); c.IssuedAt.Unix() >= data.RevokedBefore {
		t.Errorf("the old token's iat %d is not before revoked_before %d", c.IssuedAt.Unix(), data.RevokedBefore)
	}

	// A token issued in the same second is issued at revoked_before, not before, so
	// that every verifier takes it; it works here.
	fresh := s.token("ada@example.com", "twelve chars")
	c := s.verify(fresh)
	if c.IssuedAt.Unix() < data.RevokedBefore || c.ExpiresAt.Sub(c.IssuedAt.Time) != 15*time.Minute {
		t.Errorf("new token iat %d exp %d, want iat at least %d and a 15 min lifetime", c.IssuedAt.Unix(), c.ExpiresAt.Unix(), data.RevokedBefore)
	}
	if rec := s.do("GET", path, "", bearer(fresh)...); rec.Code != 200 {
		t.Errorf("GET with a new token: got %d, want 200: %s", rec.Code, rec.Body)
	}

	// A second change within the same second revokes the token issued between the
	// two changes too, although that token's iat is already revoked_before.
	if rec := s.do("PUT", path+"/roles", `{"roles":["reader"]}`, bearer(adminTok)...); rec.Code != 200 {
		t.Fatalf("second role change: got %d, want 200: %s", rec.Code, rec.Body)
	}
	wantProblem(t, s.do("GET", path, "", bearer(fresh)...), 401, problem.TypeUnauthorized)
	fresh = s.token("ada@example.com", "twelve chars")
	if rec := s.do("GET", path, "", bearer(fresh)...); rec.Code != 200 {
		t.Fatalf("GET with a token issued after the second change: got %d, want 200: %s", rec.Code, rec.Body)
	}

	// Setting the same roles again revokes nothing.
	_, last = outboxtest.Events(t, db, 0)
	if rec := s.do("PUT", path+"/roles", `{"roles":["reader"]}`, bearer(adminTok)...); rec.Code != 200 {
		t.Fatalf("same roles: got %d, want 200", rec.Code)
	}
	if events, _ := outboxtest.Events(t, db, last); len(events) != 0 {
		t.Errorf("setting the same roles wrote %d events, want none", len(events))
	}
	if rec := s.do("GET", path, "", bearer(fresh)...); rec.Code != 200 {
		t.Errorf("GET after setting the same roles: got %d, want 200", rec.Code)
	}
}

// TestLifetimeCap replays the other half of finding 8: a validly signed token with
// exp in the year 3000 was accepted.
func TestLifetimeCap(t *testing.T) {
	s := newServer(t, openSQLite(t))
	ada := s.register("ada@example.com", "twelve chars")
	tok := s.token("ada@example.com", "twelve chars")
	c := s.verify(tok)
	forever := *c
	forever.ExpiresAt.Time = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	long := s.sign(forever, "")
	wantProblem(t, s.do("GET", "/auth/users/"+ada.ID, "", bearer(long)...), 401, problem.TypeUnauthorized)
	oneSecondLonger := *c
	oneSecondLonger.ExpiresAt.Time = c.ExpiresAt.Add(time.Second)
	long = s.sign(oneSecondLonger, "")
	wantProblem(t, s.do("GET", "/auth/users/"+ada.ID, "", bearer(long)...), 401, problem.TypeUnauthorized)
	if rec := s.do("GET", "/auth/users/"+ada.ID, "", bearer(tok)...); rec.Code != 200 {
		t.Errorf("the token as issued: got %d, want 200", rec.Code)
	}
}

// TestEmailsAreNormalised: look-alike spellings of an email name one account, and
// an email made only of invisible characters is refused.
func TestEmailsAreNormalised(t *testing.T) {
	s := newServer(t, openSQLite(t))
	foo := s.register("Foo@Example.com", "twelve chars")
	if foo.Email != "foo@example.com" {
		t.Errorf("stored email %q, want foo@example.com", foo.Email)
	}
	for _, login := range []string{"ｆｏｏ@example.com", "FOO@EXAMPLE.COM", "ＦＯＯ＠ＥＸＡＭＰＬＥ．ＣＯＭ", " foo@example.com "} {
		if c := s.verify(s.token(login, "twelve chars")); c.Subject != foo.ID {
			t.Errorf("login as %q: got sub %s, want %s", login, c.Subject, foo.ID)
		}
	}
	for _, variant := range []string{"ｆｏｏ@example.com", "FOO@example.COM", "ｆｏｏ＠ｅｘａｍｐｌｅ．ｃｏｍ"} {
		wantProblem(t, s.do("POST", "/auth/register", credentials(variant, "twelve chars")), 409, problem.TypeConflict)
	}
	for _, bad := range []string{"\u200b\u200b", "\u202e\u2066\u200f", "\u200d", "fo\u200bo@example.com", "foo@exa\u202emple.com", "\ufeff"} {
		wantProblem(t, s.do("POST", "/auth/register", credentials(bad, "twelve chars")), 422, problem.TypeValidation, "email")
	}
	// The admin from configuration is found under any spelling too.
	ctx := context.Background()
	if created, err := s.svc.EnsureAdmin(ctx, "Ｒoot@Example.com", "root password 123"); !created || err != nil {
		t.Fatalf("EnsureAdmin: got %v, %v, want created", created, err)
	}
	if created, err := s.svc.EnsureAdmin(ctx, "ROOT@example.com", "root password 123"); created || err != nil {
		t.Errorf("EnsureAdmin again under another spelling: got %v, %v, want false, nil", created, err)
	}
	s.token("root@example.com", "root password 123")
	if _, err := s.svc.EnsureAdmin(ctx, "\u200b", "root password 123"); err == nil {
		t.Error("EnsureAdmin with an invisible email: got nil, want an error")
	}
}

// signalReader sends on started at its first Read, then blocks until done closes:
// a client that sends its body slowly.
type signalReader struct {
	started chan<- struct{}
	done    <-chan struct{}
	once    sync.Once
}

func (r *signalReader) Read([]byte) (int, error) {
	r.once.Do(func() { close(r.started) })
	<-r.done
	return 0, io.ErrUnexpectedEOF
}

// TestSlowBodyHoldsNoSlot: a register whose body is still arriving holds no hashing
// slot, so that a few slow clients cannot make every register and login wait.
func TestSlowBodyHoldsNoSlot(t *testing.T) {
	s := newServer(t, openSQLite(t), func(s *settings) { s.opts.HashSlots, s.opts.HashWait = 1, 10*time.Millisecond })
	started, done := make(chan struct{}), make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		req := httptest.NewRequest("POST", "/auth/register", &signalReader{started: started, done: done})
		req.Header.Set("Content-Type", "application/json")
		s.h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	<-started
	if rec := s.do("POST", "/auth/register", credentials("ada@example.com", "twelve chars"), "RemoteAddr", "10.3.0.1:1"); rec.Code != 201 {
		t.Errorf("register beside a slow one: got %d, want 201: %s", rec.Code, rec.Body)
	}
	close(done)
	<-finished
}
