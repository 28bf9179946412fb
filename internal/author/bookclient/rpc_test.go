package bookclient_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"folio/internal/author"
	"folio/internal/author/bookclient"
	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/id"
	"folio/internal/platform/logging"
	"folio/internal/platform/paging"
	"folio/internal/platform/resilient"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/rpcfault"
)

// rpcBooks is a book service's RPC API over a few books, answering as the real one
// does (its errors made by rpcfault, as the book service's are), with failures to
// inject.
type rpcBooks struct {
	bookv1connect.UnimplementedBookServiceHandler
	books []*bookv1.Book // by id

	mu        sync.Mutex
	failNext  int // the next calls answer UNAVAILABLE
	requests  []*bookv1.ListBooksRequest
	requestID []string
	accepts   []string // Grpc-Accept-Encoding of each call
}

func (s *rpcBooks) ListBooks(ctx context.Context, req *bookv1.ListBooksRequest) (*bookv1.ListBooksResponse, error) {
	s.mu.Lock()
	s.requests = append(s.requests, req)
	if call, ok := connect.CallInfoForHandlerContext(ctx); ok {
		s.requestID = append(s.requestID, call.RequestHeader().Get(httpserver.RequestIDHeader))
		s.accepts = append(s.accepts, call.RequestHeader().Get("Grpc-Accept-Encoding"))
	}
	fail := s.failNext > 0
	s.failNext--
	s.mu.Unlock()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if fail {
		return nil, rpcfault.Status(ctx, log, fault.New(fault.StorageUnavailable, "the database is full"))
	}
	if req.GetGenre() == "Not A Slug" {
		return nil, rpcfault.Status(ctx, log, &fault.Error{Kind: fault.Malformed, Message: "a filter is not valid",
			Fields: []fault.FieldError{{Field: "genre", Message: "must be a genre slug"}}})
	}
	const tag = `W/"g1-x"`
	if req.GetIfNoneMatch() == tag {
		return &bookv1.ListBooksResponse{Etag: tag, NotModified: true}, nil
	}
	after := ""
	if req.GetPageToken() != "" {
		after, _ = paging.ParseCursor(req.GetPageToken())
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 20
	}
	out := &bookv1.ListBooksResponse{Etag: tag}
	for _, b := range s.books {
		if b.GetId() > after && (req.GetGenre() == "" || b.GetGenre() == req.GetGenre()) {
			if len(out.Books) == size {
				out.NextPageToken = paging.Cursor(out.Books[len(out.Books)-1].GetId())
				break
			}
			out.Books = append(out.Books, b)
		}
	}
	return out, nil
}

// serveRPC serves books over h2c, as the book service does, and returns a client of it.
func serveRPC(t *testing.T, books *rpcBooks) *bookclient.RPC {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(bookv1connect.NewBookServiceHandler(books))
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.Protocols = &http.Protocols{}
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Start()
	t.Cleanup(ts.Close)
	return newRPCClient(t, ts.URL)
}

func newRPCClient(t *testing.T, url string) *bookclient.RPC {
	cfg := resilient.DefaultConfig("book")
	cfg.HTTP2 = true
	// A route, as every service's peer client has (chassis.PeerClient), here one
	// that sends each attempt where it was going.
	cfg.Route = func(rt http.RoundTripper) http.RoundTripper { return rt }
	return bookclient.NewRPC(url, resilient.NewClient(cfg, prometheus.NewRegistry()))
}

func TestRPCListBooks(t *testing.T) {
	created := time.Date(2026, 12, 3, 10, 0, 0, 123000, time.UTC)
	ids := []string{id.New(), id.New(), id.New(), id.New()} // in order
	isbn, year := "9780306406157", int32(1999)
	full := &bookv1.Book{Id: ids[0], Title: "Full", AuthorId: ids[3], Genre: "fantasy",
		Isbn: &isbn, PublishedYear: &year, Version: 3, CreateTime: timestamppb.New(created), UpdateTime: timestamppb.New(created.Add(time.Hour))}
	bare := &bookv1.Book{Id: ids[1], Title: "Bare", AuthorId: ids[3], Genre: "fantasy",
		Version: 1, CreateTime: timestamppb.New(created), UpdateTime: timestamppb.New(created)}
	other := &bookv1.Book{Id: ids[2], Title: "Other", AuthorId: ids[3], Genre: "poetry", Version: 1}
	books := &rpcBooks{books: []*bookv1.Book{full, bare, other}}
	c := serveRPC(t, books)
	ctx := logging.WithRequestID(t.Context(), "req-rpc-1")

	first, err := c.ListBooks(ctx, author.BookSearch{Genre: "fantasy", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := author.Book{ID: full.Id, Title: "Full", AuthorID: full.AuthorId, Genre: "fantasy", ISBN: &isbn,
		PublishedYear: func() *int { y := 1999; return &y }(), Version: 3, CreatedAt: created, UpdatedAt: created.Add(time.Hour)}
	if len(first.Items) != 1 || !sameAuthorBook(first.Items[0], want) {
		t.Fatalf("first page %+v, want %+v", first.Items, want)
	}
	if first.NextCursor == nil || first.ETag != `W/"g1-x"` {
		t.Fatalf("first page: next %v etag %q, want a next page and the etag", first.NextCursor, first.ETag)
	}
	second, err := c.ListBooks(ctx, author.BookSearch{Genre: "fantasy", Limit: 1, Cursor: *first.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Items) != 1 || second.Items[0].ID != bare.Id || second.Items[0].ISBN != nil || second.Items[0].PublishedYear != nil {
		t.Errorf("second page %+v, want the bare book with no isbn or year", second.Items)
	}
	if second.NextCursor != nil {
		t.Errorf("second page has a next cursor %q; it is the last", *second.NextCursor)
	}

	kept, err := c.ListBooks(ctx, author.BookSearch{Genre: "fantasy", IfNoneMatch: `W/"g1-x"`})
	if err != nil || !kept.NotModified || len(kept.Items) != 0 || kept.ETag != `W/"g1-x"` {
		t.Errorf("revalidation: %+v %v, want NotModified with the tag", kept, err)
	}

	_, err = c.ListBooks(ctx, author.BookSearch{Genre: "Not A Slug"})
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Malformed || len(fe.Fields) != 1 || fe.Fields[0].Field != "genre" {
		t.Errorf("a rejected filter: %v, want Malformed naming genre", err)
	}

	books.mu.Lock()
	for _, enc := range books.accepts {
		if strings.Contains(enc, "gzip") {
			t.Errorf("a call accepts %q: answers inside the cluster come uncompressed", enc)
		}
	}
	for _, id := range books.requestID {
		if id != "req-rpc-1" {
			t.Errorf("a call carried request id %q, want req-rpc-1", id)
		}
	}
	books.mu.Unlock()
}

// TestRPCListBooksRetriesAndFails: a read that meets UNAVAILABLE is tried again,
// as a GET is; a book service that stays unavailable, or cannot be reached, is
// Unavailable to the caller.
func TestRPCListBooksRetriesAndFails(t *testing.T) {
	books := &rpcBooks{books: []*bookv1.Book{{Id: id.New(), Genre: "fantasy", Version: 1}}, failNext: 2}
	c := serveRPC(t, books)
	got, err := c.ListBooks(t.Context(), author.BookSearch{Genre: "fantasy"})
	if err != nil || len(got.Items) != 1 {
		t.Fatalf("after two UNAVAILABLE answers: %+v %v, want the book (retried)", got, err)
	}
	if n := len(books.requests); n != 3 {
		t.Errorf("%d calls, want 3 (two failed, one retry each)", n)
	}

	books.failNext = 10
	if _, err := c.ListBooks(t.Context(), author.BookSearch{Genre: "fantasy"}); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("a book service that stays unavailable: %v, want Unavailable", err)
	}
	if _, err := newRPCClient(t, resttest.ClosedURL(t, "http")).ListBooks(t.Context(), author.BookSearch{}); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("a book service that cannot be reached: %v, want Unavailable", err)
	}
}

func sameAuthorBook(a, b author.Book) bool {
	return a.ID == b.ID && a.Title == b.Title && a.AuthorID == b.AuthorID && a.Genre == b.Genre &&
		(a.ISBN == nil) == (b.ISBN == nil) && (a.ISBN == nil || *a.ISBN == *b.ISBN) &&
		(a.PublishedYear == nil) == (b.PublishedYear == nil) && (a.PublishedYear == nil || *a.PublishedYear == *b.PublishedYear) &&
		a.Version == b.Version && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}
