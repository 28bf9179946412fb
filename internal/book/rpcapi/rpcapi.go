// Package rpcapi is the book service's RPC API, folio.book.v1.BookService
// (proto/folio/book/v1/book.proto), served with gRPC, gRPC-Web and Connect on the
// service's port beside the REST API, with the standard health and reflection
// services. Its handlers call the same book.Service as the REST handlers, so every
// rule, check and error is the same on both transports.
package rpcapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"folio/internal/book"
	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/authn"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/logging"
	"folio/internal/platform/paging"
	"folio/internal/platform/rpcfault"
)

// Access is what each procedure needs, as the REST routes: reads are public,
// writes need an editor's or an admin's token.
var Access = map[string]authn.Access{
	bookv1connect.BookServiceGetBookProcedure:    authn.Public,
	bookv1connect.BookServiceListBooksProcedure:  authn.Public,
	bookv1connect.BookServiceCreateBookProcedure: authn.Editor,
	bookv1connect.BookServiceUpdateBookProcedure: authn.Editor,
	bookv1connect.BookServiceDeleteBookProcedure: authn.Editor,
}

// Routes registers the BookService, the grpc.health.v1 health service (SERVING
// while ready answers nil) and server reflection on mux. Calls are checked by v
// as the REST routes are.
func Routes(mux *http.ServeMux, svc *book.Service, keys *idempotency.Keys, v *authn.Verifier, ready func(context.Context) error) {
	kept, _ := lru.New[string, *bookv1.ListBooksResponse](maxKeptListings) // errs only on a size below 1
	_, h := bookv1connect.NewBookServiceHandler(&server{svc: svc, keys: keys, kept: kept},
		connect.WithInterceptors(v.Interceptor(Access)),
		connect.WithReadMaxBytes(httpserver.MaxBodyBytes),
		// A small answer costs more CPU to gzip than its bytes cost to send:
		// one book was three times the CPU of its REST answer with gzip on.
		connect.WithCompressMinBytes(compressMinBytes))
	// A pattern per procedure, so that metrics, logs and traces name each one;
	// another path under the service is the mux's 404.
	for procedure := range Access {
		mux.Handle(procedure, h)
	}
	mux.Handle(grpchealth.NewHandler(readiness(ready)))
	reflector := grpcreflect.NewStaticReflector(bookv1connect.BookServiceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
}

// readiness answers health checks of the whole server ("") and of the BookService.
type readiness func(context.Context) error

func (ready readiness) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && req.Service != bookv1connect.BookServiceName {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no service %q here", req.Service))
	}
	if err := ready(ctx); err != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// compressMinBytes is the smallest answer gzipped for a client that accepts it.
const compressMinBytes = 4 << 10

// maxKeptListings bounds the genre listings kept, as the REST API's.
const maxKeptListings = 512

type server struct {
	svc  *book.Service
	keys *idempotency.Keys
	// kept holds the answers to listings narrowed to a genre by ListingKey, each
	// served again while its etag, which names the genre's version, is current.
	kept *lru.Cache[string, *bookv1.ListBooksResponse]
}

var _ bookv1connect.BookServiceHandler = (*server)(nil)

func (s *server) GetBook(ctx context.Context, req *bookv1.GetBookRequest) (*bookv1.GetBookResponse, error) {
	b, err := s.svc.Get(ctx, req.GetId())
	if err != nil {
		return nil, status(ctx, err)
	}
	return &bookv1.GetBookResponse{Book: toProto(b)}, nil
}

// ListBooks serves a listing as GET /books does, the same page sizes, tokens and
// etags: a listing narrowed to a genre answers not_modified, without reading a
// book, to an if_none_match that names its current etag.
func (s *server) ListBooks(ctx context.Context, req *bookv1.ListBooksRequest) (*bookv1.ListBooksResponse, error) {
	page, err := pageOf(req)
	if err != nil {
		return nil, status(ctx, err)
	}
	f := book.Filter{Genre: req.GetGenre(), AuthorID: req.GetAuthorId()}
	if f.Genre == "" {
		books, err := s.svc.List(ctx, f, page)
		if err != nil {
			return nil, status(ctx, err)
		}
		return listing(books, ""), nil
	}
	// Read before the listing, so that the listing is at least as new as its tag.
	v, err := s.svc.GenreVersion(ctx, f.Genre)
	if err != nil {
		return nil, status(ctx, err)
	}
	key := book.ListingKey(f, page)
	tag := book.GenreListingTag(v, key)
	if req.GetIfNoneMatch() == tag {
		return &bookv1.ListBooksResponse{Etag: tag, NotModified: true}, nil
	}
	if l, ok := s.kept.Get(key); ok && l.GetEtag() == tag {
		return l, nil
	}
	books, err := s.svc.List(ctx, f, page)
	if err != nil {
		return nil, status(ctx, err)
	}
	l := listing(books, tag)
	s.kept.Add(key, l)
	return l, nil
}

// pageOf reads the paging fields of req as rest.ParsePage reads ?limit and ?cursor.
func pageOf(req *bookv1.ListBooksRequest) (paging.Request, error) {
	var errs fault.Fields
	p := paging.Request{Limit: int(req.GetPageSize())}
	switch {
	case p.Limit == 0:
		p.Limit = 20
	case p.Limit < 1 || p.Limit > 100:
		errs.Add("page_size", "must be an integer from 1 to 100")
	}
	if t := req.GetPageToken(); t != "" {
		after, err := paging.ParseCursor(t)
		if err != nil {
			errs.Add("page_token", "was not issued by this service")
		}
		p.After = after
	}
	if len(errs) > 0 {
		return p, &fault.Error{Kind: fault.Malformed, Message: "a paging field is not valid", Fields: errs}
	}
	return p, nil
}

func listing(p paging.Page[book.Book], etag string) *bookv1.ListBooksResponse {
	out := &bookv1.ListBooksResponse{Books: make([]*bookv1.Book, len(p.Items)), Etag: etag}
	for i, b := range p.Items {
		out.Books[i] = toProto(b)
	}
	if p.Next != "" {
		out.NextPageToken = paging.Cursor(p.Next)
	}
	return out
}

// CreateBook stores a book. A request with an idempotency_key is answered once per
// key and caller; a repeat with the same book gets the first answer, whether the
// first is still running (ALREADY_EXISTS then, as REST's 409), finished, or was
// cut short by a crash after its commit.
func (s *server) CreateBook(ctx context.Context, req *bookv1.CreateBookRequest) (*bookv1.CreateBookResponse, error) {
	in := fromProto(req.GetBook())
	key := req.GetIdempotencyKey()
	if key == "" {
		b, err := s.svc.Create(ctx, in)
		if err != nil {
			return nil, status(ctx, err)
		}
		return &bookv1.CreateBookResponse{Book: toProto(b)}, nil
	}
	// The request's identity is its book, encoded the same way every time.
	request, err := proto.MarshalOptions{Deterministic: true}.Marshal(req.GetBook())
	if err != nil {
		return nil, status(ctx, err)
	}
	var created book.Book
	replayed, err := s.keys.Do(ctx, bookv1connect.BookServiceCreateBookProcedure, key, "idempotency_key", request,
		func(ctx context.Context) error {
			b, err := s.svc.Create(idempotency.WithAnswer(ctx, storedAnswer), in)
			created = b
			return err
		})
	if err != nil {
		return nil, status(ctx, err)
	}
	if replayed != nil {
		if err := json.Unmarshal(replayed, &created); err != nil {
			return nil, status(ctx, fmt.Errorf("read the stored answer of an idempotent create: %w", err))
		}
	}
	return &bookv1.CreateBookResponse{Book: toProto(created)}, nil
}

// storedAnswer is the answer an idempotency key keeps: the created book as JSON,
// which a repeat decodes again.
func storedAnswer(w http.ResponseWriter, b book.Book) {
	_ = json.NewEncoder(w).Encode(b)
}

// writable are the paths an update_mask may name.
var writable = []string{"title", "author_id", "genre", "isbn", "published_year"}

// UpdateBook sets every writable field of the book from req.book, or only those
// update_mask names (then the others keep their current values). As PUT and
// PATCH, the change applies to the book as it is at each attempt of the update.
func (s *server) UpdateBook(ctx context.Context, req *bookv1.UpdateBookRequest) (*bookv1.UpdateBookResponse, error) {
	paths := req.GetUpdateMask().GetPaths()
	for _, p := range paths {
		if !slices.Contains(writable, p) {
			return nil, status(ctx, &fault.Error{Kind: fault.Malformed, Message: "update_mask names a field that cannot be written",
				Fields: []fault.FieldError{{Field: "update_mask", Message: strconv.Quote(p) + " is not one of title, author_id, genre, isbn, published_year"}}})
		}
	}
	in := fromProto(req.GetBook())
	b, err := s.svc.Update(ctx, req.GetId(), expect(req.ExpectedVersion), func(cur book.Book) (book.Input, error) {
		if len(paths) == 0 {
			return in, nil
		}
		next := cur.Input()
		for _, p := range paths {
			switch p {
			case "title":
				next.Title = in.Title
			case "author_id":
				next.AuthorID = in.AuthorID
			case "genre":
				next.Genre = in.Genre
			case "isbn":
				next.ISBN = in.ISBN
			case "published_year":
				next.PublishedYear = in.PublishedYear
			}
		}
		return next, nil
	})
	if err != nil {
		return nil, status(ctx, err)
	}
	return &bookv1.UpdateBookResponse{Book: toProto(b)}, nil
}

func (s *server) DeleteBook(ctx context.Context, req *bookv1.DeleteBookRequest) (*bookv1.DeleteBookResponse, error) {
	if err := s.svc.Delete(ctx, req.GetId(), expect(req.ExpectedVersion)); err != nil {
		return nil, status(ctx, err)
	}
	return &bookv1.DeleteBookResponse{}, nil
}

// expect is the check of an expected_version, REST's If-Match: none when unset.
func expect(want *int64) func(version int) error {
	return func(version int) error {
		if want == nil || *want == int64(version) {
			return nil
		}
		return fault.New(fault.PreconditionFailed, "the book is at version %d, not the expected %d", version, *want)
	}
}

// status is the RPC error for err, logged as the REST handlers log theirs.
func status(ctx context.Context, err error) error {
	return rpcfault.Status(ctx, logging.FromContext(ctx), err)
}

func toProto(b book.Book) *bookv1.Book {
	out := &bookv1.Book{Id: b.ID, Title: b.Title, AuthorId: b.AuthorID, Genre: b.Genre, Isbn: b.ISBN,
		Version: int64(b.Version), CreateTime: timestamppb.New(b.CreatedAt), UpdateTime: timestamppb.New(b.UpdatedAt)}
	if b.PublishedYear != nil {
		y := int32(*b.PublishedYear)
		out.PublishedYear = &y
	}
	return out
}

func fromProto(in *bookv1.BookInput) book.Input {
	out := book.Input{Title: in.Title, AuthorID: in.AuthorId, Genre: in.Genre, ISBN: in.Isbn}
	if in.PublishedYear != nil {
		y := int(*in.PublishedYear)
		out.PublishedYear = &y
	}
	return out
}
