// Package idempotencytest checks that a service's idempotent create stores its answer
// in the create's own transaction: whatever point a process dies at, a retry of the
// request gets the first answer or creates, once, and is never held up.
package idempotencytest

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"folio/internal/platform/idempotency"
	"folio/internal/platform/sqldb"
)

// Create is a service's idempotent create, as the crash tests drive it.
type Create struct {
	// Handler returns the create handler of a new process of the service over db,
	// not wrapped: the tests wrap it with a Keys of that process, as Routes does.
	Handler func(t *testing.T, db *sqldb.DB) http.Handler
	// Path and Body make one valid create request.
	Path, Body string
	// Tables each gain one row when the create commits: the resource's, its event's.
	Tables []string
}

// answer is a response as a client sees it.
type answer struct {
	status int
	header http.Header
	body   string
}

func (c Create) post(h http.Handler, key string) answer {
	req := httptest.NewRequest(http.MethodPost, c.Path, strings.NewReader(c.Body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(idempotency.Header, key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{rec.Code, rec.Result().Header, rec.Body.String()}
}

// process returns the create of a new process over db, behind its own Keys.
func (c Create) process(t *testing.T, db *sqldb.DB) http.Handler {
	return idempotency.New(db, slog.New(slog.NewTextHandler(io.Discard, nil))).Wrap(c.Handler(t, db))
}

func (c Create) rows(t *testing.T, db *sqldb.DB) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, table := range c.Tables {
		var count int
		if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&count); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		n[table] = count
	}
	return n
}

func (c Create) wantRowsAdded(t *testing.T, db *sqldb.DB, before map[string]int, added int, when string) {
	t.Helper()
	for table, n := range c.rows(t, db) {
		if n != before[table]+added {
			t.Errorf("%s: %s has %d rows, want %d", when, table, n, before[table]+added)
		}
	}
}

// CrashAfterCommit has the process that serves the first request die once its
// create committed, before it answered (issue 14, defect 6). The retry, served by
// a new process, must get the first answer (status, body, Location, ETag) and
// create nothing.
func CrashAfterCommit(t *testing.T, db *sqldb.DB, c Create) {
	t.Helper()
	const key = "crash-after-commit"
	before := c.rows(t, db)
	frozen := make(chan struct{})
	t.Cleanup(func() { close(frozen) })
	committed := make(chan answer, 1)
	create := c.Handler(t, db)
	dying := idempotency.New(db, slog.New(slog.NewTextHandler(io.Discard, nil))).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		create.ServeHTTP(rec, r)
		committed <- answer{rec.Code, rec.Result().Header, rec.Body.String()}
		<-frozen // the process stops here for good: nothing after this runs
	}))
	go c.post(dying, key)
	first := <-committed
	if first.status != http.StatusCreated {
		t.Fatalf("first: got %d %s, want 201", first.status, first.body)
	}

	retry := c.post(c.process(t, db), key)
	if retry.status != first.status || retry.body != first.body {
		t.Fatalf("retry after the crash: got %d %s, want the first answer %d %s", retry.status, retry.body, first.status, first.body)
	}
	for _, name := range []string{"Location", "ETag", "Content-Type"} {
		if got, want := retry.header.Get(name), first.header.Get(name); got != want || want == "" {
			t.Errorf("retry after the crash: %s %q, want the first answer's %q", name, got, want)
		}
	}
	if got := retry.header.Get("Idempotent-Replayed"); got != "true" {
		t.Errorf("retry after the crash: Idempotent-Replayed %q, want true", got)
	}
	c.wantRowsAdded(t, db, before, 1, "after the crash and the retry")
}

// CrashBeforeCommit has storing the first request's answer fail inside its create's
// transaction, after the resource and its event were written: a database trigger
// stands for the process dying there, since the database undoes the transaction of a
// process that died just as it undoes one that failed. The create must be undone with
// its answer, and the retry, served by a new process, creates, once.
func CrashBeforeCommit(t *testing.T, db *sqldb.DB, c Create) {
	t.Helper()
	const key = "crash-before-commit"
	before := c.rows(t, db)
	restore := FailAnswers(t, db)
	if first := c.post(c.process(t, db), key); first.status >= 200 && first.status <= 299 {
		t.Errorf("first, its answer not stored: got %d %s, want a failure", first.status, first.body)
	}
	c.wantRowsAdded(t, db, before, 0, "after the create whose answer could not be stored")
	restore()

	retry := c.post(c.process(t, db), key)
	if retry.status != http.StatusCreated || retry.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry: got %d %s %v, want 201 from a new create", retry.status, retry.body, retry.header)
	}
	c.wantRowsAdded(t, db, before, 1, "after the retry")
	if again := c.post(c.process(t, db), key); again.status != retry.status || again.body != retry.body {
		t.Errorf("repeat of the retry: got %d %s, want its answer %s", again.status, again.body, retry.body)
	}
}

// FailAnswers makes every write of a stored answer into db fail until the returned
// function is called or the test ends. It is for tests only: it adds a trigger to
// the idempotency_keys table.
func FailAnswers(t *testing.T, db *sqldb.DB) (restore func()) {
	t.Helper()
	const message = "folio test: storing the idempotent answer fails"
	install := []string{
		`CREATE TRIGGER folio_test_fail_answers_insert BEFORE INSERT ON idempotency_keys WHEN NEW.state = 'done'
			BEGIN SELECT RAISE(ABORT, '` + message + `'); END`,
		`CREATE TRIGGER folio_test_fail_answers_update BEFORE UPDATE ON idempotency_keys WHEN NEW.state = 'done'
			BEGIN SELECT RAISE(ABORT, '` + message + `'); END`,
	}
	remove := []string{`DROP TRIGGER folio_test_fail_answers_insert`, `DROP TRIGGER folio_test_fail_answers_update`}
	if db.Dialect == sqldb.Postgres {
		install = []string{
			`CREATE FUNCTION folio_test_fail_answers() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION '` + message + `'; END $$`,
			`CREATE TRIGGER folio_test_fail_answers BEFORE INSERT OR UPDATE ON idempotency_keys
				FOR EACH ROW WHEN (NEW.state = 'done') EXECUTE FUNCTION folio_test_fail_answers()`,
		}
		remove = []string{`DROP TRIGGER folio_test_fail_answers ON idempotency_keys`, `DROP FUNCTION folio_test_fail_answers()`}
	}
	for _, q := range install {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("install the trigger that fails answers: %v", err)
		}
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		for _, q := range remove {
			if _, err := db.Exec(q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}
