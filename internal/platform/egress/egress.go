// Package egress makes the HTTP calls that go to addresses users choose (webhook URLs)
// safe for the network they leave from: after DNS resolution, every address dialled is
// checked, so that nobody can make Folio call its own loopback, cluster or cloud
// metadata addresses on their behalf (server-side request forgery).
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// ErrForbidden is the error, wrapped, of a dial or check of an address that is not
// public: loopback, private, link-local, shared (CGNAT), unique-local, multicast,
// unspecified, broadcast, reserved, documentation or benchmarking.
var ErrForbidden = errors.New("forbidden address")

// guard holds the address rules: the IANA special-purpose registries for IPv4, and
// everything outside global unicast 2000::/3 (with the special prefixes inside it)
// for IPv6. Kept from a well-kept library rather than a hand-made list, which always
// forgets a range. Ports and networks are not its business here: a public host may
// take webhooks on any port.
var guard = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())

// CheckAddr returns an error wrapping ErrForbidden when addr is not a public unicast
// address. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4
// address it carries; other IPv6 forms that embed IPv4 (IPv4-compatible ::a.b.c.d,
// 6to4, Teredo, NAT64) are refused whatever they carry.
func CheckAddr(addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("%w: no address", ErrForbidden)
	}
	a := addr.Unmap().WithZone("")
	if addr.Zone() != "" || guard.SafeAddr(a) != nil {
		return fmt.Errorf("%w: %s is not a public address", ErrForbidden, addr)
	}
	return nil
}

// Resolver looks a host name up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy says where outbound calls may go.
type Policy struct {
	// AllowPrivate turns the address check off, for local development where the
	// receivers run on the same machine or network.
	AllowPrivate bool
	// Resolver resolves the host names CheckURL checks; nil means the system's.
	// Dialling always uses the system resolver, and checks what it returns.
	Resolver Resolver
}

// Client returns an HTTP client for calls to user-given URLs: every address it
// dials is checked (unless AllowPrivate), no proxy from the environment is used
// (a proxy would dial for us, unchecked), and redirects are not followed (the 3xx
// answer is returned as it is). Deadlines come from each request's context.
func (p Policy) Client() *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !p.AllowPrivate {
		// Control runs for each resolved address just before it is connected to,
		// so a name that resolves to a public address when the subscription was
		// made and to a private one now (DNS rebinding) is still refused.
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: cannot read %q", ErrForbidden, address)
			}
			return CheckAddr(ap.Addr())
		}
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		// A redirect could lead anywhere, a private address included, and a POST
		// followed through a 302 would turn into a GET without its body.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ErrBadURL is CheckURL's error for a URL that is not one Folio calls; its message
// is fit for a client.
var ErrBadURL = errors.New("must be an absolute http or https URL without user information or a fragment")

// CheckURL checks that raw may be called: an absolute http or https URL with a host,
// without user information or a fragment (ErrBadURL); and, unless AllowPrivate, that
// its host is not a non-public address literal and does not resolve only to
// non-public addresses (ErrForbidden). A name that does not resolve at all passes:
// its DNS may not exist yet, and every dial is checked anyway.
func (p Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" ||
		u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return ErrBadURL
	}
	if p.AllowPrivate {
		return nil
	}
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		return CheckAddr(addr)
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil
	}
	for _, a := range addrs {
		if CheckAddr(a) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %s resolves only to addresses that are not public", ErrForbidden, host)
}

// Describe names the kind of failure of a call made with a Policy's client, in a
// few words of Folio's own: "forbidden address", "dns", "connection refused",
// "connection reset", "unreachable", "timeout", "tls", "malformed response",
// "connection closed" or "connection failed". It never repeats what the peer sent,
// so that what is shown to whoever made the call cannot carry a banner or the
// contents of an internal service back to them.
func Describe(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	var alertErr tls.AlertError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var netErr net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrForbidden):
		return "forbidden address"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &alertErr),
		errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &certInvalid):
		return "tls"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case isMalformed(err):
		return "malformed response"
	default:
		return "connection failed"
	}
}

// isMalformed says whether err is net/http's complaint about an answer that is not
// HTTP; the error carries the peer's bytes, which is why it is only classified.
func isMalformed(err error) bool {
	s := err.Error()
	return strings.Contains(s, "malformed") || strings.Contains(s, "server gave HTTP response to HTTPS client")
}
