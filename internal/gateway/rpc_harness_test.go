package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/authn"
	"folio/internal/platform/httpserver"
)

// bookRPC is an upstream that serves the book service's RPC contract (the
// generated folio.book.v1.BookService handler) the way the book service does
// (rpcapi.Routes): behind authn's interceptor, with the 1 MiB message limit,
// reflection v1 and v1alpha and grpc.health.v1, in the chassis, over HTTP/1.1 and
// h2c. Its books are kept in memory. The gateway's tests may not import the book
// service (internal/boundaries); e2e/grpc_gateway_test.go runs the real book
// program behind the real gateway. It records every request that reaches it.
type bookRPC struct {
	bookv1connect.UnimplementedBookServiceHandler
	url string

	mu    sync.Mutex
	books map[string]*bookv1.Book
	seen  []seenCall
}

// seenCall is a request as it reached the upstream.
type seenCall struct {
	path   string
	proto  string
	header http.Header
}

func newBookRPC(t testing.TB, jwksURL string) *bookRPC {
	t.Helper()
	b := &bookRPC{books: map[string]*bookv1.Book{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	verifier := authn.NewVerifier(authn.Config{JWKSURL: jwksURL, Issuer: "folio-auth", Audience: "folio"}, http.DefaultClient, log, reg)
	mux := http.NewServeMux()
	mux.Handle(bookv1connect.NewBookServiceHandler(b,
		connect.WithInterceptors(verifier.Interceptor(RPCAccess(ServiceBook))),
		connect.WithReadMaxBytes(httpserver.MaxBodyBytes)))
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(bookv1connect.BookServiceName)))
	reflector := grpcreflect.NewStaticReflector(bookv1connect.BookServiceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	chassis := httpserver.New(httpserver.Config{}, log, reg, mux, []byte("{}"), func(context.Context) error { return nil }).Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen = append(b.seen, seenCall{path: r.URL.Path, proto: r.Proto, header: r.Header.Clone()})
		b.mu.Unlock()
		chassis.ServeHTTP(w, r)
	}))
	srv.Config.Protocols = h2cProtocols()
	srv.Start()
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// calls returns the requests that reached the upstream so far.
func (b *bookRPC) calls() []seenCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenCall(nil), b.seen...)
}

func (b *bookRPC) GetBook(_ context.Context, req *bookv1.GetBookRequest) (*bookv1.GetBookResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bk, ok := b.books[req.GetId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no such book"))
	}
	return &bookv1.GetBookResponse{Book: proto.CloneOf(bk)}, nil
}

func (b *bookRPC) CreateBook(_ context.Context, req *bookv1.CreateBookRequest) (*bookv1.CreateBookResponse, error) {
	in := req.GetBook()
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := &bookv1.Book{Id: fmt.Sprintf("book-%d", len(b.books)+1), Title: in.GetTitle(), AuthorId: in.GetAuthorId(),
		Genre: in.GetGenre(), Version: 1}
	b.books[bk.Id] = bk
	return &bookv1.CreateBookResponse{Book: proto.CloneOf(bk)}, nil
}

func (b *bookRPC) ListBooks(_ context.Context, _ *bookv1.ListBooksRequest) (*bookv1.ListBooksResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := &bookv1.ListBooksResponse{}
	for _, bk := range b.books {
		out.Books = append(out.Books, proto.CloneOf(bk))
	}
	return out, nil
}

// rpcHarness is the gateway in front of a bookRPC upstream (its book service).
type rpcHarness struct {
	*harness
	book *bookRPC
}

// newRPCHarness starts a gateway whose book service is a bookRPC that trusts the
// gateway's token issuer, unless mutate changes the configuration.
func newRPCHarness(t testing.TB, mutate func(*Config)) *rpcHarness {
	t.Helper()
	var book *bookRPC
	h := newHarness(t, func(c *Config) {
		book = newBookRPC(t, c.JWKSURL)
		c.Instances[ServiceBook] = []string{book.url}
		if mutate != nil {
			mutate(c)
		}
	})
	return &rpcHarness{harness: h, book: book}
}

// tokenKey carries the token a test client call sends.
type tokenKey struct{}

// withToken makes the calls of a bookClient made with ctx send token ("" sends
// none).
func withToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

func tokenOf(ctx context.Context) string {
	s, _ := ctx.Value(tokenKey{}).(string)
	return s
}

// bookClient is one way of calling the BookService. Its errors carry the code the
// client was told (connect.CodeOf).
type bookClient struct {
	name string
	bookv1connect.BookServiceClient
}

// clients are the BookService clients through the gateway at base: grpc-go, and
// Connect's own in the gRPC (h2c), gRPC-Web and Connect protocols (HTTP/1.1),
// the last in protobuf and in JSON.
func clients(t testing.TB, base string) []bookClient {
	t.Helper()
	h2c := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
	t.Cleanup(h2c.CloseIdleConnections)
	bearer := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if tok := tokenOf(ctx); tok != "" {
				req.Header().Set("Authorization", "Bearer "+tok)
			}
			return next(ctx, req)
		}
	}))
	return []bookClient{
		{"grpc-go", grpcBookClient{conn: grpcConn(t, base)}},
		{"connect-grpc", bookv1connect.NewBookServiceClient(h2c, base, connect.WithGRPC(), bearer)},
		{"connect-grpc-web", bookv1connect.NewBookServiceClient(http.DefaultClient, base, connect.WithGRPCWeb(), bearer)},
		{"connect", bookv1connect.NewBookServiceClient(http.DefaultClient, base, bearer)},
		{"connect-json", bookv1connect.NewBookServiceClient(http.DefaultClient, base, connect.WithProtoJSON(), bearer)},
	}
}

func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// grpcConn is a grpc-go connection to the server at base, without TLS.
func grpcConn(t testing.TB, base string) *grpc.ClientConn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// grpcBookClient calls the BookService with grpc-go (the contract has no grpc-go
// stubs generated: Invoke with the procedure is what they would do).
type grpcBookClient struct{ conn *grpc.ClientConn }

func (c grpcBookClient) invoke(ctx context.Context, procedure string, req, resp proto.Message) error {
	if tok := tokenOf(ctx); tok != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	if err := c.conn.Invoke(ctx, procedure, req, resp); err != nil {
		st := status.Convert(err)
		return connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
	}
	return nil
}

func (c grpcBookClient) GetBook(ctx context.Context, req *bookv1.GetBookRequest) (*bookv1.GetBookResponse, error) {
	var resp bookv1.GetBookResponse
	return &resp, c.invoke(ctx, bookv1connect.BookServiceGetBookProcedure, req, &resp)
}

func (c grpcBookClient) ListBooks(ctx context.Context, req *bookv1.ListBooksRequest) (*bookv1.ListBooksResponse, error) {
	var resp bookv1.ListBooksResponse
	return &resp, c.invoke(ctx, bookv1connect.BookServiceListBooksProcedure, req, &resp)
}

func (c grpcBookClient) CreateBook(ctx context.Context, req *bookv1.CreateBookRequest) (*bookv1.CreateBookResponse, error) {
	var resp bookv1.CreateBookResponse
	return &resp, c.invoke(ctx, bookv1connect.BookServiceCreateBookProcedure, req, &resp)
}

func (c grpcBookClient) UpdateBook(ctx context.Context, req *bookv1.UpdateBookRequest) (*bookv1.UpdateBookResponse, error) {
	var resp bookv1.UpdateBookResponse
	return &resp, c.invoke(ctx, bookv1connect.BookServiceUpdateBookProcedure, req, &resp)
}

func (c grpcBookClient) DeleteBook(ctx context.Context, req *bookv1.DeleteBookRequest) (*bookv1.DeleteBookResponse, error) {
	var resp bookv1.DeleteBookResponse
	return &resp, c.invoke(ctx, bookv1connect.BookServiceDeleteBookProcedure, req, &resp)
}

// wantCode fails unless err carries code (nil for CodeOK).
func wantCode(t testing.TB, what string, err error, code connect.Code) {
	t.Helper()
	if code == 0 {
		if err != nil {
			t.Fatalf("%s: %v, want success", what, err)
		}
		return
	}
	if got := connect.CodeOf(err); err == nil || got != code {
		t.Fatalf("%s: %v (code %v), want %v", what, err, connect.CodeOf(err), code)
	}
}

func ptr[T any](v T) *T { return &v }
