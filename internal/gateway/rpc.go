package gateway

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/rs/cors"

	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/authn"
	"folio/internal/platform/discovery"
	"folio/internal/platform/problem"
)

// The RPC routes: gRPC, gRPC-Web and Connect calls of the services' RPC APIs pass
// through the gateway with the same rate limits, token checks and role rules as
// the REST routes, and every refusal is answered in the caller's protocol (a
// grpc-status for gRPC, the Connect error JSON for Connect), since a gRPC client
// cannot read a problem+json answer.

// rpcProcedure is where one procedure goes and what its caller needs.
type rpcProcedure struct {
	service string
	need    authn.Access
}

// Reflection's procedures, v1 and the v1alpha that grpcurl and older clients
// still ask first.
const (
	reflectionV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectionV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// rpcProcedures are the procedures the gateway forwards; each is a route of its
// own (and so a route label in the metrics). The book service's need the same
// access as its own table (rpcapi.Access, which it enforces again); the gateway
// keeps its own copy rather than import the book service's package, which would
// build the book service into the gateway and tie their releases together, and the
// end-to-end tests check that the two agree. A procedure the gateway does not
// know is refused, not forwarded: one the book service adds is closed here until
// the gateway is released with its rule.
//
// Reflection is public, as the OpenAPI documents are: it tells what the contract
// in proto/ tells, so that grpcurl works through the gateway.
var rpcProcedures = map[string]rpcProcedure{
	bookv1connect.BookServiceGetBookProcedure:    {ServiceBook, authn.Public},
	bookv1connect.BookServiceListBooksProcedure:  {ServiceBook, authn.Public},
	bookv1connect.BookServiceCreateBookProcedure: {ServiceBook, authn.Editor},
	bookv1connect.BookServiceUpdateBookProcedure: {ServiceBook, authn.Editor},
	bookv1connect.BookServiceDeleteBookProcedure: {ServiceBook, authn.Editor},
	reflectionV1:      {ServiceBook, authn.Public},
	reflectionV1Alpha: {ServiceBook, authn.Public},
}

// rpcServices are the RPC services the gateway answers for: a call to any other
// procedure of theirs is refused as UNIMPLEMENTED in the caller's protocol.
var rpcServices = []string{
	bookv1connect.BookServiceName,
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
	grpchealth.HealthV1ServiceName,
}

// RPCAccess returns what the gateway asks of the callers of each procedure of
// service it forwards, for the test that it agrees with the service's own rules.
func RPCAccess(service string) map[string]authn.Access {
	out := map[string]authn.Access{}
	for name, p := range rpcProcedures {
		if p.service == service {
			out[name] = p.need
		}
	}
	return out
}

// rpcContentTypes are the request types of the protocols the services serve
// (Connect's handlers, with their proto and JSON codecs): gRPC, gRPC-Web, and
// Connect's unary and streaming forms. A POST of any other type to an RPC route
// is refused with 415 before it costs a token check.
var rpcContentTypes = map[string]bool{
	"application/grpc": true, "application/grpc+proto": true, "application/grpc+json": true,
	"application/grpc-web": true, "application/grpc-web+proto": true, "application/grpc-web+json": true,
	"application/proto": true, "application/json": true,
	"application/connect+proto": true, "application/connect+json": true,
}

// rpcErrors writes an error in the protocol of the request it answers: a gRPC
// status in the trailers, gRPC-Web's in the headers of an empty answer, the
// Connect protocol's JSON with the code's HTTP status.
var rpcErrors = connect.NewErrorWriter()

// rpcRoutes registers the RPC procedures the gateway forwards, a refusal of every
// other procedure of their services, and the gateway's own health service.
func (g *Gateway) rpcRoutes(mux *http.ServeMux) {
	for _, name := range slices.Sorted(maps.Keys(rpcProcedures)) {
		mux.Handle(name, g.handleRPC(name, rpcProcedures[name]))
	}
	for _, s := range rpcServices {
		mux.Handle("/"+s+"/", g.withRPCCORS(http.HandlerFunc(unknownProcedure)))
	}
	// The gateway's health, not a service's: see gatewayHealth.
	_, health := grpchealth.NewHandler(gatewayHealth{})
	mux.Handle(healthCheck, health)
	mux.Handle(healthWatch, health)
}

const (
	healthCheck = "/" + grpchealth.HealthV1ServiceName + "/Check"
	healthWatch = "/" + grpchealth.HealthV1ServiceName + "/Watch"
)

// handleRPC serves calls of procedure: the REST routes' admission (rate limit,
// token, role) answered in the caller's protocol, then the call goes on to an
// instance of the procedure's service over h2c.
func (g *Gateway) handleRPC(procedure string, p rpcProcedure) http.Handler {
	svc := g.services[p.service]
	return g.withRPCCORS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rpcShaped(w, r) {
			return
		}
		// The mux matched the path unescaped ("Get%42ook" is GetBook); only the
		// procedure's own spelling goes on, so that the service routes exactly
		// what the gateway checked.
		if r.URL.EscapedPath() != procedure {
			unknownProcedure(w, r)
			return
		}
		// Two Authorization values are two claims to be someone: the gateway
		// would check one and a service might read the other. Refused.
		if len(r.Header["Authorization"]) > 1 {
			_ = rpcErrors.Write(w, r, connect.NewError(connect.CodeUnauthenticated,
				errors.New("a call carries at most one authorization")))
			return
		}
		if !g.admit(w, r, svc, p.need, rpcRefusals{}) {
			return
		}
		g.forward(w, r, svc.rpc)
	}))
}

// rpcShaped reports whether r is a call in one of the RPC protocols (a POST of
// one of rpcContentTypes, or a Connect GET), and answers it with a problem when
// it is not.
func rpcShaped(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodGet:
		// Connect's GET form of a call without side effects; the service refuses
		// it for any other procedure.
		return true
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		problem.Write(w, r, problem.Problem{Type: problem.TypeMethodNotAllowed, Status: http.StatusMethodNotAllowed,
			Detail: "RPC procedures are called with POST (or Connect's GET)"})
		return false
	}
	if !rpcContentType(r.Header.Get("Content-Type")) {
		problem.Write(w, r, problem.Problem{Type: problem.TypeUnsupportedMedia, Status: http.StatusUnsupportedMediaType,
			Detail: "RPC procedures take gRPC, gRPC-Web or Connect requests, in protobuf or JSON"})
		return false
	}
	return true
}

// rpcContentType reports whether a request's Content-Type is one of
// rpcContentTypes. The clients send one of them exactly, with no parameters,
// which needs no parsing: mime.ParseMediaType builds a map of the parameters on
// every call, and is left for the rest (parameters, other cases).
func rpcContentType(v string) bool {
	if rpcContentTypes[v] {
		return true
	}
	ct, _, err := mime.ParseMediaType(v)
	return err == nil && rpcContentTypes[ct]
}

// unknownProcedure refuses a call of a procedure the gateway does not forward.
func unknownProcedure(w http.ResponseWriter, r *http.Request) {
	_ = rpcErrors.Write(w, r, connect.NewError(connect.CodeUnimplemented, errors.New("no such procedure")))
}

// rpcRefusals are the RPC routes' refusals: RESOURCE_EXHAUSTED for a client over
// its rate, UNAUTHENTICATED and PERMISSION_DENIED for the token checks, each in
// the caller's protocol.
type rpcRefusals struct{}

func (rpcRefusals) rateLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	// A header whatever the protocol: gRPC's status goes in the trailers, and a
	// header there is seen as early.
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	_ = rpcErrors.Write(w, r, connect.NewError(connect.CodeResourceExhausted,
		errors.New("too many requests; retry after the time in Retry-After")))
}

// authorize answers authn's refusal as UNAUTHENTICATED or PERMISSION_DENIED, with
// the REST answer's message and WWW-Authenticate.
func (rpcRefusals) authorize(w http.ResponseWriter, r *http.Request, v *authn.Verifier, need authn.Access, id *authn.Identity, err error) bool {
	refusal := v.Decide(need, id, err)
	if refusal == nil {
		return true
	}
	code := connect.CodeUnauthenticated
	if refusal.Forbidden {
		code = connect.CodePermissionDenied
	} else {
		// A header, not a trailer of the gRPC answer: HTTP forbids it there.
		w.Header().Set("WWW-Authenticate", refusal.Challenge)
	}
	_ = rpcErrors.Write(w, r, connect.NewError(code, errors.New(refusal.Detail)))
	return false
}

// rpcProxyError answers a call that could not be forwarded in the caller's
// protocol, as proxyError answers a REST request: RESOURCE_EXHAUSTED for a request
// over 1 MiB, INVALID_ARGUMENT for one that could not be read, UNAVAILABLE when no
// instance could be reached (none known, all refused) or gave a valid answer,
// DEADLINE_EXCEEDED on a timeout. The cause is only logged, since it names
// internal addresses.
func rpcProxyError(name string, log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(r.Context().Err(), context.Canceled) {
			// The client went away; nobody reads this answer.
			_ = rpcErrors.Write(w, r, connect.NewError(connect.CodeCanceled, errors.New("the call was cancelled")))
			return
		}
		if b, ok := r.Body.(*requestBody); ok {
			var tooLarge *http.MaxBytesError
			switch berr := b.failure(); {
			case errors.As(berr, &tooLarge):
				_ = rpcErrors.Write(w, r, connect.NewError(connect.CodeResourceExhausted,
					errors.New("request messages are limited to 1 MiB")))
				return
			case berr != nil:
				_ = rpcErrors.Write(w, r, connect.NewError(connect.CodeInvalidArgument,
					errors.New("the request could not be read: "+berr.Error())))
				return
			}
		}
		log.WarnContext(r.Context(), "upstream failed", "upstream", name, "method", r.Method, "path", r.URL.Path, "err", err)
		code, msg := connect.CodeUnavailable, "the "+name+" service gave no valid answer"
		switch {
		case isConnectError(err), errors.Is(err, discovery.ErrNoInstance):
			msg = "the " + name + " service is unavailable"
		case isTimeout(err):
			code, msg = connect.CodeDeadlineExceeded, "the "+name+" service did not answer in time"
		}
		_ = rpcErrors.Write(w, r, connect.NewError(code, errors.New(msg)))
	}
}

// gatewayHealth answers grpc.health.v1 Check for the gateway itself: SERVING for
// the server as a whole (""), as /readyz, which no service being down makes
// unready; NOT_FOUND for a named service. The gateway does not pass a check on to
// a service: one instance's answer would not say whether the service is served
// (the gateway balances over all of them), and the gateway's own answer would
// then depend on a service. Without Watch (UNIMPLEMENTED): an unauthenticated
// stream that never ends is not worth its connection, and probes only Check.
type gatewayHealth struct{}

func (gatewayHealth) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" {
		return nil, connect.NewError(connect.CodeNotFound,
			errors.New("the gateway reports its own health only; ask for the empty service name"))
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// withRPCCORS lets browsers call the RPC routes (gRPC-Web, Connect) from the
// configured origins, with the protocols' own request and response headers
// (the lists of connectrpc.com/cors).
func (g *Gateway) withRPCCORS(h http.Handler) http.Handler {
	if g.rpcCORS == nil {
		return h
	}
	return g.rpcCORS.Handler(h)
}

func newRPCCORS(origins []string) *cors.Cors {
	if len(origins) == 0 {
		return nil
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodPost},
		AllowedHeaders: []string{"Authorization", "Content-Type", "Accept", "X-Request-ID", "traceparent", "tracestate",
			"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Accept-Encoding", "Connect-Content-Encoding",
			"Content-Encoding", "Grpc-Timeout", "Grpc-Accept-Encoding", "Grpc-Encoding", "X-Grpc-Web", "X-User-Agent"},
		ExposedHeaders: []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "Grpc-Encoding",
			"Grpc-Accept-Encoding", "Connect-Content-Encoding", "Connect-Accept-Encoding", "Content-Encoding",
			"Retry-After", "X-Request-ID", "WWW-Authenticate"},
		MaxAge: 600,
	})
}
