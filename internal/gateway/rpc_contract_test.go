package gateway

// The gateway's consumer-driven contract with the book service's RPC API: every
// procedure of a folio service it forwards to the book service is one the
// published contract (proto/folio/book/v1, its generated descriptor) declares,
// and none that may change something (without idempotency_level NO_SIDE_EFFECTS)
// is forwarded without a token. Shown to fail on broken copies of the descriptor.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"folio/internal/genproto/bookv1"
	"folio/internal/platform/authn"
)

// rpcRouteViolations says how the gateway's RPC routes to the book service and the
// contract in file disagree. Procedures of services outside Folio's packages
// (server reflection) are the transport's, not the contract's, and are left out.
func rpcRouteViolations(file protoreflect.FileDescriptor) []string {
	var out []string
	checked := 0
	for _, name := range slices.Sorted(maps.Keys(rpcProcedures)) {
		p := rpcProcedures[name]
		service, method, ok := strings.Cut(strings.TrimPrefix(name, "/"), "/")
		if p.service != ServiceBook || !ok || !strings.HasPrefix(service, "folio.") {
			continue
		}
		checked++
		sd := file.Services().ByName(protoreflect.FullName(service).Name())
		if sd == nil || sd.FullName() != protoreflect.FullName(service) {
			out = append(out, fmt.Sprintf("%s: the gateway forwards it, the contract has no service %s", name, service))
			continue
		}
		md := sd.Methods().ByName(protoreflect.Name(method))
		if md == nil {
			out = append(out, fmt.Sprintf("%s: the gateway forwards it, the contract has no such procedure", name))
			continue
		}
		opts, _ := md.Options().(*descriptorpb.MethodOptions)
		if opts.GetIdempotencyLevel() != descriptorpb.MethodOptions_NO_SIDE_EFFECTS && p.need == authn.Public {
			out = append(out, fmt.Sprintf("%s: may change books (idempotency_level %s), the gateway forwards it without a token",
				name, opts.GetIdempotencyLevel()))
		}
	}
	if checked == 0 {
		out = append(out, "the gateway forwards no procedure of a folio service to the book service")
	}
	return out
}

// brokenContract is a copy of the book service's contract changed by edit.
func brokenContract(t *testing.T, edit func(*descriptorpb.FileDescriptorProto)) protoreflect.FileDescriptor {
	t.Helper()
	fdp := protodesc.ToFileDescriptorProto(bookv1.File_folio_book_v1_book_proto)
	edit(fdp)
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("the changed contract: %v", err)
	}
	return fd
}

func TestGatewayRPCRoutesAreInTheBookContract(t *testing.T) {
	if v := rpcRouteViolations(bookv1.File_folio_book_v1_book_proto); len(v) > 0 {
		t.Errorf("the gateway's RPC routes and the book service's contract disagree:\n%s", strings.Join(v, "\n"))
	}

	method := func(fdp *descriptorpb.FileDescriptorProto, name string) *descriptorpb.MethodDescriptorProto {
		for _, m := range fdp.Service[0].Method {
			if m.GetName() == name {
				return m
			}
		}
		t.Fatalf("the contract has no method %s: the test's change no longer applies", name)
		return nil
	}
	broken := []struct {
		name, want string
		edit       func(*descriptorpb.FileDescriptorProto)
	}{
		{"GetBook renamed", "/folio.book.v1.BookService/GetBook: the gateway forwards it, the contract has no such procedure",
			func(fdp *descriptorpb.FileDescriptorProto) { method(fdp, "GetBook").Name = proto.String("FetchBook") }},
		{"the service renamed", "the contract has no service folio.book.v1.BookService",
			func(fdp *descriptorpb.FileDescriptorProto) { fdp.Service[0].Name = proto.String("Catalogue") }},
		{"ListBooks no longer free of side effects", "/folio.book.v1.BookService/ListBooks: may change books",
			func(fdp *descriptorpb.FileDescriptorProto) { method(fdp, "ListBooks").Options = nil }},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			v := rpcRouteViolations(brokenContract(t, b.edit))
			t.Logf("violations:\n%s", strings.Join(v, "\n"))
			if !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, b.want) }) {
				t.Errorf("a contract where %s still agrees with the gateway (want a violation with %q)", b.name, b.want)
			}
		})
	}
}
