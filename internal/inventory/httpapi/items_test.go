package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"folio/internal/inventory"
	"folio/internal/inventory/httpapi"
	"folio/internal/platform/id"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest/resttest"
)

const tenEuros = `{"price":{"amount":1000,"currency":"EUR"},"quantity":10}`

func TestPutCreatesThenChangesWithIfMatch(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bookID := id.New()
		path := "/inventory/" + bookID
		rec := s.do(http.MethodPut, path, tenEuros)
		if rec.Code != http.StatusCreated || rec.Header().Get("ETag") != `"1"` || rec.Header().Get("Location") != path {
			t.Fatalf("create: got %d ETag %q Location %q: %s", rec.Code, rec.Header().Get("ETag"), rec.Header().Get("Location"), rec.Body)
		}
		it := resttest.Decode[inventory.Item](t, rec)
		if it.BookID != bookID || it.Price != (inventory.Money{Amount: 1000, Currency: "EUR"}) || it.Quantity != 10 || it.Available != 10 || it.Version != 1 {
			t.Errorf("created %+v", it)
		}

		changed := `{"price":{"amount":1250,"currency":"EUR"},"quantity":12}`
		resttest.WantProblem(t, s.do(http.MethodPut, path, changed), http.StatusPreconditionRequired, httpapi.TypePreconditionRequired)
		resttest.WantProblem(t, s.do(http.MethodPut, path, changed, "If-None-Match", "*"), http.StatusPreconditionFailed, problem.TypePreconditionFailed)
		resttest.WantProblem(t, s.do(http.MethodPut, path, changed, "If-Match", `"7"`), http.StatusPreconditionFailed, problem.TypePreconditionFailed)
		rec = s.do(http.MethodPut, path, changed, "If-Match", `"1"`)
		if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `"2"` {
			t.Fatalf("change: got %d ETag %q: %s", rec.Code, rec.Header().Get("ETag"), rec.Body)
		}
		resttest.WantProblem(t, s.do(http.MethodPut, path, changed, "If-Match", `"1"`), http.StatusPreconditionFailed, problem.TypePreconditionFailed)

		// What was read can be sent back as it is.
		got := s.do(http.MethodGet, path, "", "Authorization", "")
		if got.Code != http.StatusOK || got.Header().Get("ETag") != `"2"` {
			t.Fatalf("GET: got %d ETag %q", got.Code, got.Header().Get("ETag"))
		}
		if rec := s.do(http.MethodPut, path, got.Body.String(), "If-Match", `"2"`); rec.Code != http.StatusOK {
			t.Errorf("PUT of what GET answered: got %d %s", rec.Code, rec.Body)
		}

		// If-None-Match: * creates only what does not exist; If-Match, only what does.
		other := "/inventory/" + id.New()
		resttest.WantProblem(t, s.do(http.MethodPut, other, tenEuros, "If-Match", `"1"`), http.StatusPreconditionFailed, problem.TypePreconditionFailed)
		if rec := s.do(http.MethodPut, other, tenEuros, "If-None-Match", "*"); rec.Code != http.StatusCreated {
			t.Errorf("create with If-None-Match *: got %d %s", rec.Code, rec.Body)
		}
	})
}

func TestPutRefusesAQuantityBelowTheReservedCopies(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bookID := s.put(t, tenEuros)
		s.reserve(t, bookID, 6)
		path := "/inventory/" + bookID
		p := resttest.WantProblem(t, s.do(http.MethodPut, path, `{"price":{"amount":1000,"currency":"EUR"},"quantity":5}`, "If-Match", `"1"`),
			http.StatusConflict, problem.TypeConflict)
		if !strings.Contains(p.Detail, "6") {
			t.Errorf("problem %+v, want it to say how many are reserved", p)
		}
		rec := s.do(http.MethodPut, path, `{"price":{"amount":1000,"currency":"EUR"},"quantity":6}`, "If-Match", `"1"`)
		it := resttest.Decode[inventory.Item](t, rec)
		if rec.Code != http.StatusOK || it.Reserved != 6 || it.Available != 0 || it.Quantity != 6 {
			t.Errorf("down to the reserved copies: got %d %+v", rec.Code, it)
		}
	})
}

func TestDeletedBooksHaveNoStock(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		stocked := s.put(t, tenEuros)
		unstocked := id.New()
		s.deleteBook(t, stocked)
		s.deleteBook(t, unstocked)
		for _, b := range []string{stocked, unstocked} {
			resttest.WantProblem(t, s.do(http.MethodGet, "/inventory/"+b, ""), http.StatusNotFound, problem.TypeNotFound)
			resttest.WantProblem(t, s.do(http.MethodPut, "/inventory/"+b, tenEuros), http.StatusConflict, problem.TypeConflict)
			resttest.WantProblem(t, s.do(http.MethodPut, "/inventory/"+b, tenEuros, "If-Match", `"1"`), http.StatusConflict, problem.TypeConflict)
		}
		if rec := s.do(http.MethodGet, "/inventory", ""); !strings.Contains(rec.Body.String(), `"items":[]`) {
			t.Errorf("list after the deletes: %s, want no item", rec.Body)
		}
	})
}

func TestPutRefusesBrokenRules(t *testing.T) {
	s := newServer(t, openSQLite(t))
	path := "/inventory/" + id.New()
	for _, tc := range []struct {
		name, body string
		status     int
		fields     []string
	}{
		{"nothing", `{}`, 422, []string{"price", "quantity"}},
		{"no amount nor currency", `{"price":{},"quantity":1}`, 422, []string{"price.amount", "price.currency"}},
		{"negative amount", `{"price":{"amount":-1,"currency":"EUR"},"quantity":1}`, 422, []string{"price.amount"}},
		{"amount too high", `{"price":{"amount":1000000001,"currency":"EUR"},"quantity":1}`, 422, []string{"price.amount"}},
		{"lower-case currency", `{"price":{"amount":1,"currency":"eur"},"quantity":1}`, 422, []string{"price.currency"}},
		{"four-letter currency", `{"price":{"amount":1,"currency":"EURO"},"quantity":1}`, 422, []string{"price.currency"}},
		{"negative quantity", `{"price":{"amount":1,"currency":"EUR"},"quantity":-1}`, 422, []string{"quantity"}},
		{"quantity too high", `{"price":{"amount":1,"currency":"EUR"},"quantity":1000001}`, 422, []string{"quantity"}},
		{"quantity a string", `{"price":{"amount":1,"currency":"EUR"},"quantity":"1"}`, 400, nil},
		{"unknown field", `{"price":{"amount":1,"currency":"EUR"},"quantity":1,"colour":"red"}`, 400, nil},
		{"amount a fraction", `{"price":{"amount":1.5,"currency":"EUR"},"quantity":1}`, 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ := problem.TypeValidation
			if tc.status == 400 {
				typ = problem.TypeMalformed
			}
			resttest.WantProblem(t, s.do(http.MethodPut, path, tc.body), tc.status, typ, tc.fields...)
		})
	}
	resttest.WantProblem(t, s.do(http.MethodGet, path, ""), http.StatusNotFound, problem.TypeNotFound)
	resttest.WantProblem(t, s.do(http.MethodGet, "/inventory/nope", ""), http.StatusNotFound, problem.TypeNotFound)
	resttest.WantProblem(t, s.do(http.MethodPut, "/inventory/nope", tenEuros), http.StatusNotFound, problem.TypeNotFound)
}

func TestListPages(t *testing.T) {
	s := newServer(t, openSQLite(t))
	var want []string
	for range 3 {
		want = append(want, s.put(t, tenEuros))
	}
	var got []string
	target := "/inventory?limit=2"
	for target != "" {
		rec := s.do(http.MethodGet, target, "", "Authorization", "")
		page := resttest.Decode[struct {
			Items      []inventory.Item `json:"items"`
			NextCursor *string          `json:"next_cursor"`
		}](t, rec)
		for _, it := range page.Items {
			got = append(got, it.BookID)
		}
		target = ""
		if page.NextCursor != nil {
			target = "/inventory?limit=2&cursor=" + *page.NextCursor
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pages gave %v, want %v", got, want)
	}
	resttest.WantProblem(t, s.do(http.MethodGet, "/inventory?limit=0", ""), http.StatusBadRequest, problem.TypeMalformed)
	resttest.WantProblem(t, s.do(http.MethodGet, "/inventory?cursor=nope", ""), http.StatusBadRequest, problem.TypeMalformed)
}
