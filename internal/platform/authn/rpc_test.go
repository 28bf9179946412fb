package authn

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"
)

// TestInterceptor: each procedure's rule applies, a procedure the table does not
// name needs admin, and refusals are counted as the HTTP routes' are.
func TestInterceptor(t *testing.T) {
	f := newFixture(t, nil)
	need := map[string]Access{"/pkg.S/Read": Public, "/pkg.S/Write": Editor}
	editor := "Bearer " + f.token("ed", []string{RoleEditor})
	admin := "Bearer " + f.token("ad", []string{RoleAdmin})
	for _, tc := range []struct {
		name, procedure, auth string
		want                  connect.Code // 0: served
	}{
		{"public read, no token", "/pkg.S/Read", "", 0},
		{"public read, forged token", "/pkg.S/Read", "Bearer not.a.token", connect.CodeUnauthenticated},
		{"public read, not a bearer", "/pkg.S/Read", "Basic dTpw", connect.CodeUnauthenticated},
		{"write, no token", "/pkg.S/Write", "", connect.CodeUnauthenticated},
		{"write, reader", "/pkg.S/Write", "Bearer " + f.token("rd", []string{RoleReader}), connect.CodePermissionDenied},
		{"write, editor", "/pkg.S/Write", editor, 0},
		{"unknown procedure, editor", "/pkg.S/Drop", editor, connect.CodePermissionDenied},
		{"unknown procedure, admin", "/pkg.S/Drop", admin, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen *Identity
			next := connect.UnaryFunc(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
				if id, ok := FromContext(ctx); ok {
					seen = &id
				}
				return nil, nil
			})
			_, err := f.v.Interceptor(need).WrapUnary(next)(t.Context(), handlerRequest(tc.procedure, tc.auth))
			var ce *connect.Error
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != 0 && (!errors.As(err, &ce) || ce.Code() != tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			case tc.want == 0 && tc.auth != "" && seen == nil:
				t.Error("served without the identity in the context")
			}
		})
	}
	if n := f.counter("failures", "forbidden"); n != 2 {
		t.Errorf("forbidden refusals counted %v, want 2", n)
	}
}

// handlerRequest is a unary call of procedure as a handler's interceptor sees it.
func handlerRequest(procedure, auth string) connect.AnyRequest {
	req := connect.NewRequest(&struct{}{})
	if auth != "" {
		req.Header().Set("Authorization", auth)
	}
	return &specRequest{Request: req, spec: connect.Spec{Procedure: procedure}}
}

// specRequest is a request as a handler receives it: with the procedure's spec.
type specRequest struct {
	*connect.Request[struct{}]
	spec connect.Spec
}

func (r *specRequest) Spec() connect.Spec { return r.spec }
