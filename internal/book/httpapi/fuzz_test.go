package httpapi_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"folio/internal/book/sqlstore"
	"folio/internal/platform/problem"
	"folio/internal/platform/sqldb/sqldbtest"
)

// FuzzBookDecode sends arbitrary bodies through the whole service, as POST /books and
// as PUT and PATCH of an existing book: nothing may answer 5xx, and every answer other
// than success is problem+json. It runs on SQLite, and on PostgreSQL too when
// FOLIO_TEST_POSTGRES_URL is set.
func FuzzBookDecode(f *testing.F) {
	servers := []*server{newServerLogging(f, sqldbtest.Open(f, "sqlite:"+filepath.Join(f.TempDir(), "fuzz.db"), sqlstore.Migrations), io.Discard)}
	if os.Getenv("FOLIO_TEST_POSTGRES_URL") != "" || sqldbtest.RequireIntegration() {
		servers = append(servers, newServerLogging(f, sqldbtest.OpenPostgres(f, sqlstore.Migrations), io.Discard))
	}
	var targets []string
	for _, s := range servers {
		b := s.create(f, map[string]any{"title": "Target", "author_id": authorA, "genre": "fuzz"})
		targets = append(targets, "/books/"+b.ID)
	}

	for _, seed := range []string{
		`{"title":"Dune","author_id":"` + authorA + `","genre":"science-fiction","isbn":"0-306-40615-2","published_year":1965}`,
		`{"title":"Dune","author_id":"` + authorA + `","genre":"science-fiction","isbn":null,"published_year":null}`,
		`{"title":"Dune","author_id":"` + authorA + `","genre":"fiction","id":"x","version":[],"created_at":{},"updated_at":null}`,
		`{"title":"Du\u0000ne","author_id":"` + authorA + `","genre":"fiction"}`,
		`{"title":"\ud800\udfff\uffff","author_id":"` + authorA + `","genre":"fiction"}`,
		`{"title":"x","author_id":"` + authorB + `","genre":"g"}`,
		`{"title":"x","author_id":"` + absentAuthor + `","genre":"g"}`,
		`{"title":"x","author_id":"00000000-0000-0000-0000-000000000000","genre":"g"}`,
		`{"title":"x","author_id":"` + authorA + `","genre":"g","published_year":1e400}`,
		`{"title":"x","author_id":"` + authorA + `","genre":"g","published_year":-9223372036854775809}`,
		`{"title":"x","author_id":"` + authorA + `","genre":"g","published_year":2.5}`,
		`{"title":1}`, `{"nope":1}`, `{"title":"x"} {}`, `{"title":"x"`, `[]`, `null`, `"s"`, `0`, ``, ` `,
		"\xff\xfe", `{"title":"\xff"}`, `{"isbn":"0-8044-2957-X"}`, `{"title":{"title":{}}}`,
		strings.Repeat("[", 10000), `{"title":null,"genre":null,"author_id":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for i, s := range servers {
			for _, req := range []struct{ method, path string }{
				{http.MethodPost, "/books"}, {http.MethodPut, targets[i]}, {http.MethodPatch, targets[i]},
			} {
				resp := s.do(t, req.method, req.path, string(body))
				if resp.Status >= 500 {
					t.Fatalf("%s %s %q: got %d %s, want no 5xx", req.method, req.path, body, resp.Status, resp.Body)
				}
				if resp.Status != http.StatusCreated && resp.Status != http.StatusOK {
					if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
						t.Fatalf("%s %s %q: got %d with Content-Type %q, want %q", req.method, req.path, body, resp.Status, ct, problem.ContentType)
					}
				}
			}
		}
	})
}
