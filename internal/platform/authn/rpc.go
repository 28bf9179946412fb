package authn

import (
	"context"
	"errors"

	"connectrpc.com/connect"
)

// Interceptor is Require for an RPC API served with Connect (gRPC, gRPC-Web and
// Connect alike): every call, unary or streaming, is checked against the access
// its procedure needs, with the same rules and the same failure metrics as the
// HTTP routes, and served with the verified identity in its context. Refusals are
// UNAUTHENTICATED (no token, or one that is not valid) and PERMISSION_DENIED (a
// valid token whose roles do not allow the call). need names the access of each
// procedure ("/folio.book.v1.BookService/GetBook"); a procedure it does not know
// gets Admin, so that an RPC added without a rule is closed, not open.
func (v *Verifier) Interceptor(need map[string]Access) connect.Interceptor {
	return &interceptor{v: v, need: need}
}

type interceptor struct {
	v    *Verifier
	need map[string]Access
}

func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.check(ctx, req.Spec().Procedure, req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.check(ctx, conn.Spec().Procedure, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// check authorizes a call to procedure with the Authorization metadata it carries,
// as Authorize does a request.
func (i *interceptor) check(ctx context.Context, procedure, authorization string) (context.Context, error) {
	need, ok := i.need[procedure]
	if !ok {
		need = Admin
	}
	id, err := i.v.authenticate(ctx, authorization)
	if refusal := i.v.Decide(need, id, err); refusal != nil {
		code := connect.CodeUnauthenticated
		if refusal.Forbidden {
			code = connect.CodePermissionDenied
		}
		return ctx, connect.NewError(code, errors.New(refusal.Detail))
	}
	if id != nil {
		ctx = NewContext(ctx, *id)
	}
	return ctx, nil
}
