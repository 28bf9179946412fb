package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/egress"
	"folio/internal/platform/egress/egresstest"
	"folio/internal/platform/rest/resttest"
)

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"100.64.0.1", false},      // CGNAT
		{"100.127.255.255", false},
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"198.51.100.7", false},
		{"203.0.113.9", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		{"::", false},
		{"::1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.1.2.3", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:0.0.0.0", false},
		{"::127.0.0.1", false}, // IPv4-compatible
		{"::a00:1", false},
		{"64:ff9b::7f00:1", false}, // NAT64 of 127.0.0.1
		{"2002:7f00:1::", false},   // 6to4 of 127.0.0.1
		{"2001::1", false},         // Teredo
		{"2001:db8::1", false},
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"100.63.255.255", true},
		{"100.128.0.0", true},
		{"172.32.0.1", true},
		{"::ffff:8.8.8.8", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:82a::200e", true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := egress.CheckAddr(netip.MustParseAddr(tc.addr))
			if tc.public && err != nil {
				t.Errorf("got %v, want it public", err)
			}
			if !tc.public && !errors.Is(err, egress.ErrForbidden) {
				t.Errorf("got %v, want ErrForbidden", err)
			}
		})
	}
	if err := egress.CheckAddr(netip.Addr{}); !errors.Is(err, egress.ErrForbidden) {
		t.Errorf("the zero address: got %v, want ErrForbidden", err)
	}
}

// hosts is a resolver over a fixed table, so that the tests send no DNS query.
type hosts map[string][]string

func (h hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	names, ok := h[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, n := range names {
		out = append(out, netip.MustParseAddr(n))
	}
	return out, nil
}

func TestCheckURL(t *testing.T) {
	res := hosts{
		"localhost":           {"127.0.0.1", "::1"},
		"internal.example":    {"10.0.0.7"},
		"metadata.example":    {"169.254.169.254"},
		"mixed.example":       {"10.0.0.7", "93.184.215.14"},
		"public.example":      {"93.184.215.14"},
		"public6.example":     {"2606:4700:4700::1111"},
		"mapped.example":      {"::ffff:127.0.0.1"},
		"unspecified.example": {"0.0.0.0"},
	}
	for _, tc := range []struct {
		url  string
		want error // nil, ErrBadURL or ErrForbidden
	}{
		{"https://public.example/hook", nil},
		{"http://public6.example:8443/hook?x=1", nil},
		{"https://mixed.example/hook", nil},   // a dial to the private one is refused then
		{"https://nowhere.example/hook", nil}, // not resolvable now: checked at each dial
		{"https://93.184.215.14/hook", nil},
		{"https://[2606:4700:4700::1111]/hook", nil},
		{"http://127.0.0.1:4222/", egress.ErrForbidden},
		{"http://127.1.2.3/", egress.ErrForbidden},
		{"http://0.0.0.0:8083/", egress.ErrForbidden},
		{"http://[::1]:8083/", egress.ErrForbidden},
		{"http://[::ffff:127.0.0.1]:8083/", egress.ErrForbidden},
		{"http://[fe80::1%25eth0]/", egress.ErrForbidden},
		{"http://169.254.169.254/latest/meta-data/", egress.ErrForbidden},
		{"http://localhost:8083/auth/token", egress.ErrForbidden},
		{"http://internal.example/", egress.ErrForbidden},
		{"http://metadata.example/", egress.ErrForbidden},
		{"http://mapped.example/", egress.ErrForbidden},
		{"http://unspecified.example/", egress.ErrForbidden},
		{"ftp://public.example/hook", egress.ErrBadURL},
		{"file:///etc/passwd", egress.ErrBadURL},
		{"gopher://public.example/", egress.ErrBadURL},
		{"/hook", egress.ErrBadURL},
		{"http://", egress.ErrBadURL},
		{"http://:80/", egress.ErrBadURL},
		{"https://user:pass@public.example/hook", egress.ErrBadURL},
		{"https://user@public.example/hook", egress.ErrBadURL},
		{"https://public.example/hook#frag", egress.ErrBadURL},
		{"http:public.example", egress.ErrBadURL},
		{"http://exa mple.com/", egress.ErrBadURL},
	} {
		t.Run(tc.url, func(t *testing.T) {
			err := egress.Policy{Resolver: res}.CheckURL(context.Background(), tc.url)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			allowed := egress.Policy{AllowPrivate: true, Resolver: res}.CheckURL(context.Background(), tc.url)
			if tc.want == egress.ErrBadURL && !errors.Is(allowed, egress.ErrBadURL) || tc.want != egress.ErrBadURL && allowed != nil {
				t.Errorf("with private addresses allowed: got %v", allowed)
			}
		})
	}
}

// post sends one POST with the policy's client and returns the status or the error.
func post(t *testing.T, p egress.Policy, url string) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Client().Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestClientRefusesPrivateAddresses replays the SSRF: a call to a server on the
// loopback address, by address and by the name localhost, never reaches it while
// the check is on, and does when it is off.
func TestClientRefusesPrivateAddresses(t *testing.T) {
	hits := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits <- struct{}{}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, url := range []string{srv.URL, "http://localhost:" + port, "http://[::ffff:127.0.0.1]:" + port} {
		_, err := post(t, egress.Policy{}, url)
		if !errors.Is(err, egress.ErrForbidden) {
			t.Errorf("%s: got %v, want ErrForbidden", url, err)
		}
		if got := egress.Describe(err); got != "forbidden address" {
			t.Errorf("%s: described as %q, want forbidden address", url, got)
		}
	}
	if len(hits) != 0 {
		t.Fatalf("the server was reached %d times with the check on", len(hits))
	}
	if status, err := post(t, egress.Policy{AllowPrivate: true}, srv.URL); err != nil || status != http.StatusNoContent {
		t.Errorf("with private addresses allowed: got %d, %v, want 204", status, err)
	}
	if len(hits) != 1 {
		t.Errorf("the server was reached %d times with the check off, want 1", len(hits))
	}
}

func TestClientFollowsNoRedirectAndNoProxy(t *testing.T) {
	target := make(chan struct{}, 1)
	dst := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { target <- struct{}{} }))
	defer dst.Close()
	redirect := httptest.NewServer(http.RedirectHandler(dst.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	status, err := post(t, egress.Policy{AllowPrivate: true}, redirect.URL)
	if err != nil || status != http.StatusTemporaryRedirect {
		t.Errorf("got %d, %v, want the 307 itself", status, err)
	}
	if len(target) != 0 {
		t.Error("the redirect was followed")
	}
	// A proxy from the environment would dial for us, out of the dialer's reach.
	if tr, ok := (egress.Policy{}).Client().Transport.(*http.Transport); !ok || tr.Proxy != nil {
		t.Error("the client's transport takes a proxy")
	}
}

// TestDescribeHidesThePeersBytes replays the banner oracle: a peer that answers
// with something that is not HTTP (NATS greets with INFO {...}) shows up as a
// category, never as its bytes.
func TestDescribeHidesThePeersBytes(t *testing.T) {
	const banner = `INFO {"server_id":"NSECRET","version":"2.12.0","auth_required":false}`
	addr := egresstest.NotHTTP(t, banner)
	closedURL := resttest.ClosedURL(t, "http")

	p := egress.Policy{AllowPrivate: true}
	_, err := post(t, p, "http://"+addr)
	if err == nil {
		t.Fatal("the banner was taken for an HTTP answer")
	}
	if got := egress.Describe(err); got != "malformed response" || strings.Contains(got, "INFO") || strings.Contains(got, "NSECRET") {
		t.Errorf("described as %q, want malformed response", got)
	}
	_, err = post(t, p, closedURL)
	if got := egress.Describe(err); got != "connection refused" {
		t.Errorf("nothing listening: described as %q (%v), want connection refused", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if got := egress.Describe(ctx.Err()); got != "timeout" {
		t.Errorf("deadline: described as %q, want timeout", got)
	}
	if got := egress.Describe(&net.DNSError{Err: "no such host", Name: "x.example"}); got != "dns" {
		t.Errorf("dns error: described as %q", got)
	}
	if got := egress.Describe(errors.New(banner)); strings.Contains(got, "NSECRET") {
		t.Errorf("an unknown error was shown: %q", got)
	}
}
