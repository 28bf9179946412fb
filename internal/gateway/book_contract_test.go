package gateway

// The gateway's consumer-driven contract with the book service: the routes it
// proxies to the book service are paths of the book service's published OpenAPI
// document (read from its file: the gateway imports nothing of the book service),
// each documented operation under them reaches the book service through the
// gateway with its method and path, and the gateway asks for a token exactly where
// the document does. Each check is also run on copies of the document broken the
// ways a provider could break the gateway, and must catch them.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"folio/internal/platform/authn"
	"folio/internal/platform/rest/openapicheck"
)

// bookOpenAPIFile is the book service's published document, relative to this
// package's directory.
const bookOpenAPIFile = "../book/httpapi/openapi.json"

// bookDocument loads the book service's document, changed by edit when it is not
// nil.
func bookDocument(t *testing.T, edit func(*openapi3.T)) *openapi3.T {
	t.Helper()
	spec, err := os.ReadFile(bookOpenAPIFile)
	if err != nil {
		t.Fatalf("the book service's OpenAPI document: %v", err)
	}
	doc := openapicheck.Load(t, spec, "http://book.invalid").T
	if edit != nil {
		edit(doc)
	}
	return doc
}

// routedTo is the service the gateway's route table sends path to, or "" when
// none of its routes takes it (the gateway's own /healthz, for one).
func routedTo(path string) string {
	mux := http.NewServeMux()
	for _, r := range routeTable {
		mux.Handle(r.pattern, http.NotFoundHandler())
	}
	_, pattern := mux.Handler(httptest.NewRequest(http.MethodGet, path, nil))
	for _, r := range routeTable {
		if r.pattern == pattern {
			return r.service
		}
	}
	return ""
}

// operation is one documented operation with a concrete path to call it at.
type operation struct {
	method, template, path string
	op                     *openapi3.Operation
}

// sampleBookID fills the {id} of the document's paths.
const sampleBookID = "0190c5a6-0000-7000-8000-0000000000b1"

func operations(doc *openapi3.T) []operation {
	var out []operation
	for _, template := range doc.Paths.InMatchingOrder() {
		path := strings.ReplaceAll(template, "{id}", sampleBookID)
		for method, op := range doc.Paths.Value(template).Operations() {
			out = append(out, operation{method: method, template: template, path: path, op: op})
		}
	}
	slices.SortFunc(out, func(a, b operation) int { return strings.Compare(a.method+" "+a.path, b.method+" "+b.path) })
	return out
}

// needsToken reports whether the document serves op only to a caller with a token:
// none of its security requirements (the operation's, else the document's) is
// the empty one.
func needsToken(doc *openapi3.T, op *openapi3.Operation) bool {
	reqs := doc.Security
	if op.Security != nil {
		reqs = *op.Security
	}
	return len(reqs) > 0 && !slices.ContainsFunc(reqs, func(r openapi3.SecurityRequirement) bool { return len(r) == 0 })
}

// bookRouteViolations says how the gateway's routes to the book service and the
// book service's document disagree. Routing is replayed through the gateway of h,
// whose upstreams echo what reached them: every route of the table that goes to
// the book service must cover a documented path; every documented operation under
// those routes must reach the book service with its method and path when called
// with an editor's token; and called without a token, the gateway must refuse it
// (401) exactly when the document asks for one.
func bookRouteViolations(t *testing.T, h *harness, doc *openapi3.T) []string {
	t.Helper()
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route the OpenAPI document: %v", err)
	}
	ops := operations(doc)
	var out []string
	for _, r := range routeTable {
		if r.service != ServiceBook {
			continue
		}
		covered := slices.ContainsFunc(ops, func(o operation) bool {
			return routedTo(o.path) == ServiceBook && (o.path == r.pattern || strings.HasSuffix(r.pattern, "/") && strings.HasPrefix(o.path, r.pattern))
		})
		if !covered {
			out = append(out, fmt.Sprintf("route %s goes to the book service, whose document has no path under it", r.pattern))
		}
	}

	editor := h.token("contract-editor", []string{authn.RoleEditor})
	proxied := 0
	for _, o := range ops {
		if routedTo(o.path) != ServiceBook {
			continue // not proxied: the gateway answers /healthz and /readyz itself
		}
		proxied++
		what := o.method + " " + o.template
		resp := h.do(o.method, o.path, editor, "", nil)
		if resp.status != http.StatusOK {
			out = append(out, fmt.Sprintf("%s: with an editor's token the gateway answered %d, not the book service", what, resp.status))
			continue
		}
		e := resp.echo(t)
		req, _ := http.NewRequest(e.Method, "http://book.invalid"+e.Path, nil)
		switch route, _, err := router.FindRoute(req); {
		case e.Service != ServiceBook:
			out = append(out, fmt.Sprintf("%s: the gateway sends it to the %s service", what, e.Service))
		case err != nil || route.Operation != o.op:
			out = append(out, fmt.Sprintf("%s: reached the book service as %s %s, which is not the same operation", what, e.Method, e.Path))
		}

		anonymous := h.do(o.method, o.path, "", "", nil)
		refused := anonymous.status == http.StatusUnauthorized
		switch need := needsToken(doc, o.op); {
		case need && !refused:
			out = append(out, fmt.Sprintf("%s: the document asks for a token, the gateway forwards it without one (answered %d)", what, anonymous.status))
		case !need && refused:
			out = append(out, fmt.Sprintf("%s: the document serves it without a token, the gateway refuses it", what))
		}
	}
	if proxied == 0 {
		out = append(out, "the gateway proxies none of the book service's documented operations")
	}
	return out
}

func TestGatewayBookRoutesAgreeWithTheBookDocument(t *testing.T) {
	h := newHarness(t, nil)
	if v := bookRouteViolations(t, h, bookDocument(t, nil)); len(v) > 0 {
		t.Errorf("the gateway and the book service's document disagree:\n%s", strings.Join(v, "\n"))
	}

	// Each way the provider could break the gateway must be caught.
	security := func(reqs ...openapi3.SecurityRequirement) *openapi3.SecurityRequirements {
		s := openapi3.SecurityRequirements(reqs)
		return &s
	}
	broken := []struct {
		name, want string
		edit       func(*openapi3.T)
	}{
		{"reads of a book need a token", "GET /books/{id}: the document asks for a token, the gateway forwards it without one", func(d *openapi3.T) {
			d.Paths.Value("/books/{id}").Get.Security = security(openapi3.SecurityRequirement{"bearer": {}})
		}},
		{"deletes need no token", "DELETE /books/{id}: the document serves it without a token, the gateway refuses it", func(d *openapi3.T) {
			d.Paths.Value("/books/{id}").Delete.Security = security(openapi3.SecurityRequirement{})
		}},
		{"a book's path renamed", "route /books/ goes to the book service, whose document has no path under it", func(d *openapi3.T) {
			d.Paths.Set("/volumes/{id}", d.Paths.Value("/books/{id}"))
			d.Paths.Delete("/books/{id}")
		}},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			v := bookRouteViolations(t, h, bookDocument(t, b.edit))
			t.Logf("violations:\n%s", strings.Join(v, "\n"))
			if !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, b.want) }) {
				t.Errorf("a document where %s still agrees with the gateway (want a violation with %q)", b.name, b.want)
			}
		})
	}
}
