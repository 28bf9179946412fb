package rpcapi_test

import (
	"net/url"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"folio/internal/book/rpcapi"
	"folio/internal/book/sqlstore"
	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestGRPCClients: a stock gRPC client (grpc-go) calls the book service, checks
// its health and lists its services by reflection, as grpcurl and Kubernetes'
// gRPC probes do.
func TestGRPCClients(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/test.db", sqlstore.Migrations)
	s := newService(t, db)
	u, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx := t.Context()

	for _, service := range []string{"", bookv1connect.BookServiceName} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v %v, want SERVING", service, resp.GetStatus(), err)
		}
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "folio.author.v1.AuthorService"}); status.Code(err).String() != "NotFound" {
		t.Errorf("health of a service not served: %v, want NotFound", err)
	}
	_ = db.Close()
	if resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health with the database closed: %v %v, want NOT_SERVING", resp.GetStatus(), err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if len(names) != 2 || names[0] != bookv1connect.BookServiceName {
		t.Errorf("reflection lists %v, want the book service and health", names)
	}

	// A missing book through the stock client: the code a gRPC user acts on.
	var reply bookv1.GetBookResponse
	err = conn.Invoke(ctx, bookv1connect.BookServiceGetBookProcedure, &bookv1.GetBookRequest{Id: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, &reply)
	if status.Code(err).String() != "NotFound" {
		t.Errorf("GetBook of a missing book: %v, want NotFound", err)
	}
}

// TestEveryProcedureHasAnAccessRule: a procedure added to the contract without a
// rule would be neither routed nor open; this names it.
func TestEveryProcedureHasAnAccessRule(t *testing.T) {
	methods := bookv1.File_folio_book_v1_book_proto.Services().ByName("BookService").Methods()
	for i := range methods.Len() {
		procedure := "/" + bookv1connect.BookServiceName + "/" + string(methods.Get(i).Name())
		if _, ok := rpcapi.Access[procedure]; !ok {
			t.Errorf("%s has no entry in rpcapi.Access", procedure)
		}
	}
	if len(rpcapi.Access) != methods.Len() {
		t.Errorf("rpcapi.Access has %d entries for %d procedures", len(rpcapi.Access), methods.Len())
	}
}
