// Package rpcfault carries Folio's fault errors over RPC (Connect, gRPC, gRPC-Web):
// a service turns its fault.Error into the status code a client acts on, with the
// field errors in a google.rpc.BadRequest and the kind in a google.rpc.ErrorInfo,
// and a client turns a status back into a fault.Error. The mapping is the REST
// API's, status for status.
package rpcfault

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"folio/internal/platform/fault"
)

// Domain is the ErrorInfo domain of Folio's errors.
const Domain = "folio"

// codes maps each kind to its code; ErrorInfo's reason tells apart kinds that
// share one (Malformed and Invalid: 400 and 422 on REST).
var codes = map[fault.Kind]connect.Code{
	fault.Malformed:          connect.CodeInvalidArgument,
	fault.Invalid:            connect.CodeInvalidArgument,
	fault.NotFound:           connect.CodeNotFound,
	fault.Conflict:           connect.CodeAlreadyExists,
	fault.PreconditionFailed: connect.CodeFailedPrecondition,
	fault.Unavailable:        connect.CodeUnavailable,
	fault.StorageUnavailable: connect.CodeUnavailable,
	fault.Overloaded:         connect.CodeUnavailable,
	fault.TooLarge:           connect.CodeResourceExhausted,
	fault.RateLimited:        connect.CodeResourceExhausted,
	fault.UnsupportedMedia:   connect.CodeInvalidArgument,
	fault.Unauthorized:       connect.CodeUnauthenticated,
	fault.Forbidden:          connect.CodePermissionDenied,
}

// reasons are the ErrorInfo reasons, one per kind.
var reasons = map[fault.Kind]string{
	fault.Malformed: "MALFORMED", fault.Invalid: "INVALID", fault.NotFound: "NOT_FOUND",
	fault.Conflict: "CONFLICT", fault.PreconditionFailed: "PRECONDITION_FAILED",
	fault.Unavailable: "UPSTREAM_UNAVAILABLE", fault.StorageUnavailable: "STORAGE_UNAVAILABLE",
	fault.Overloaded: "OVERLOADED", fault.TooLarge: "TOO_LARGE", fault.RateLimited: "RATE_LIMITED",
	fault.UnsupportedMedia: "UNSUPPORTED_MEDIA", fault.Unauthorized: "UNAUTHORIZED", fault.Forbidden: "FORBIDDEN",
}

// Status is the error a handler returns to its client for err: the code of err's
// kind with its client-safe message and field errors; an error nobody classified
// is INTERNAL with a message that says nothing of it, and is logged with log, as
// a REST handler's is.
func Status(ctx context.Context, log *slog.Logger, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return connect.NewError(connect.CodeCanceled, errors.New("the client closed the request"))
	}
	fe := fault.Classify(err)
	if fe == nil || fe.Kind == fault.Internal {
		log.ErrorContext(ctx, "internal error", "err", err)
		return connect.NewError(connect.CodeInternal, errors.New("the server could not complete the request; it has been logged"))
	}
	switch fe.Kind {
	case fault.Unavailable:
		log.WarnContext(ctx, "upstream unavailable", "err", err)
	case fault.StorageUnavailable:
		log.ErrorContext(ctx, "storage unavailable", "err", err)
	}
	ce := connect.NewError(codes[fe.Kind], errors.New(fe.Message))
	if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reasons[fe.Kind], Domain: Domain}); err == nil {
		ce.AddDetail(d)
	}
	if len(fe.Fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range fe.Fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Message})
		}
		if d, err := connect.NewErrorDetail(br); err == nil {
			ce.AddDetail(d)
		}
	}
	if fe.RetryAfter > 0 {
		if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(fe.RetryAfter)}); err == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}

// Fault is what a client makes of an RPC's error: the fault.Error the serving
// service classified (its kind from ErrorInfo, its field errors from BadRequest)
// when the error came from a Folio service and is one a caller acts on, else an
// Unavailable error — the peer could not answer in a way the client can use —
// with message as what a client is told and err as the cause.
func Fault(err error, message string) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fault.Wrap(fault.Unavailable, err, message)
	}
	fe := &fault.Error{Kind: fault.Internal, Message: ce.Message(), Err: err}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		switch v := v.(type) {
		case *errdetails.ErrorInfo:
			if v.GetDomain() == Domain {
				fe.Kind = kindOf(v.GetReason())
			}
		case *errdetails.BadRequest:
			for _, f := range v.GetFieldViolations() {
				fe.Fields = append(fe.Fields, fault.FieldError{Field: f.GetField(), Message: f.GetDescription()})
			}
		case *errdetails.RetryInfo:
			fe.RetryAfter = v.GetRetryDelay().AsDuration()
		}
	}
	switch fe.Kind {
	case fault.Malformed, fault.Invalid, fault.NotFound, fault.Conflict, fault.PreconditionFailed:
		return fe
	}
	return fault.Wrap(fault.Unavailable, err, message)
}

func kindOf(reason string) fault.Kind {
	for k, r := range reasons {
		if r == reason {
			return k
		}
	}
	return fault.Internal
}
