package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/authn"
	"folio/internal/platform/clientip"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/metrics"
)

// rawAnswer is what a server answered a request written byte by byte.
type rawAnswer struct {
	status      int
	contentType string
	body        string
}

// rawRequest writes head (the request line and headers, without the blank line)
// and then body to base's host over a new TCP connection, and reads the answer.
// The body is written concurrently, so that a server answering before reading it
// all is seen answering.
func rawRequest(t *testing.T, base, head string, body []byte) rawAnswer {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		// A server that has answered may close before reading the rest; that is no
		// failure of the test.
		_, _ = io.WriteString(conn, head+"\r\n\r\n")
		_, _ = conn.Write(body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(b)}
}

// chunked encodes n bytes of JSON-ish filler as a well-formed chunked body.
func chunked(n int) []byte {
	var b strings.Builder
	chunk := strings.Repeat("a", 32<<10)
	for n > 0 {
		c := chunk[:min(n, len(chunk))]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(c), c)
		n -= len(c)
	}
	b.WriteString("0\r\n\r\n")
	return []byte(b.String())
}

// directServer is a service reached without the gateway: the chassis around a route
// that reads its body, as every service's write routes do.
func directServer(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /books", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	srv := httptest.NewServer(httpserver.New(httpserver.Config{}, log, prometheus.NewRegistry(), mux, nil,
		func(context.Context) error { return nil }).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// scrapeMetrics returns what the metrics listener serves for reg.
func scrapeMetrics(reg *prometheus.Registry) string {
	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// TestBodyErrorsAreTheClients replays finding 7 of issue 8: a chunked body over the
// limit, or a malformed one, sent through the gateway got 502, as if the service had
// failed; a service reached directly answers 413 and 400.
func TestBodyErrorsAreTheClients(t *testing.T) {
	h := newHarness(t, nil)
	token := h.token("editor-1", []string{authn.RoleEditor})
	head := "POST /books HTTP/1.1\r\nHost: folio\r\nContent-Type: application/json\r\nAuthorization: Bearer " + token
	for _, tc := range []struct {
		name   string
		head   string
		body   []byte
		status int
	}{
		{"chunked body over 1 MiB", head + "\r\nTransfer-Encoding: chunked", chunked(httpserver.MaxBodyBytes + 4096), http.StatusRequestEntityTooLarge},
		{"chunked body of 4 MiB in one chunk", head + "\r\nTransfer-Encoding: chunked",
			[]byte(fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 4<<20, strings.Repeat("a", 4<<20))), http.StatusRequestEntityTooLarge},
		{"chunk size not hex", head + "\r\nTransfer-Encoding: chunked", []byte("5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"), http.StatusBadRequest},
		{"first chunk size not hex", head + "\r\nTransfer-Encoding: chunked", []byte("xyz\r\nhello\r\n0\r\n\r\n"), http.StatusBadRequest},
		{"chunk without its line end", head + "\r\nTransfer-Encoding: chunked", []byte("5\r\nhelloXX0\r\n\r\n"), http.StatusBadRequest},
		{"chunk size overflowing", head + "\r\nTransfer-Encoding: chunked", []byte("fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			direct := rawRequest(t, directServer(t), tc.head, tc.body)
			got := rawRequest(t, h.url, tc.head, tc.body)
			if got.status != tc.status || direct.status != tc.status {
				t.Fatalf("through the gateway %d (%s), directly %d; want %d both", got.status, got.body, direct.status, tc.status)
			}
			if !strings.HasPrefix(got.contentType, "application/problem+json") && got.contentType != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q, want problem+json", got.contentType)
			}
			if got.status >= 500 {
				t.Errorf("the gateway blamed the service: %d %s", got.status, got.body)
			}
		})
	}
}

// TestContentLengthWithChunked: a request with both framings is read as chunked
// (RFC 9112 6.3), by the gateway as by a service, and the service gets the body
// re-framed, so a request smuggled behind a short Content-Length never reaches it as
// a request of its own.
func TestContentLengthWithChunked(t *testing.T) {
	var hits atomic.Int64
	h := newHarness(t, func(c *Config) { c.Instances[ServiceBook] = []string{newEcho(t, ServiceBook, "book-0", &hits).URL} })
	token := h.token("editor-1", []string{authn.RoleEditor})
	smuggled := "GET /books/smuggled HTTP/1.1\r\nHost: folio\r\n\r\n"
	body := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
	head := "POST /books HTTP/1.1\r\nHost: folio\r\nContent-Type: application/json\r\nAuthorization: Bearer " + token +
		"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close"
	direct := rawRequest(t, directServer(t), head, []byte(body))
	got := rawRequest(t, h.url, head, []byte(body))
	if got.status >= 500 || direct.status >= 500 {
		t.Fatalf("through the gateway %d (%s), directly %d; want no 5xx", got.status, got.body, direct.status)
	}
	if got.status == http.StatusOK {
		var e echoed
		if err := json.Unmarshal([]byte(got.body), &e); err != nil {
			t.Fatal(err)
		}
		if e.Body != smuggled || e.Header.Get("Content-Length") != "" {
			t.Errorf("the service saw body %q with Content-Length %q, want the whole chunked body", e.Body, e.Header.Get("Content-Length"))
		}
	}
	if n := hits.Load(); n > 1 {
		t.Errorf("the service was called %d times: a request was smuggled", n)
	}
}

// TestBodyLimitNotForwarded: the gateway never sends a service more than 1 MiB of
// body, whatever the client streams.
func TestBodyLimitNotForwarded(t *testing.T) {
	received := make(chan int, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received <- int(n)
	}))
	t.Cleanup(upstream.Close)
	h := newHarness(t, func(c *Config) { c.Instances[ServiceBook] = []string{upstream.URL} })
	token := h.token("editor-1", []string{authn.RoleEditor})
	got := rawRequest(t, h.url, "POST /books HTTP/1.1\r\nHost: folio\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer "+token,
		chunked(3<<20))
	if got.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d %s, want 413", got.status, got.body)
	}
	select {
	case n := <-received:
		if n > httpserver.MaxBodyBytes {
			t.Errorf("the service received %d bytes, more than the 1 MiB limit", n)
		}
	case <-time.After(10 * time.Second):
		// The gateway may have failed before the service read anything: nothing forwarded.
	}
}

// TestForwardedFor: the services learn the client's address from X-Forwarded-For,
// so a client must not be able to write it; only a trusted proxy's chain is kept.
func TestForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		name, trusted, sent, want string
	}{
		{name: "client's header replaced by its address", sent: "203.0.113.7", want: "127.0.0.1"},
		{name: "no header: the peer", want: "127.0.0.1"},
		{name: "trusted proxy's chain kept, proxy appended", trusted: "127.0.0.0/8", sent: "203.0.113.7, 10.0.0.2", want: "203.0.113.7, 10.0.0.2, 127.0.0.1"},
		{name: "other proxies' chains are not kept", trusted: "10.0.0.0/8", sent: "203.0.113.7", want: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxies, err := clientip.Parse(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, func(c *Config) { c.Proxies = proxies })
			hdr := map[string]string{}
			if tc.sent != "" {
				hdr["X-Forwarded-For"] = tc.sent
			}
			r := h.do("GET", "/books", "", "", hdr)
			var e echoed
			if err := json.Unmarshal(r.body, &e); err != nil {
				t.Fatalf("upstream answer %d %q: %v", r.status, r.body, err)
			}
			if got := strings.Join(e.Header.Values("X-Forwarded-For"), ", "); got != tc.want {
				t.Errorf("the service saw X-Forwarded-For %q, want %q", got, tc.want)
			}
		})
	}
}
