package e2e

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"folio/internal/platform/polltest"
)

// otlpSpan is a span as an OTLP receiver got it, with the program that sent it.
type otlpSpan struct {
	service, name       string
	kind                tracepb.Span_SpanKind
	traceID, id, parent string
	links               []string // linked span ids
	attrs               map[string]string
}

func (s otlpSpan) String() string {
	return fmt.Sprintf("%s %q (%s) trace %s span %s parent %s", s.service, s.name, s.kind, s.traceID, s.id, s.parent)
}

// otlpReceiver is an OTLP/HTTP trace receiver: what the programs export to when
// OTEL_EXPORTER_OTLP_ENDPOINT names it. It decodes the OTLP protobufs.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		body := io.Reader(req.Body)
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		b, err := io.ReadAll(body)
		var export coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &export)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add(&export)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) add(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.ResourceSpans {
		service := ""
		for _, a := range rs.Resource.GetAttributes() {
			if a.Key == "service.name" {
				service = a.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := otlpSpan{service: service, name: s.Name, kind: s.Kind, traceID: hex.EncodeToString(s.TraceId),
					id: hex.EncodeToString(s.SpanId), parent: hex.EncodeToString(s.ParentSpanId), attrs: map[string]string{}}
				for _, l := range s.Links {
					sp.links = append(sp.links, hex.EncodeToString(l.SpanId))
				}
				for _, a := range s.Attributes {
					sp.attrs[a.Key] = a.Value.GetStringValue()
					if _, ok := a.Value.Value.(*commonpb.AnyValue_IntValue); ok {
						sp.attrs[a.Key] = fmt.Sprint(a.Value.GetIntValue())
					}
				}
				r.spans = append(r.spans, sp)
			}
		}
	}
}

// trace returns the spans received of trace id, or of every trace when id is "".
func (r *otlpReceiver) trace(id string) []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otlpSpan
	for _, s := range r.spans {
		if id == "" || s.traceID == id {
			out = append(out, s)
		}
	}
	return out
}

// served returns the last server span of spans from service for a request of
// method on path (the gateway's routes are prefixes, so its spans' names are
// the prefix's).
func served(spans []otlpSpan, service, method, path string) (otlpSpan, bool) {
	var found otlpSpan
	for _, s := range spans {
		if s.service == service && s.kind == tracepb.Span_SPAN_KIND_SERVER &&
			s.attrs["http.request.method"] == method && s.attrs["url.path"] == path {
			found = s
		}
	}
	return found, found.id != ""
}

// child returns the span of spans whose parent is parent, from service, of kind,
// other than the database's (client spans too).
func child(spans []otlpSpan, parent otlpSpan, service string, kind tracepb.Span_SpanKind) (otlpSpan, bool) {
	for _, s := range spans {
		if _, db := s.attrs["db.system.name"]; !db && s.parent == parent.id && s.service == service && s.kind == kind {
			return s, true
		}
	}
	return otlpSpan{}, false
}

// hookReceiver is a webhook subscriber that records the traceparent of every
// delivery it gets, by webhook-id.
type hookReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	tps map[string]string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{tps: map[string]string{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		h.mu.Lock()
		h.tps[req.Header.Get("webhook-id")] = req.Header.Get("traceparent")
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) traceparents() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, tp := range h.tps {
		out = append(out, tp)
	}
	return out
}

// TestOneTraceCrossesEverything starts the real programs exporting their spans
// to an OTLP receiver in the test, and follows two requests through the gateway:
// the genre call (gateway → author → book), and a book's creation, whose trace
// goes on through the outbox relay and the broker into the author service's
// consumer (book_count) and the notify service, and out to the subscriber of a
// webhook, whose traceparent names the same trace.
func TestOneTraceCrossesEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	requireIntegration(t, "FOLIO_TEST_NATS_URL", "events need a NATS server")
	otlp := newOTLPReceiver(t)
	hooks := newHookReceiver(t)
	tracing := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100"}

	auth := startExtra(t, "auth", anyAddr, append(slices.Clone(tracing),
		"FOLIO_ADMIN_EMAIL="+gatewayAdminEmail, "FOLIO_ADMIN_PASSWORD="+gatewayAdminPassword)...)
	withAuth := append(slices.Clone(tracing), authJWKS(auth))
	author, book := startPair(t, withAuth, withAuth)
	notify := startService(t, "notify", anyAddr, append(slices.Clone(withAuth), "FOLIO_WEBHOOK_ALLOW_PRIVATE=1")...)
	gw := startExtra(t, "gateway", anyAddr, append(gatewayEnv(auth, author, []*service{book},
		"FOLIO_NOTIFY_URLS="+notify.URL()), tracing...)...)
	g := gw.URL()

	admin := bearer((&gatewaySystem{g: g}).token(t, gatewayAdminEmail, gatewayAdminPassword))
	r := call(t, "POST", g+"/subscriptions", map[string]any{"url": hooks.srv.URL + "/hook", "events": []string{"book.created"},
		"secret": webhookSecret}, "Authorization", admin)
	expect(t, r, http.StatusCreated)
	r = call(t, "POST", g+"/authors", map[string]any{"name": "Ursula K. Le Guin"}, "Authorization", admin)
	expect(t, r, http.StatusCreated)
	authorID := r.json(t)["id"].(string)
	// A client's trace context does not reach inside: the gateway starts its own.
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	r = call(t, "POST", g+"/books", map[string]any{"title": "The Dispossessed", "author_id": authorID, "genre": "utopia"},
		"Authorization", admin, "traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	expect(t, r, http.StatusCreated)
	polltest.Until(t, "the author's book_count to count the book", func() error {
		r := call(t, "GET", g+"/authors/"+authorID, nil)
		if n, _ := r.json(t)["book_count"].(float64); n != 1 {
			return fmt.Errorf("book_count %v, want 1", r.json(t)["book_count"])
		}
		return nil
	})
	expect(t, call(t, "GET", g+"/authors/books?genre=utopia", nil), http.StatusOK)

	if spans := otlp.trace(clientTrace); len(spans) > 0 {
		t.Errorf("spans recorded in the client's own trace: %v", spans)
	}

	// (a) The genre call: gateway → author → book, each span the child of the last.
	t.Run("genre call", func(t *testing.T) {
		polltest.Until(t, "the genre call's trace", func() error {
			all := otlp.trace("")
			gwSpan, ok := served(all, "gateway", "GET", "/authors/books")
			if !ok {
				return fmt.Errorf("no gateway span GET /authors/books among %d spans", len(all))
			}
			spans := otlp.trace(gwSpan.traceID)
			path := []struct {
				service string
				kind    tracepb.Span_SpanKind
			}{
				{"gateway", tracepb.Span_SPAN_KIND_CLIENT}, {"author", tracepb.Span_SPAN_KIND_SERVER},
				{"author", tracepb.Span_SPAN_KIND_CLIENT}, {"book", tracepb.Span_SPAN_KIND_SERVER},
			}
			at := gwSpan
			for _, step := range path {
				next, ok := child(spans, at, step.service, step.kind)
				if !ok {
					return fmt.Errorf("no %s %s span under %v in:\n%s", step.service, step.kind, at, lines(spans))
				}
				at = next
			}
			if at.name != "GET /books" {
				return fmt.Errorf("the book service's span is %q, want GET /books", at.name)
			}
			return nil
		})
	})

	// (b) The book's creation: gateway → book → relay → broker → author's and
	// notify's consumers → the webhook delivery, all in one trace.
	t.Run("book creation to webhook", func(t *testing.T) {
		polltest.Until(t, "the book creation's trace", func() error {
			all := otlp.trace("")
			gwSpan, ok := served(all, "gateway", "POST", "/books")
			if !ok {
				return fmt.Errorf("no gateway span POST /books among %d spans", len(all))
			}
			spans := otlp.trace(gwSpan.traceID)
			if len(gwSpan.links) != 1 {
				return fmt.Errorf("the gateway's span links %v, want the client's span", gwSpan.links)
			}
			proxied, ok := child(spans, gwSpan, "gateway", tracepb.Span_SPAN_KIND_CLIENT)
			if !ok {
				return fmt.Errorf("no gateway client span in:\n%s", lines(spans))
			}
			bookSpan, ok := child(spans, proxied, "book", tracepb.Span_SPAN_KIND_SERVER)
			if !ok || bookSpan.name != "POST /books" {
				return fmt.Errorf("no book span POST /books under the gateway's call in:\n%s", lines(spans))
			}
			send, ok := child(spans, bookSpan, "book", tracepb.Span_SPAN_KIND_PRODUCER)
			if !ok || !strings.HasSuffix(send.name, ".book.created") || send.attrs["messaging.message.id"] == "" {
				return fmt.Errorf("no producer span of book.created under the book's span in:\n%s", lines(spans))
			}
			for _, consumer := range []string{"author", "notify"} {
				process, ok := child(spans, send, consumer, tracepb.Span_SPAN_KIND_CONSUMER)
				if !ok || !slices.Contains(process.links, send.id) {
					return fmt.Errorf("no %s consumer span under and linked to the producer span in:\n%s", consumer, lines(spans))
				}
			}
			var deliveries []otlpSpan
			for _, s := range spans {
				if s.service == "notify" && s.kind == tracepb.Span_SPAN_KIND_CLIENT {
					deliveries = append(deliveries, s)
				}
			}
			if len(deliveries) == 0 {
				return fmt.Errorf("no webhook POST span from notify in:\n%s", lines(spans))
			}
			tps := hooks.traceparents()
			for _, d := range deliveries {
				if slices.Contains(tps, "00-"+d.traceID+"-"+d.id+"-01") {
					return nil
				}
			}
			return fmt.Errorf("the subscriber got traceparents %q, want the webhook POST span's %v", tps, deliveries)
		})
	})
}

// lines shows spans one per line.
func lines(spans []otlpSpan) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString("  " + s.String() + "\n")
	}
	return b.String()
}
