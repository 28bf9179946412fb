package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionalphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/authn"
)

// TestRPCCallsThroughTheGateway: with every client (grpc-go; Connect's in gRPC,
// gRPC-Web and Connect, protobuf and JSON), reads need no token, a write without
// one is UNAUTHENTICATED and a reader's PERMISSION_DENIED, neither reaching the
// book service, and an editor's write is done and readable.
func TestRPCCallsThroughTheGateway(t *testing.T) {
	h := newRPCHarness(t, nil)
	reader := h.token("rita", []string{authn.RoleReader})
	editor := h.token("ed", []string{authn.RoleEditor})
	for _, c := range clients(t, h.url) {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			in := &bookv1.CreateBookRequest{Book: &bookv1.BookInput{Title: ptr("Kindred by " + c.name), AuthorId: ptr("a1"), Genre: ptr("sf")}}
			before := len(h.book.calls())
			_, err := c.CreateBook(ctx, in)
			wantCode(t, "CreateBook without a token", err, connect.CodeUnauthenticated)
			_, err = c.CreateBook(withToken(ctx, reader), in)
			wantCode(t, "CreateBook with a reader's token", err, connect.CodePermissionDenied)
			if n := len(h.book.calls()) - before; n != 0 {
				t.Fatalf("%d refused calls reached the book service", n)
			}

			created, err := c.CreateBook(withToken(ctx, editor), in)
			wantCode(t, "CreateBook with an editor's token", err, 0)
			got, err := c.GetBook(ctx, &bookv1.GetBookRequest{Id: created.GetBook().GetId()})
			wantCode(t, "GetBook without a token", err, 0)
			if got.GetBook().GetTitle() != in.GetBook().GetTitle() {
				t.Errorf("GetBook = %v, want the book created (%v)", got.GetBook(), created.GetBook())
			}
			_, err = c.GetBook(withToken(ctx, reader), &bookv1.GetBookRequest{Id: "missing"})
			wantCode(t, "GetBook of a missing book, a reader's", err, connect.CodeNotFound)
			list, err := c.ListBooks(ctx, &bookv1.ListBooksRequest{})
			wantCode(t, "ListBooks without a token", err, 0)
			if len(list.GetBooks()) == 0 {
				t.Error("ListBooks lists no book")
			}
		})
	}
}

// TestRPCBadTokensAreRefusedForReads: a token that was sent must be valid even
// for a public procedure, as on the REST routes: forged (a key the JWKS does not
// hold), expired, or not a bearer token, a read is UNAUTHENTICATED and never
// reaches the book service.
func TestRPCBadTokensAreRefusedForReads(t *testing.T) {
	h := newRPCHarness(t, nil)
	tokens := map[string]string{
		"forged":  h.iss.Impostor().Token("mallory", authn.RoleAdmin),
		"expired": h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }),
		"garbage": "not.a.token",
	}
	for _, c := range clients(t, h.url) {
		for name, tok := range tokens {
			_, err := c.GetBook(withToken(t.Context(), tok), &bookv1.GetBookRequest{Id: "x"})
			wantCode(t, c.name+" GetBook with a "+name+" token", err, connect.CodeUnauthenticated)
		}
	}
	// Not a bearer token at all, on the wire.
	a := rawCall(t, h.url, bookv1connect.BookServiceGetBookProcedure, "application/grpc", http.Header{"Authorization": {"Basic cm9vdDpyb290"}}, emptyFrame)
	if a.grpcStatus() != "16" {
		t.Errorf("a Basic Authorization: grpc-status %q, want 16", a.grpcStatus())
	}
	if n := len(h.book.calls()); n != 0 {
		t.Errorf("%d calls with bad tokens reached the book service", n)
	}
}

// TestRPCRefusalsInTheCallersProtocol: the refusals on the wire, as each protocol
// has them: gRPC an empty answer whose trailers hold grpc-status 16 or 7 and a
// grpc-message; gRPC-Web the same in the headers; Connect the HTTP status 401 or
// 403 with the error JSON (and WWW-Authenticate, as REST's 401).
func TestRPCRefusalsInTheCallersProtocol(t *testing.T) {
	h := newRPCHarness(t, nil)
	reader := http.Header{"Authorization": {"Bearer " + h.token("rita", []string{authn.RoleReader})}}
	create := bookv1connect.BookServiceCreateBookProcedure

	for _, tc := range []struct {
		name   string
		header http.Header
		grpc   string
		status int
		code   string
	}{
		{"no token", nil, "16", http.StatusUnauthorized, "unauthenticated"},
		{"reader", reader, "7", http.StatusForbidden, "permission_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := rawCall(t, h.url, create, "application/grpc", tc.header, emptyFrame)
			if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/grpc" || len(a.body) != 0 {
				t.Errorf("gRPC: %d %q with %d bytes, want 200 application/grpc, empty", a.status, a.header.Get("Content-Type"), len(a.body))
			}
			if a.trailer.Get("Grpc-Status") != tc.grpc || a.trailer.Get("Grpc-Message") == "" {
				t.Errorf("gRPC trailers %v, want grpc-status %s and a grpc-message", a.trailer, tc.grpc)
			}

			a = rawCall(t, h.url, create, "application/grpc-web+proto", tc.header, emptyFrame)
			if a.status != http.StatusOK || a.header.Get("Grpc-Status") != tc.grpc || a.header.Get("Grpc-Message") == "" {
				t.Errorf("gRPC-Web: %d, headers %v, want 200 with grpc-status %s and a grpc-message", a.status, a.header, tc.grpc)
			}

			a = rawCall(t, h.url, create, "application/proto", withHeader(tc.header, "Connect-Protocol-Version", "1"), nil)
			var e struct{ Code, Message string }
			if err := json.Unmarshal(a.body, &e); err != nil || a.status != tc.status || e.Code != tc.code || e.Message == "" ||
				a.header.Get("Content-Type") != "application/json" {
				t.Errorf("Connect: %d %q %s, want %d application/json with code %s", a.status, a.header.Get("Content-Type"), a.body, tc.status, tc.code)
			}
			if tc.status == http.StatusUnauthorized && a.header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("Connect 401 without WWW-Authenticate: Bearer (%v)", a.header)
			}
		})
	}
	if n := len(h.book.calls()); n != 0 {
		t.Errorf("%d refused calls reached the book service", n)
	}
}

// TestRPCReflectionThroughTheGateway: grpcurl's way in, reflection v1 and v1alpha
// (a stream both ways), lists the book service through the gateway, without a
// token.
func TestRPCReflectionThroughTheGateway(t *testing.T) {
	h := newRPCHarness(t, nil)
	conn := grpcConn(t, h.url)
	ctx := t.Context()

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for range 2 { // twice on one stream: each message goes on as it comes
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("reflection v1 through the gateway: %v", err)
		}
		names = names[:0]
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !slices.Contains(names, bookv1connect.BookServiceName) {
			t.Fatalf("reflection v1 lists %v, want %s among them", names, bookv1connect.BookServiceName)
		}
	}
	file, err := func() (*reflectionpb.ServerReflectionResponse, error) {
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: bookv1connect.BookServiceName}}); err != nil {
			return nil, err
		}
		return stream.Recv()
	}()
	if err != nil || len(file.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("reflection's descriptor of the book service: %v, %v", file, err)
	}
	_ = stream.CloseSend()

	alpha, err := reflectionalphapb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := alpha.Send(&reflectionalphapb.ServerReflectionRequest{MessageRequest: &reflectionalphapb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := alpha.Recv()
	if err != nil || len(resp.GetListServicesResponse().GetService()) == 0 {
		t.Fatalf("reflection v1alpha through the gateway: %v, %v", resp, err)
	}
	_ = alpha.CloseSend()
}

// TestRPCBookServiceDown: with no book instance listening, every client gets
// UNAVAILABLE in its own protocol (grpc-status 14, Connect's JSON with 503), not
// the REST routes' problem+json 503 that a gRPC client could only guess at.
func TestRPCBookServiceDown(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Instances[ServiceBook] = []string{closedURL(t)} })
	for _, c := range clients(t, h.url) {
		_, err := c.GetBook(t.Context(), &bookv1.GetBookRequest{Id: "x"})
		wantCode(t, c.name+" GetBook with the book service down", err, connect.CodeUnavailable)
	}
	a := rawCall(t, h.url, bookv1connect.BookServiceGetBookProcedure, "application/grpc", nil, emptyFrame)
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/grpc" || a.grpcStatus() != "14" {
		t.Errorf("gRPC: %d %q grpc-status %q, want 200 application/grpc with grpc-status 14", a.status, a.header.Get("Content-Type"), a.grpcStatus())
	}
	a = rawCall(t, h.url, bookv1connect.BookServiceGetBookProcedure, "application/json", nil, []byte("{}"))
	if a.status != http.StatusServiceUnavailable || !bytes.Contains(a.body, []byte(`"code":"unavailable"`)) {
		t.Errorf("Connect: %d %s, want 503 with code unavailable", a.status, a.body)
	}
}

// TestRPCUnknownProceduresAreRefused replays calls to procedures the gateway does
// not forward: none reaches the book service, whatever the path's spelling.
func TestRPCUnknownProceduresAreRefused(t *testing.T) {
	h := newRPCHarness(t, nil)
	admin := h.token("ada", []string{authn.RoleAdmin})
	for _, path := range []string{
		"/folio.book.v1.BookService/DropAllBooks",
		"/folio.book.v1.BookService/getbook",
		"/folio.book.v1.BookService/Get%42ook", // GetBook, escaped
		"/folio.book.v1.BookService/CreateBook%2F..%2FGetBook",
		"/folio.book.v1.BookService/",
		"/grpc.health.v1.Health/List",
		"/grpc.reflection.v1.ServerReflection/Other",
	} {
		a := rawCall(t, h.url, path, "application/grpc", http.Header{"Authorization": {"Bearer " + admin}}, emptyFrame)
		if a.grpcStatus() != "12" {
			t.Errorf("%s: %d grpc-status %q, want 12 (UNIMPLEMENTED)", path, a.status, a.grpcStatus())
		}
	}
	// Paths that climb out of the service or name a procedure twice: the router
	// redirects them to their clean form (307, before any route: the client reads
	// UNKNOWN), where a client that follows is checked like any caller. None
	// reaches the book service as it was sent.
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+admin)
	conn := grpcConn(t, h.url)
	for _, method := range []string{
		"/folio.book.v1.BookService/../../admin",
		"/folio.book.v1.BookService/../../books",
		"/folio.book.v1.BookService/GetBook/../CreateBook",
		"/folio.book.v1.BookService/./CreateBook",
	} {
		var resp bookv1.CreateBookResponse
		err := conn.Invoke(ctx, method, &bookv1.CreateBookRequest{Book: &bookv1.BookInput{Title: ptr("x")}}, &resp)
		if status.Code(err) == codes.OK {
			t.Errorf("%s: succeeded", method)
		}
	}
	if calls := h.book.calls(); len(calls) != 0 {
		t.Errorf("calls of unknown procedures reached the book service: %v", calls)
	}
}

// TestRPCAuthorizationSmuggling replays a call that carries two authorizations,
// the second in lowercase (metadata keys are lowercase in HTTP/2; an HTTP/1.1
// client can send both spellings): refused, whichever comes first, since the
// gateway would check one and the service might read the other. A lowercase
// header alone is the same header, checked as any.
func TestRPCAuthorizationSmuggling(t *testing.T) {
	h := newRPCHarness(t, nil)
	reader := "Bearer " + h.token("rita", []string{authn.RoleReader})
	editor := "Bearer " + h.token("ed", []string{authn.RoleEditor})
	forged := "Bearer " + h.iss.Impostor().Token("mallory", authn.RoleAdmin)
	conn := grpcConn(t, h.url)
	in := &bookv1.CreateBookRequest{Book: &bookv1.BookInput{Title: ptr("Dawn")}}

	for _, pair := range [][2]string{{reader, editor}, {editor, forged}, {editor, editor}} {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", pair[0], "authorization", pair[1])
		var resp bookv1.CreateBookResponse
		err := conn.Invoke(ctx, bookv1connect.BookServiceCreateBookProcedure, in, &resp)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("grpc-go with two authorization values: %v, want Unauthenticated", err)
		}
	}

	// HTTP/1.1 Connect: the header in two spellings is one header with two values.
	header := http.Header{"Authorization": {editor}, "authorization": {forged}, "Connect-Protocol-Version": {"1"}}
	a := rawCall(t, h.url, bookv1connect.BookServiceGetBookProcedure, "application/json", header, []byte(`{"id":"x"}`))
	if a.status != http.StatusUnauthorized {
		t.Errorf("Connect with Authorization and authorization: %d %s, want 401", a.status, a.body)
	}
	header = http.Header{"authorization": {forged}, "Connect-Protocol-Version": {"1"}}
	a = rawCall(t, h.url, bookv1connect.BookServiceGetBookProcedure, "application/json", header, []byte(`{"id":"x"}`))
	if a.status != http.StatusUnauthorized {
		t.Errorf("Connect with a forged token in lowercase: %d %s, want 401", a.status, a.body)
	}
	if calls := h.book.calls(); len(calls) != 0 {
		t.Errorf("%d smuggling calls reached the book service", len(calls))
	}
}

// TestRPCHeadersOnTheWayUp: what the book service receives of a gRPC call is
// what the REST routes send (the verified token only, the client's address
// rather than the X-Forwarded-For it claims, no X-Folio-* or trace context of the
// client's), over HTTP/2 with te: trailers and the caller's grpc-timeout.
func TestRPCHeadersOnTheWayUp(t *testing.T) {
	h := newRPCHarness(t, nil)
	editor := h.token("ed", []string{authn.RoleEditor})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+editor,
		"x-forwarded-for", "203.0.113.7", "x-folio-roles", "admin",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-request-id", "rpc-headers-1")
	var resp bookv1.CreateBookResponse
	if err := grpcConn(t, h.url).Invoke(ctx, bookv1connect.BookServiceCreateBookProcedure,
		&bookv1.CreateBookRequest{Book: &bookv1.BookInput{Title: ptr("Dawn")}}, &resp); err != nil {
		t.Fatal(err)
	}
	calls := h.book.calls()
	if len(calls) != 1 {
		t.Fatalf("the book service got %d calls, want 1", len(calls))
	}
	c := calls[0]
	checks := []struct {
		what      string
		got, want string
	}{
		{"protocol", c.proto, "HTTP/2.0"},
		{"path", c.path, bookv1connect.BookServiceCreateBookProcedure},
		{"te", strings.Join(c.header.Values("Te"), ","), "trailers"},
		{"authorization", strings.Join(c.header.Values("Authorization"), ","), "Bearer " + editor},
		{"x-forwarded-for", strings.Join(c.header.Values("X-Forwarded-For"), ","), "127.0.0.1"},
		{"x-folio-roles", c.header.Get("X-Folio-Roles"), ""},
		{"traceparent", c.header.Get("Traceparent"), ""},
		{"x-request-id", c.header.Get("X-Request-Id"), "rpc-headers-1"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.what, ch.got, ch.want)
		}
	}
	if c.header.Get("Grpc-Timeout") == "" {
		t.Errorf("no grpc-timeout reached the book service (headers %v)", c.header)
	}
}

// TestRPCContentTypes: the gateway's 415 refuses bodies no RPC protocol sends,
// and none that one does; a method other than POST or Connect's GET is 405.
func TestRPCContentTypes(t *testing.T) {
	h := newRPCHarness(t, nil)
	get := bookv1connect.BookServiceGetBookProcedure
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/grpc+thrift", ""} {
		wantProblem(t, toResponse(rawCall(t, h.url, get, ct, nil, []byte("x"))), http.StatusUnsupportedMediaType)
	}
	req, _ := http.NewRequest(http.MethodPut, h.url+get, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantProblem(t, response{status: resp.StatusCode, header: resp.Header, body: body}, http.StatusMethodNotAllowed)
	if n := len(h.book.calls()); n != 0 {
		t.Fatalf("%d refused requests reached the book service", n)
	}

	for _, ct := range []string{"application/grpc", "application/grpc+proto", "application/grpc+json", "application/grpc-web",
		"application/grpc-web+proto", "application/grpc-web+json", "application/proto", "application/json",
		"application/json; charset=utf-8", "application/connect+proto", "application/connect+json"} {
		before := len(h.book.calls())
		a := rawCall(t, h.url, get, ct, http.Header{"Connect-Protocol-Version": {"1"}}, emptyFrame)
		if a.status == http.StatusUnsupportedMediaType && len(h.book.calls()) == before {
			t.Errorf("%s: refused by the gateway with 415", ct)
		}
		if len(h.book.calls()) != before+1 {
			t.Errorf("%s: did not reach the book service (%d %s)", ct, a.status, a.body)
		}
	}
	// Connect's GET form of a call without side effects.
	resp, err = http.Get(h.url + get + "?connect=v1&encoding=json&message=" + `%7B%22id%22%3A%22x%22%7D`)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !bytes.Contains(body, []byte(`"code":"not_found"`)) {
		t.Errorf("Connect GET of a missing book: %d %s, want the book service's 404 not_found", resp.StatusCode, body)
	}
}

// TestRPCMessageLimit: the 1 MiB body limit holds for a unary call in every
// protocol. A gRPC call streams its message (grpc-go declares no length): the
// gateway stops it at 1 MiB and answers RESOURCE_EXHAUSTED. Connect's clients
// declare the length, and the chassis refuses those before any route with its
// 413 problem, which they read as UNKNOWN (httpserver's check, outside the
// gateway); the call fails all the same and never reaches the book service.
func TestRPCMessageLimit(t *testing.T) {
	h := newRPCHarness(t, nil)
	editor := h.token("ed", []string{authn.RoleEditor})
	big := &bookv1.CreateBookRequest{Book: &bookv1.BookInput{Title: ptr(strings.Repeat("x", 2<<20))}}
	for _, c := range clients(t, h.url) {
		before := len(h.book.calls())
		_, err := c.CreateBook(withToken(t.Context(), editor), big)
		if c.name == "grpc-go" {
			wantCode(t, c.name+" CreateBook of 2 MiB", err, connect.CodeResourceExhausted)
			continue
		}
		if err == nil || len(h.book.calls()) != before {
			t.Errorf("%s CreateBook of 2 MiB: %v, %d calls reached the book service; want refused before it", c.name, err, len(h.book.calls())-before)
		}
	}
	// Under the limit, the same call goes through.
	for _, c := range clients(t, h.url) {
		_, err := c.CreateBook(withToken(t.Context(), editor),
			&bookv1.CreateBookRequest{Book: &bookv1.BookInput{Title: ptr(strings.Repeat("x", 512<<10))}})
		wantCode(t, c.name+" CreateBook of 512 KiB", err, 0)
	}
}

// TestRPCRateLimited: a client over its rate gets RESOURCE_EXHAUSTED in its own
// protocol (with Retry-After), and its call does not reach the book service.
func TestRPCRateLimited(t *testing.T) {
	h := newRPCHarness(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.001, 1 })
	cs := clients(t, h.url)
	_, err := cs[0].GetBook(t.Context(), &bookv1.GetBookRequest{Id: "x"})
	wantCode(t, "the first call", err, connect.CodeNotFound)
	for _, c := range cs {
		_, err := c.GetBook(t.Context(), &bookv1.GetBookRequest{Id: "x"})
		wantCode(t, c.name+" over the rate", err, connect.CodeResourceExhausted)
	}
	a := rawCall(t, h.url, bookv1connect.BookServiceGetBookProcedure, "application/json", http.Header{"Connect-Protocol-Version": {"1"}}, []byte(`{"id":"x"}`))
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || !bytes.Contains(a.body, []byte(`"code":"resource_exhausted"`)) {
		t.Errorf("Connect over the rate: %d %v %s, want 429 with Retry-After and code resource_exhausted", a.status, a.header, a.body)
	}
	if n := len(h.book.calls()); n != 1 {
		t.Errorf("the book service got %d calls, want only the first", n)
	}
}

// TestRPCGatewayHealth: grpc.health.v1 on the gateway's port answers for the
// gateway, SERVING with its services down, and for no service by name.
func TestRPCGatewayHealth(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Instances[ServiceBook] = []string{closedURL(t)} })
	health := healthpb.NewHealthClient(grpcConn(t, h.url))
	resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("the gateway's health: %v %v, want SERVING", resp.GetStatus(), err)
	}
	if _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: bookv1connect.BookServiceName}); status.Code(err) != codes.NotFound {
		t.Errorf("the book service's health at the gateway: %v, want NotFound", err)
	}
	w, err := health.Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Watch: %v, want Unimplemented", err)
	}
}

// TestRPCRouteMetrics: a call is counted under its procedure as the route.
func TestRPCRouteMetrics(t *testing.T) {
	h := newRPCHarness(t, nil)
	for _, c := range clients(t, h.url)[:2] {
		_, _ = c.ListBooks(t.Context(), &bookv1.ListBooksRequest{})
	}
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && l.GetValue() == bookv1connect.BookServiceListBooksProcedure {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	if n != 2 {
		t.Errorf("http_requests_total{route=%q} = %v, want 2", bookv1connect.BookServiceListBooksProcedure, n)
	}
}

// TestRPCAccessCoversTheContract: every procedure of the BookService contract has
// a rule at the gateway, and the gateway has none for a procedure the contract
// lacks; reads are public and writes need an editor, as on the REST routes.
// (e2e's TestRPCGatewayAccessAgreesWithTheBookService compares the rules with
// the book service's own.)
func TestRPCAccessCoversTheContract(t *testing.T) {
	methods := bookv1.File_folio_book_v1_book_proto.Services().ByName("BookService").Methods()
	access := RPCAccess(ServiceBook)
	for i := range methods.Len() {
		m := methods.Get(i)
		name := "/" + bookv1connect.BookServiceName + "/" + string(m.Name())
		need, ok := access[name]
		if !ok {
			t.Errorf("the gateway has no rule for %s", name)
			continue
		}
		read := strings.HasPrefix(string(m.Name()), "Get") || strings.HasPrefix(string(m.Name()), "List")
		if want := map[bool]authn.Access{true: authn.Public, false: authn.Editor}[read]; need != want {
			t.Errorf("%s needs %v at the gateway, want %v", name, need, want)
		}
		delete(access, name)
	}
	delete(access, reflectionV1)
	delete(access, reflectionV1Alpha)
	if len(access) != 0 {
		t.Errorf("the gateway has rules for procedures the contract lacks: %v", access)
	}
}

// TestRPCCORS: a browser's preflight for a Connect or gRPC-Web call is answered
// with the protocols' headers allowed.
func TestRPCCORS(t *testing.T) {
	h := newRPCHarness(t, func(c *Config) { c.CORSOrigins = []string{"https://app.example"} })
	req, _ := http.NewRequest(http.MethodOptions, h.url+bookv1connect.BookServiceGetBookProcedure, nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type,grpc-timeout,x-grpc-web")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(allowed, "x-grpc-web") ||
		!strings.Contains(allowed, "connect-protocol-version") {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// emptyFrame is a gRPC message frame holding an empty message.
var emptyFrame = []byte{0, 0, 0, 0, 0}

// wireAnswer is an RPC answer as it came over the wire.
type wireAnswer struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
}

// grpcStatus is the answer's grpc-status: from the trailers, or from the
// headers of a trailers-only answer.
func (a wireAnswer) grpcStatus() string {
	if s := a.trailer.Get("Grpc-Status"); s != "" {
		return s
	}
	return a.header.Get("Grpc-Status")
}

func toResponse(a wireAnswer) response {
	return response{status: a.status, header: a.header, body: a.body}
}

func withHeader(h http.Header, k, v string) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(k, v)
	return h
}

// rawCall POSTs body of type contentType to path at base, over h2c for gRPC (with
// te: trailers, as gRPC clients send) and HTTP/1.1 otherwise.
func rawCall(t testing.TB, base, path, contentType string, header http.Header, body []byte) wireAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	client := http.DefaultClient
	if strings.HasPrefix(contentType, "application/grpc") && !strings.HasPrefix(contentType, "application/grpc-web") {
		req.Header.Set("Te", "trailers")
		c := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
		defer c.CloseIdleConnections()
		client = c
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read: %v", path, err)
	}
	return wireAnswer{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: b}
}
