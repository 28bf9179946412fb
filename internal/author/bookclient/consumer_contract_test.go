package bookclient_test

// The author service's consumer-driven contract with the book service: every
// request its book client sends, and every field and header it reads, held to the
// book service's published OpenAPI document (read from its file: the author
// packages import nothing of the book service). Each check is also run on copies
// of the document broken the ways a provider could break this client, and must
// catch them.

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/openapi3gen"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/author"
	"folio/internal/author/bookclient"
	"folio/internal/platform/logging"
	"folio/internal/platform/problem"
	"folio/internal/platform/resilient"
	"folio/internal/platform/rest/openapicheck"
)

// loadBookDocument loads the book service's document, changed by edit when it is
// not nil, with its requests routed for serverURL.
func loadBookDocument(t *testing.T, serverURL string, edit func(*openapi3.T)) (*openapi3.T, routers.Router) {
	t.Helper()
	spec, err := os.ReadFile(bookOpenAPIFile)
	if err != nil {
		t.Fatalf("the book service's OpenAPI document: %v", err)
	}
	doc := openapicheck.Load(t, spec, serverURL).T
	if edit != nil {
		edit(doc)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route the OpenAPI document: %v", err)
	}
	return doc, router
}

// sentSearches are the searches whose requests are checked: every field of
// author.BookSearch, alone and together, as the author service's listings and
// genre calls make them.
var sentSearches = []author.BookSearch{
	{},
	{Genre: "science-fiction"},
	{AuthorID: "0190c5a6-0000-7000-8000-000000000001", Limit: 100, Cursor: "MDE5MGM1YTYtMDAwMA"},
	{Genre: "fantasy", AuthorID: "0190c5a6-0000-7000-8000-000000000002", Limit: 1, IfNoneMatch: `W/"g1-abc"`},
}

// sendSearches has the client, over the resilient HTTP client a deployed author
// service gives it, send each search to a server that keeps the requests as they
// arrived and answers as the book service would. It returns the server's URL.
func sendSearches(t *testing.T) (string, []*http.Request) {
	t.Helper()
	var mu sync.Mutex
	var got []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept := r.Clone(context.Background())
		kept.URL.Scheme, kept.URL.Host, kept.RequestURI = "http", r.Host, ""
		mu.Lock()
		got = append(got, kept)
		mu.Unlock()
		if r.Header.Get("If-None-Match") != "" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[],"next_cursor":null}`)
	}))
	t.Cleanup(srv.Close)
	client := bookclient.New(srv.URL, resilient.NewClient(resilient.DefaultConfig("book"), prometheus.NewRegistry()))
	ctx := logging.WithRequestID(context.Background(), "req-contract")
	for _, s := range sentSearches {
		if _, err := client.ListBooks(ctx, s); err != nil {
			t.Fatalf("ListBooks(%+v): %v", s, err)
		}
	}
	if len(got) != len(sentSearches) {
		t.Fatalf("the server saw %d requests for %d searches", len(got), len(sentSearches))
	}
	return srv.URL, got
}

// transportHeaders are headers of HTTP and of Folio's platform (request id, trace
// context), which no operation declares; any other header the client sends is
// part of the API and must be a parameter of the operation.
var transportHeaders = []string{"Accept", "Accept-Encoding", "User-Agent", "Connection", "Content-Length",
	"Content-Type", "Authorization", "X-Request-Id", "Traceparent", "Tracestate", "Baggage"}

// requestViolations says how req is not a request the document accepts: its route,
// its parameters' and security's validation, and query parameters or headers the
// operation does not declare (which the provider would ignore or refuse).
func requestViolations(router routers.Router, req *http.Request) []string {
	what := req.Method + " " + req.URL.RequestURI()
	route, pathParams, err := router.FindRoute(req)
	if err != nil {
		return []string{fmt.Sprintf("%s: not in the document: %v", what, err)}
	}
	var out []string
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: bearerPresent,
			// Defaults filled in would change the kept request for the next check.
			SkipSettingDefaults: true}}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		out = append(out, fmt.Sprintf("%s: %v", what, err))
	}
	declared := map[string]bool{}
	for _, p := range slices.Concat(route.PathItem.Parameters, route.Operation.Parameters) {
		declared[p.Value.In+":"+http.CanonicalHeaderKey(p.Value.Name)] = true
	}
	for name := range req.URL.Query() {
		if !declared["query:"+http.CanonicalHeaderKey(name)] {
			out = append(out, fmt.Sprintf("%s: query parameter %q is not in the document", what, name))
		}
	}
	for name := range req.Header {
		if !slices.Contains(transportHeaders, name) && !declared["header:"+name] {
			out = append(out, fmt.Sprintf("%s: header %q is not in the document", what, name))
		}
	}
	return out
}

// bearerPresent satisfies a bearer security scheme with an Authorization: Bearer
// header, and nothing else: a requirement the client sends no token for fails.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type == "http" && strings.EqualFold(s.Scheme, "bearer") &&
		strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
		return nil
	}
	return fmt.Errorf("no credentials for security scheme %s", in.SecuritySchemeName)
}

func TestBookClientRequestsAreInTheBookDocument(t *testing.T) {
	url, sent := sendSearches(t)
	check := func(edit func(*openapi3.T)) []string {
		_, router := loadBookDocument(t, url, edit)
		var out []string
		for _, req := range sent {
			out = append(out, requestViolations(router, req)...)
		}
		return out
	}
	if v := check(nil); len(v) > 0 {
		t.Errorf("the book client sends requests the book service's document does not accept:\n%s", strings.Join(v, "\n"))
	}

	// Each way the provider could break the client must be caught.
	broken := []struct {
		name, want string
		edit       func(*openapi3.T)
	}{
		{"genre parameter renamed", `query parameter "genre" is not in the document`, func(d *openapi3.T) {
			d.Components.Parameters["Genre"].Value.Name = "category"
		}},
		{"listing needs a token", "security", func(d *openapi3.T) {
			d.Paths.Value("/books").Get.Security = &openapi3.SecurityRequirements{{"bearer": []string{}}}
		}},
		{"limit at most 50", "limit", func(d *openapi3.T) {
			d.Components.Parameters["Limit"].Value.Schema.Value.Max = new(50.0)
		}},
		{"no If-None-Match", `header "If-None-Match" is not in the document`, func(d *openapi3.T) {
			op := d.Paths.Value("/books").Get
			op.Parameters = slices.DeleteFunc(op.Parameters, func(p *openapi3.ParameterRef) bool { return p.Value.Name == "If-None-Match" })
		}},
		{"listing moved", "not in the document", func(d *openapi3.T) {
			d.Paths.Set("/catalogue/books", d.Paths.Value("/books"))
			d.Paths.Delete("/books")
		}},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			v := check(b.edit)
			t.Logf("violations:\n%s", strings.Join(v, "\n"))
			if !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, b.want) }) {
				t.Errorf("a document with the %s still accepts every request (want a violation with %q); violations:\n%s",
					b.name, b.want, strings.Join(v, "\n"))
			}
		})
	}
}

// readSchema is the schema of what the client decodes into v: its JSON fields,
// their types, and which it lets be absent (omitempty, omitzero), as x-omit.
func readSchema(t *testing.T, v any) *openapi3.Schema {
	t.Helper()
	ref, err := openapi3gen.NewSchemaRefForValue(v, nil, openapi3gen.SchemaCustomizer(
		func(_ string, _ reflect.Type, tag reflect.StructTag, s *openapi3.Schema) error {
			if o := tag.Get("json"); strings.Contains(o, ",omitempty") || strings.Contains(o, ",omitzero") {
				s.Extensions = map[string]any{"x-omit": true}
			}
			return nil
		}))
	if err != nil {
		t.Fatalf("the schema of %T: %v", v, err)
	}
	return ref.Value
}

// schemaViolations says where what the client reads (read) is not what the
// document promises (doc): a field it reads that the document lacks, does not
// require (unless the client lets it be absent), gives another type or format, or
// lets be null where the client's field cannot hold null.
func schemaViolations(at string, read, doc *openapi3.Schema) []string {
	want := read.Type.Slice()
	var got []string
	for _, ty := range doc.Type.Slice() {
		if ty != "null" {
			got = append(got, ty)
		}
	}
	if len(want) != 1 || len(got) != 1 || !(got[0] == want[0] || want[0] == "number" && got[0] == "integer") {
		return []string{fmt.Sprintf("%s: the client reads %v, the document gives %v", at, want, doc.Type.Slice())}
	}
	var out []string
	if (doc.Type.IncludesNull() || doc.Nullable) && !read.Nullable {
		out = append(out, fmt.Sprintf("%s: the document lets it be null, the client's field cannot hold null", at))
	}
	if read.Format != "" && read.Format != doc.Format {
		out = append(out, fmt.Sprintf("%s: the client reads format %q, the document gives %q", at, read.Format, doc.Format))
	}
	switch want[0] {
	case "array":
		if doc.Items == nil || doc.Items.Value == nil {
			return append(out, at+": the document gives no item schema")
		}
		out = append(out, schemaViolations(at+"[]", read.Items.Value, doc.Items.Value)...)
	case "object":
		names := make([]string, 0, len(read.Properties))
		for name := range read.Properties {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			p := read.Properties[name].Value
			dp, ok := doc.Properties[name]
			switch {
			case !ok || dp.Value == nil:
				out = append(out, fmt.Sprintf("%s.%s: the client reads it, the document has no such property", at, name))
				continue
			case p.Extensions["x-omit"] == nil && !slices.Contains(doc.Required, name):
				out = append(out, fmt.Sprintf("%s.%s: the client reads it, the document does not promise it (not required)", at, name))
			}
			out = append(out, schemaViolations(at+"."+name, p, dp.Value)...)
		}
	}
	return out
}

// readViolations says how the answers the client reads from GET /books are not ones
// the document promises: the page (200, application/json, with its ETag), the
// 304 it revalidates with, and the problem of a 400 (application/problem+json).
func readViolations(t *testing.T, doc *openapi3.T) []string {
	item := doc.Paths.Find("/books")
	if item == nil || item.Get == nil {
		return []string{"GET /books: not in the document"}
	}
	responses := item.Get.Responses
	var out []string
	content := func(status int, mediaType string) *openapi3.Schema {
		r := responses.Status(status)
		if r == nil || r.Value == nil {
			out = append(out, fmt.Sprintf("GET /books: the client reads a %d, the document has none", status))
			return nil
		}
		mt := r.Value.Content.Get(mediaType)
		if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
			out = append(out, fmt.Sprintf("GET /books %d: the client reads %s, the document gives %v",
				status, mediaType, slices.Sorted(maps.Keys(r.Value.Content))))
			return nil
		}
		return mt.Schema.Value
	}
	if page := content(http.StatusOK, "application/json"); page != nil {
		out = append(out, schemaViolations("GET /books 200", readSchema(t, author.BookListing{}), page)...)
		if r := responses.Status(http.StatusOK).Value; r.Headers["ETag"] == nil {
			out = append(out, "GET /books 200: the client reads its ETag header, the document has none")
		}
	}
	if r := responses.Status(http.StatusNotModified); r == nil {
		out = append(out, "GET /books: the client revalidates with If-None-Match and reads a 304, the document has none")
	}
	if p := content(http.StatusBadRequest, problem.ContentType); p != nil {
		out = append(out, schemaViolations("GET /books 400", readSchema(t, problem.Problem{}), p)...)
	}
	return out
}

func TestBookClientReadsWhatTheBookDocumentPromises(t *testing.T) {
	check := func(edit func(*openapi3.T)) []string {
		doc, _ := loadBookDocument(t, "http://book.invalid", edit)
		return readViolations(t, doc)
	}
	if v := check(nil); len(v) > 0 {
		t.Errorf("the book client reads what the book service's document does not promise:\n%s", strings.Join(v, "\n"))
	}

	book := func(d *openapi3.T) *openapi3.Schema { return d.Components.Schemas["Book"].Value }
	broken := []struct {
		name, want string
		edit       func(*openapi3.T)
	}{
		{"genre renamed", "items[].genre: the client reads it, the document has no such property", func(d *openapi3.T) {
			b := book(d)
			b.Properties["category"] = b.Properties["genre"]
			delete(b.Properties, "genre")
			b.Required = slices.DeleteFunc(b.Required, func(s string) bool { return s == "genre" })
		}},
		{"version a string", "items[].version: the client reads [integer]", func(d *openapi3.T) {
			book(d).Properties["version"] = openapi3.NewStringSchema().NewRef()
		}},
		{"title nullable", "items[].title: the document lets it be null", func(d *openapi3.T) {
			book(d).Properties["title"] = &openapi3.SchemaRef{Value: &openapi3.Schema{Type: &openapi3.Types{"string", "null"}}}
		}},
		{"created_at a date", `items[].created_at: the client reads format "date-time"`, func(d *openapi3.T) {
			book(d).Properties["created_at"] = openapi3.NewDateTimeSchema().WithFormat("date").NewRef()
		}},
		{"next_cursor optional", "next_cursor: the client reads it, the document does not promise it", func(d *openapi3.T) {
			d.Components.Schemas["BookPage"].Value.Required = []string{"items"}
		}},
		{"no ETag", "ETag header", func(d *openapi3.T) {
			delete(d.Paths.Value("/books").Get.Responses.Status(http.StatusOK).Value.Headers, "ETag")
		}},
		{"no 304", "304", func(d *openapi3.T) {
			d.Paths.Value("/books").Get.Responses.Delete("304")
		}},
		{"problem as application/json", "application/problem+json", func(d *openapi3.T) {
			r := d.Components.Responses["Malformed"].Value
			r.Content = openapi3.Content{"application/json": r.Content.Get(problem.ContentType)}
		}},
		{"problem errors renamed", "GET /books 400.errors[].field", func(d *openapi3.T) {
			items := d.Components.Schemas["Problem"].Value.Properties["errors"].Value.Items.Value
			items.Properties["name"] = items.Properties["field"]
			delete(items.Properties, "field")
		}},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			v := check(b.edit)
			t.Logf("violations:\n%s", strings.Join(v, "\n"))
			if !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, b.want) }) {
				t.Errorf("a document with %s still promises all the client reads (want a violation with %q); violations:\n%s",
					b.name, b.want, strings.Join(v, "\n"))
			}
		})
	}
}
