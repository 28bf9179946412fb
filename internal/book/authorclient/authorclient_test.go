package authorclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"folio/internal/book/authorclient"
	"folio/internal/platform/fault"
)

// TestExists: 200 is an author, 404 none; any other answer, or none, is the
// author service being unavailable, never a "no" that would refuse a valid book.
func TestExists(t *testing.T) {
	const known, unknown, broken = "0190a8a2-7b3c-7def-8123-000000000001", "0190a8a2-7b3c-7def-8123-000000000002", "0190a8a2-7b3c-7def-8123-000000000003"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/authors/" + known:
			w.Write([]byte(`{"id":"` + known + `"}`))
		case "/authors/" + unknown:
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	c := authorclient.New(srv.URL, srv.Client())
	ctx := context.Background()
	for _, tc := range []struct {
		id          string
		want        bool
		unavailable bool
	}{{known, true, false}, {unknown, false, false}, {broken, false, true}} {
		got, err := c.Exists(ctx, tc.id)
		if got != tc.want || (fault.KindOf(err) == fault.Unavailable) != tc.unavailable || (err != nil) != tc.unavailable {
			t.Errorf("Exists(%s) = %v, %v; want %v, unavailable %v", tc.id, got, err, tc.want, tc.unavailable)
		}
	}

	srv.Close()
	if _, err := c.Exists(ctx, known); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("author service gone: Exists error %v, want Unavailable", err)
	}
}
