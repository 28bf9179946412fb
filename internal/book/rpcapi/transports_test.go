package rpcapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strconv"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/book/httpapi"
	"folio/internal/book/rpcapi"
	"folio/internal/book/sqlstore"
	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/logging"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/problem"
	"folio/internal/platform/rpcfault"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// service is the book service wired as cmd/book does, REST and RPC on one port,
// served over a real listener that speaks HTTP/1.1 and h2c.
type service struct {
	url     string
	authors *booktest.Authors
	iss     *authntest.Issuer
}

func newService(t *testing.T, db *sqldb.DB) *service {
	t.Helper()
	log := logging.New(io.Discard, "book", "json", "info")
	outboxtest.Migrate(t, db)
	authors := booktest.NewAuthors(booktest.AuthorA, booktest.AuthorB)
	store := sqlstore.New(outbox.NewWriter(db, nil))
	svc := book.NewService(store, book.NewAuthorDirectory(store, authors, log))
	keys := idempotency.New(db, log)
	iss := authntest.New(t)
	reg := metrics.NewRegistry()
	verifier := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, http.DefaultClient, log, reg)
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, keys, verifier)
	rpcapi.Routes(mux, svc, keys, verifier, db.PingContext)
	srv := httptest.NewUnstartedServer(httpserver.New(httpserver.Config{}, log, reg, mux, httpapi.OpenAPI, db.PingContext).Handler())
	srv.Config.Protocols = h2c()
	srv.Start()
	t.Cleanup(srv.Close)
	return &service{url: srv.URL, authors: authors, iss: iss}
}

// h2c is HTTP/1.1 and HTTP/2 without TLS, as the chassis serves.
func h2c() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// transport is one way of calling the book service. Its errors are *fault.Error
// rebuilt from the answer: the kind and the fields the client was told.
type transport interface {
	Create(ctx context.Context, token string, in book.Input, key string) (book.Book, error)
	Get(ctx context.Context, token, id string) (book.Book, error)
	List(ctx context.Context, token, genre string, limit int) ([]book.Book, error)
	Replace(ctx context.Context, token, id string, in book.Input, expected *int) (book.Book, error)
	Delete(ctx context.Context, token, id string, expected *int) error
}

// rest calls the REST API.
type rest struct{ base string }

func (c rest) do(ctx context.Context, token, method, path string, body any, header ...string) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", authntest.Bearer(token))
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode >= 300 {
		return resp, b, restFault(resp.StatusCode, b)
	}
	return resp, b, nil
}

// restFault is the fault a REST client acts on: its kind from the status.
func restFault(status int, body []byte) error {
	kinds := map[int]fault.Kind{400: fault.Malformed, 422: fault.Invalid, 404: fault.NotFound, 409: fault.Conflict,
		412: fault.PreconditionFailed, 503: fault.Unavailable, 401: fault.Unauthorized, 403: fault.Forbidden}
	var p problem.Problem
	_ = json.Unmarshal(body, &p)
	return &fault.Error{Kind: kinds[status], Message: fmt.Sprintf("%d %s", status, p.Detail), Fields: p.Errors}
}

func (c rest) Create(ctx context.Context, token string, in book.Input, key string) (book.Book, error) {
	var h []string
	if key != "" {
		h = []string{"Idempotency-Key", key}
	}
	_, body, err := c.do(ctx, token, http.MethodPost, "/books", in, h...)
	return decode(body, err)
}

func (c rest) Get(ctx context.Context, token, id string) (book.Book, error) {
	_, body, err := c.do(ctx, token, http.MethodGet, "/books/"+id, nil)
	return decode(body, err)
}

func (c rest) List(ctx context.Context, token, genre string, limit int) ([]book.Book, error) {
	_, body, err := c.do(ctx, token, http.MethodGet, "/books?genre="+url.QueryEscape(genre)+"&limit="+strconv.Itoa(limit), nil)
	if err != nil {
		return nil, err
	}
	var page struct{ Items []book.Book }
	return page.Items, json.Unmarshal(body, &page)
}

func ifMatch(expected *int) []string {
	if expected == nil {
		return nil
	}
	return []string{"If-Match", `"` + strconv.Itoa(*expected) + `"`}
}

func (c rest) Replace(ctx context.Context, token, id string, in book.Input, expected *int) (book.Book, error) {
	_, body, err := c.do(ctx, token, http.MethodPut, "/books/"+id, in, ifMatch(expected)...)
	return decode(body, err)
}

func (c rest) Delete(ctx context.Context, token, id string, expected *int) error {
	_, _, err := c.do(ctx, token, http.MethodDelete, "/books/"+id, nil, ifMatch(expected)...)
	return err
}

func decode(body []byte, err error) (book.Book, error) {
	if err != nil {
		return book.Book{}, err
	}
	var b book.Book
	return b, json.Unmarshal(body, &b)
}

// rpc calls the RPC API with a generated client, over gRPC or Connect.
type rpc struct {
	client bookv1connect.BookServiceClient
}

func newRPC(base string, opts ...connect.ClientOption) rpc {
	tr := &http.Transport{Protocols: &http.Protocols{}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return rpc{client: bookv1connect.NewBookServiceClient(&http.Client{Transport: tr}, base, opts...)}
}

func (c rpc) ctx(ctx context.Context, token string) context.Context {
	ctx, call := connect.NewClientContext(ctx)
	if token != "" {
		call.RequestHeader().Set("Authorization", authntest.Bearer(token))
	}
	return ctx
}

// rpcFault is the fault a client of the RPC API acts on: its kind from the code,
// told apart by ErrorInfo where codes are shared, its fields from BadRequest.
func rpcFault(err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	kinds := map[connect.Code]fault.Kind{connect.CodeNotFound: fault.NotFound, connect.CodeAlreadyExists: fault.Conflict,
		connect.CodeFailedPrecondition: fault.PreconditionFailed, connect.CodeUnavailable: fault.Unavailable,
		connect.CodeUnauthenticated: fault.Unauthorized, connect.CodePermissionDenied: fault.Forbidden}
	fe := &fault.Error{Kind: kinds[ce.Code()], Message: ce.Code().String() + " " + ce.Message()}
	for _, d := range ce.Details() {
		switch v, _ := d.Value(); v := v.(type) {
		case *errdetails.ErrorInfo:
			if ce.Code() == connect.CodeInvalidArgument && v.GetDomain() == rpcfault.Domain {
				fe.Kind = map[string]fault.Kind{"MALFORMED": fault.Malformed, "INVALID": fault.Invalid}[v.GetReason()]
			}
		case *errdetails.BadRequest:
			for _, f := range v.GetFieldViolations() {
				fe.Fields = append(fe.Fields, fault.FieldError{Field: f.GetField(), Message: f.GetDescription()})
			}
		}
	}
	return fe
}

func fromPB(b *bookv1.Book) book.Book {
	out := book.Book{ID: b.GetId(), Title: b.GetTitle(), AuthorID: b.GetAuthorId(), Genre: b.GetGenre(), ISBN: b.Isbn,
		Version: int(b.GetVersion()), CreatedAt: b.GetCreateTime().AsTime(), UpdatedAt: b.GetUpdateTime().AsTime()}
	if b.PublishedYear != nil {
		y := int(*b.PublishedYear)
		out.PublishedYear = &y
	}
	return out
}

func toPB(in book.Input) *bookv1.BookInput {
	out := &bookv1.BookInput{Title: in.Title, AuthorId: in.AuthorID, Genre: in.Genre, Isbn: in.ISBN}
	if in.PublishedYear != nil {
		y := int32(*in.PublishedYear)
		out.PublishedYear = &y
	}
	return out
}

func version(expected *int) *int64 {
	if expected == nil {
		return nil
	}
	v := int64(*expected)
	return &v
}

func (c rpc) Create(ctx context.Context, token string, in book.Input, key string) (book.Book, error) {
	resp, err := c.client.CreateBook(c.ctx(ctx, token), &bookv1.CreateBookRequest{Book: toPB(in), IdempotencyKey: key})
	if err != nil {
		return book.Book{}, rpcFault(err)
	}
	return fromPB(resp.GetBook()), nil
}

func (c rpc) Get(ctx context.Context, token, id string) (book.Book, error) {
	resp, err := c.client.GetBook(c.ctx(ctx, token), &bookv1.GetBookRequest{Id: id})
	if err != nil {
		return book.Book{}, rpcFault(err)
	}
	return fromPB(resp.GetBook()), nil
}

func (c rpc) List(ctx context.Context, token, genre string, limit int) ([]book.Book, error) {
	resp, err := c.client.ListBooks(c.ctx(ctx, token), &bookv1.ListBooksRequest{Genre: genre, PageSize: int32(limit)})
	if err != nil {
		return nil, rpcFault(err)
	}
	var out []book.Book
	for _, b := range resp.GetBooks() {
		out = append(out, fromPB(b))
	}
	return out, nil
}

func (c rpc) Replace(ctx context.Context, token, id string, in book.Input, expected *int) (book.Book, error) {
	resp, err := c.client.UpdateBook(c.ctx(ctx, token), &bookv1.UpdateBookRequest{Id: id, Book: toPB(in), ExpectedVersion: version(expected)})
	if err != nil {
		return book.Book{}, rpcFault(err)
	}
	return fromPB(resp.GetBook()), nil
}

func (c rpc) Delete(ctx context.Context, token, id string, expected *int) error {
	_, err := c.client.DeleteBook(c.ctx(ctx, token), &bookv1.DeleteBookRequest{Id: id, ExpectedVersion: version(expected)})
	return rpcFault(err)
}

// forEachTransport runs test against a new book service over each SQL engine,
// through REST, gRPC and Connect.
func forEachTransport(t *testing.T, test func(t *testing.T, s *service, c transport)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newService(t, db)
		for name, c := range map[string]transport{
			"rest":    rest{base: s.url},
			"grpc":    newRPC(s.url, connect.WithGRPC()),
			"connect": newRPC(s.url),
		} {
			t.Run(name, func(t *testing.T) { test(t, s, c) })
		}
	})
}

func input(genre string, edits ...func(*book.Input)) book.Input {
	in := book.Input{Title: booktest.Ptr("A Book"), AuthorID: booktest.Ptr(booktest.AuthorA), Genre: booktest.Ptr(genre)}
	for _, e := range edits {
		e(&in)
	}
	return in
}

// wantFault fails unless err is of kind and names exactly the fields.
func wantFault(t *testing.T, what string, err error, kind fault.Kind, fields ...string) {
	t.Helper()
	if kind == fault.Internal {
		if err != nil {
			t.Errorf("%s: %v, want success", what, err)
		}
		return
	}
	fe := fault.Classify(err)
	if fe == nil {
		t.Errorf("%s: %v, want %s", what, err, kind)
		return
	}
	var got []string
	for _, f := range fe.Fields {
		got = append(got, f.Field)
	}
	if fe.Kind != kind || fmt.Sprint(got) != fmt.Sprint(fields) && len(fields) > 0 {
		t.Errorf("%s: %s %v (%s), want %s %v", what, fe.Kind, got, fe.Message, kind, fields)
	}
}

// TestBookRulesOnEveryTransport holds REST and RPC to the contract's book rules:
// each request of the table gets the same outcome through each transport.
func TestBookRulesOnEveryTransport(t *testing.T) {
	forEachTransport(t, func(t *testing.T, s *service, c transport) {
		ctx := t.Context()
		editor := s.iss.Token("editor-1", authn.RoleEditor)
		reader := s.iss.Token("reader-1", authn.RoleReader)
		genre := "rules-" + path.Base(t.Name())
		isbn := "9780306406157"

		created, err := c.Create(ctx, editor, input(genre, func(in *book.Input) { in.ISBN = &isbn }), "")
		wantFault(t, "a valid book", err, fault.Internal)
		if created.Version != 1 || created.ID == "" || created.Title != "A Book" {
			t.Fatalf("created %+v, want version 1 with an id", created)
		}

		for _, tc := range []struct {
			name   string
			in     book.Input
			kind   fault.Kind
			fields []string
		}{
			{"no title", input(genre, func(in *book.Input) { in.Title = nil }), fault.Invalid, []string{"title"}},
			{"blank title", input(genre, func(in *book.Input) { in.Title = booktest.Ptr("  \u200b ") }), fault.Invalid, []string{"title"}},
			{"long title", input(genre, func(in *book.Input) { in.Title = booktest.Ptr(string(bytes.Repeat([]byte("x"), book.MaxTitle+1))) }), fault.Invalid, []string{"title"}},
			{"genre not a slug", input("Science Fiction"), fault.Invalid, []string{"genre"}},
			{"isbn checksum", input(genre, func(in *book.Input) { in.ISBN = booktest.Ptr("9780306406158") }), fault.Invalid, []string{"isbn"}},
			{"year in the future", input(genre, func(in *book.Input) { in.PublishedYear = booktest.Ptr(99999) }), fault.Invalid, []string{"published_year"}},
			{"unknown author", input(genre, func(in *book.Input) { in.AuthorID = booktest.Ptr(booktest.AbsentAuthor) }), fault.Invalid, []string{"author_id"}},
			{"several broken fields", input("X", func(in *book.Input) { in.Title = nil }), fault.Invalid, []string{"title", "genre"}},
			{"isbn taken", input(genre, func(in *book.Input) { in.ISBN = &isbn }), fault.Conflict, nil},
		} {
			_, err := c.Create(ctx, editor, tc.in, "")
			wantFault(t, "create: "+tc.name, err, tc.kind, tc.fields...)
		}

		_, err = c.Create(ctx, "", input(genre), "")
		wantFault(t, "create without a token", err, fault.Unauthorized)
		_, err = c.Create(ctx, reader, input(genre), "")
		wantFault(t, "create as a reader", err, fault.Forbidden)
		_, err = c.Create(ctx, "not-a-token", input(genre), "")
		wantFault(t, "create with a forged token", err, fault.Unauthorized)
		_, err = c.Get(ctx, "not-a-token", created.ID)
		wantFault(t, "read with a forged token", err, fault.Unauthorized)

		got, err := c.Get(ctx, "", created.ID)
		wantFault(t, "read without a token", err, fault.Internal)
		if d := booktest.SameBook(got, created); d != "" {
			t.Errorf("get: %s", d)
		}
		_, err = c.Get(ctx, "", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
		wantFault(t, "get a missing book", err, fault.NotFound)
		_, err = c.Get(ctx, "", "../etc/passwd")
		wantFault(t, "get a malformed id", err, fault.NotFound)

		listed, err := c.List(ctx, "", genre, 10)
		wantFault(t, "list the genre", err, fault.Internal)
		if len(listed) != 1 || listed[0].ID != created.ID {
			t.Errorf("list: %v, want the one book", booktest.IDs(listed))
		}
		_, err = c.List(ctx, "", "Not A Slug", 10)
		wantFault(t, "list a bad genre", err, fault.Malformed, "genre")
		_, err = c.List(ctx, "", genre, 101)
		wantFault(t, "list 101", err, fault.Malformed)

		stale := 7
		_, err = c.Replace(ctx, editor, created.ID, input(genre), &stale)
		wantFault(t, "replace at a stale version", err, fault.PreconditionFailed)
		_, err = c.Replace(ctx, editor, created.ID, input("X"), nil)
		wantFault(t, "replace breaking a rule", err, fault.Invalid, "genre")
		_, err = c.Replace(ctx, reader, created.ID, input(genre), nil)
		wantFault(t, "replace as a reader", err, fault.Forbidden)
		one := 1
		replaced, err := c.Replace(ctx, editor, created.ID, input(genre, func(in *book.Input) { in.Title = booktest.Ptr("Renamed") }), &one)
		wantFault(t, "replace at the current version", err, fault.Internal)
		if replaced.Version != 2 || replaced.Title != "Renamed" || replaced.ISBN != nil {
			t.Errorf("replaced %+v, want version 2, Renamed, no isbn (a replacement sets every field)", replaced)
		}

		s.authors.SetDown(true)
		_, err = c.Create(ctx, editor, input(genre, func(in *book.Input) { in.AuthorID = booktest.Ptr(booktest.AbsentAuthor) }), "")
		wantFault(t, "create while the author service is down", err, fault.Unavailable)
		s.authors.SetDown(false)

		err = c.Delete(ctx, editor, created.ID, &one)
		wantFault(t, "delete at a stale version", err, fault.PreconditionFailed)
		err = c.Delete(ctx, reader, created.ID, nil)
		wantFault(t, "delete as a reader", err, fault.Forbidden)
		two := 2
		wantFault(t, "delete at the current version", c.Delete(ctx, editor, created.ID, &two), fault.Internal)
		_, err = c.Get(ctx, "", created.ID)
		wantFault(t, "get a deleted book", err, fault.NotFound)
		wantFault(t, "delete a deleted book", c.Delete(ctx, editor, created.ID, nil), fault.NotFound)
	})
}

// TestIdempotentCreateOnEveryTransport: a repeated create with the same key gets
// the first book, and a repeat with another book is refused, on each transport.
func TestIdempotentCreateOnEveryTransport(t *testing.T) {
	forEachTransport(t, func(t *testing.T, s *service, c transport) {
		ctx := t.Context()
		editor := s.iss.Token("editor-1", authn.RoleEditor)
		key := "key-" + t.Name()
		genre := "idem-" + path.Base(t.Name())
		first, err := c.Create(ctx, editor, input(genre), key)
		wantFault(t, "first create", err, fault.Internal)
		again, err := c.Create(ctx, editor, input(genre), key)
		wantFault(t, "repeat", err, fault.Internal)
		if d := booktest.SameBook(again, first); d != "" {
			t.Errorf("the repeat got another book: %s", d)
		}
		_, err = c.Create(ctx, editor, input(genre, func(in *book.Input) { in.Title = booktest.Ptr("Other") }), key)
		wantFault(t, "the key with another book", err, fault.Invalid)
		// Another caller's key of the same name is another key.
		other, err := c.Create(ctx, s.iss.Token("editor-2", authn.RoleEditor), input(genre), key)
		wantFault(t, "another caller's key", err, fault.Internal)
		if other.ID == first.ID {
			t.Error("another caller's create with the same key got the first caller's book")
		}
		listed, err := c.List(ctx, "", genre, 100)
		wantFault(t, "list", err, fault.Internal)
		if len(listed) != 2 {
			t.Errorf("%d books stored, want 2 (one per caller)", len(listed))
		}
	})
}

// TestUpdateMask: an update that names fields changes only those, an empty mask
// replaces the book, and a mask naming a field that cannot be written is refused.
func TestUpdateMask(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newService(t, db)
		c := newRPC(s.url, connect.WithGRPC())
		ctx := t.Context()
		editor := s.iss.Token("editor-1", authn.RoleEditor)
		isbn := "9780306406157"
		b, err := c.Create(ctx, editor, input("masks", func(in *book.Input) { in.ISBN = &isbn; in.PublishedYear = booktest.Ptr(1999) }), "")
		wantFault(t, "create", err, fault.Internal)

		resp, err := c.client.UpdateBook(c.ctx(ctx, editor), &bookv1.UpdateBookRequest{Id: b.ID,
			Book: &bookv1.BookInput{Title: booktest.Ptr("Only The Title")}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"title"}}})
		wantFault(t, "update the title", rpcFault(err), fault.Internal)
		got := fromPB(resp.GetBook())
		if got.Title != "Only The Title" || got.ISBN == nil || *got.ISBN != isbn || got.PublishedYear == nil || got.Genre != "masks" {
			t.Errorf("after a title-only update: %+v, want the other fields kept", got)
		}
		resp, err = c.client.UpdateBook(c.ctx(ctx, editor), &bookv1.UpdateBookRequest{Id: b.ID,
			Book: &bookv1.BookInput{}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"isbn"}}})
		wantFault(t, "clear the isbn", rpcFault(err), fault.Internal)
		if resp.GetBook().Isbn != nil {
			t.Errorf("isbn %q after a mask naming it with no value, want it cleared", resp.GetBook().GetIsbn())
		}
		_, err = c.client.UpdateBook(c.ctx(ctx, editor), &bookv1.UpdateBookRequest{Id: b.ID,
			Book: &bookv1.BookInput{}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"version"}}})
		wantFault(t, "a mask naming version", rpcFault(err), fault.Malformed, "update_mask")
		_, err = c.client.UpdateBook(c.ctx(ctx, editor), &bookv1.UpdateBookRequest{Id: b.ID,
			Book: &bookv1.BookInput{}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"title"}}})
		wantFault(t, "a mask clearing a required field", rpcFault(err), fault.Invalid, "title")
	})
}
