package e2e

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"folio/internal/book/rpcapi"
	"folio/internal/gateway"
	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
)

// TestRPCThroughTheGateway calls the real book program's RPC API through the real
// gateway, as a grpc-go client, grpcurl (reflection) and Connect's clients would:
// reads need no token, writes an editor's, a bad token is refused even for a read,
// a book created over gRPC is served over REST, and with the book service gone a
// gRPC client reads UNAVAILABLE, not a 502 page.
func TestRPCThroughTheGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	iss := testIssuer(t)
	author, book := startPair(t, nil, nil)
	gw := startExtra(t, "gateway", anyAddr, slices.Concat(gatewayEnv(&service{addr: "127.0.0.1:1"}, author, []*service{book}), iss.Env())...)
	r := call(t, "POST", author.URL()+"/authors", map[string]any{"name": "Octavia E. Butler"}, "Authorization", editorAuth(t))
	expect(t, r, http.StatusCreated)
	authorID := r.json(t)["id"].(string)

	conn, err := grpc.NewClient(gw.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	as := func(auth string) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		if auth == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	reader := bearer(iss.Token("e2e-reader", authn.RoleReader))
	in := &bookv1.CreateBookRequest{Book: &bookv1.BookInput{Title: ptrTo("Kindred"), AuthorId: &authorID, Genre: ptrTo("sf")}}

	t.Run("grpc-go", func(t *testing.T) {
		var got bookv1.GetBookResponse
		err := conn.Invoke(as(""), bookv1connect.BookServiceGetBookProcedure, &bookv1.GetBookRequest{Id: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, &got)
		wantGRPC(t, "GetBook of a missing book without a token", err, codes.NotFound)

		var created bookv1.CreateBookResponse
		err = conn.Invoke(as(""), bookv1connect.BookServiceCreateBookProcedure, in, &created)
		wantGRPC(t, "CreateBook without a token", err, codes.Unauthenticated)
		err = conn.Invoke(as(reader), bookv1connect.BookServiceCreateBookProcedure, in, &created)
		wantGRPC(t, "CreateBook with a reader's token", err, codes.PermissionDenied)
		for name, tok := range map[string]string{
			"forged":  iss.Impostor().Token("mallory", authn.RoleAdmin),
			"expired": iss.TokenWith("eve", []string{authn.RoleAdmin}, func(c *authntest.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }),
		} {
			err = conn.Invoke(as(bearer(tok)), bookv1connect.BookServiceGetBookProcedure, &bookv1.GetBookRequest{Id: "x"}, &got)
			wantGRPC(t, "GetBook with a "+name+" token", err, codes.Unauthenticated)
		}

		err = conn.Invoke(as(editorAuth(t)), bookv1connect.BookServiceCreateBookProcedure, in, &created)
		wantGRPC(t, "CreateBook with an editor's token", err, codes.OK)
		id := created.GetBook().GetId()
		rest := call(t, "GET", gw.URL()+"/books/"+id, nil)
		expect(t, rest, http.StatusOK)
		if title := rest.json(t)["title"]; title != "Kindred" {
			t.Errorf("GET /books/%s through the gateway: title %v, want Kindred", id, title)
		}
		err = conn.Invoke(as(""), bookv1connect.BookServiceGetBookProcedure, &bookv1.GetBookRequest{Id: id}, &got)
		wantGRPC(t, "GetBook of the created book", err, codes.OK)
	})

	t.Run("connect", func(t *testing.T) {
		h2c := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
		t.Cleanup(h2c.CloseIdleConnections)
		for name, c := range map[string]bookv1connect.BookServiceClient{
			"connect":  bookv1connect.NewBookServiceClient(http.DefaultClient, gw.URL()),
			"grpc":     bookv1connect.NewBookServiceClient(h2c, gw.URL(), connect.WithGRPC()),
			"grpc-web": bookv1connect.NewBookServiceClient(http.DefaultClient, gw.URL(), connect.WithGRPCWeb()),
		} {
			list, err := c.ListBooks(t.Context(), &bookv1.ListBooksRequest{})
			if err != nil || len(list.GetBooks()) == 0 {
				t.Errorf("%s ListBooks without a token: %v, %d books", name, err, len(list.GetBooks()))
			}
			_, err = c.CreateBook(t.Context(), in)
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("%s CreateBook without a token: %v, want unauthenticated", name, err)
			}
		}
	})

	t.Run("reflection", func(t *testing.T) {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(as(""))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("reflection through the gateway: %v", err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !slices.Contains(names, bookv1connect.BookServiceName) {
			t.Errorf("reflection through the gateway lists %v, want %s", names, bookv1connect.BookServiceName)
		}
		_ = stream.CloseSend()
	})

	t.Run("book service down", func(t *testing.T) {
		book.kill()
		var got bookv1.GetBookResponse
		err := conn.Invoke(as(""), bookv1connect.BookServiceGetBookProcedure, &bookv1.GetBookRequest{Id: "x"}, &got)
		wantGRPC(t, "GetBook with the book service down", err, codes.Unavailable)
		// On the wire: a gRPC answer with grpc-status 14, not an HTTP error page.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, gw.URL()+bookv1connect.BookServiceGetBookProcedure,
			strings.NewReader("\x00\x00\x00\x00\x00"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := (&http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = resp.Body.Read(make([]byte, 1))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/grpc" || resp.Trailer.Get("Grpc-Status") != "14" {
			t.Errorf("gRPC with the book service down: %d %q, trailers %v; want 200 application/grpc with grpc-status 14",
				resp.StatusCode, resp.Header.Get("Content-Type"), resp.Trailer)
		}
	})
}

// TestRPCGatewayAccessAgreesWithTheBookService: the gateway keeps its own table of
// what each BookService procedure needs (it is released apart from the book
// service and does not build it in); it must ask what the book service asks.
func TestRPCGatewayAccessAgreesWithTheBookService(t *testing.T) {
	atGateway := gateway.RPCAccess(gateway.ServiceBook)
	maps.DeleteFunc(atGateway, func(procedure string, _ authn.Access) bool {
		return !strings.HasPrefix(procedure, "/"+bookv1connect.BookServiceName+"/")
	})
	if len(rpcapi.Access) == 0 {
		t.Fatal("the book service's access table is empty; the comparison would prove nothing")
	}
	if !maps.Equal(atGateway, rpcapi.Access) {
		t.Errorf("the gateway's BookService access %v, the book service's %v", atGateway, rpcapi.Access)
	}
}

// wantGRPC fails unless err has code (OK: nil).
func wantGRPC(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: %v (%s), want %s", what, err, got, code)
	}
}

// h2cOnly is HTTP/2 without TLS, with prior knowledge: what gRPC clients speak.
func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

func ptrTo[T any](v T) *T { return &v }
