// Package clientip finds the address of the client behind a request: the
// connection's peer, or, when that peer is a proxy the operator trusts, the first
// untrusted hop that the proxies recorded in X-Forwarded-For.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies is the set of addresses whose X-Forwarded-For is believed. The zero value
// trusts nobody.
type Proxies struct {
	prefixes []netip.Prefix
}

// Parse reads a comma-separated list of CIDRs ("10.0.0.0/8") or bare IPs
// ("::1"). An empty list trusts no proxy. It returns an error naming the first entry
// that is neither.
func Parse(cidrs string) (Proxies, error) {
	var p Proxies
	for _, field := range strings.Split(cidrs, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		if strings.Contains(field, "/") {
			prefix, err := netip.ParsePrefix(field)
			if err != nil {
				return Proxies{}, fmt.Errorf("trusted proxy %q is not a CIDR: %w", field, err)
			}
			// An IPv4 prefix written in IPv6 form (::ffff:10.0.0.0/104) would never match
			// the unmapped addresses Addr compares.
			if prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
				prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
			}
			p.prefixes = append(p.prefixes, prefix.Masked())
			continue
		}
		addr, err := netip.ParseAddr(field)
		if err != nil {
			return Proxies{}, fmt.Errorf("trusted proxy %q is not an IP address or CIDR: %w", field, err)
		}
		addr = addr.Unmap().WithZone("")
		p.prefixes = append(p.prefixes, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return p, nil
}

// String lists the trusted networks, as Parse reads them.
func (p Proxies) String() string {
	s := make([]string, len(p.prefixes))
	for i, prefix := range p.prefixes {
		s[i] = prefix.String()
	}
	return strings.Join(s, ",")
}

// Trusts reports whether addr is one of the trusted proxies.
func (p Proxies) Trusts(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, prefix := range p.prefixes {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// Addr returns the client's IP address: r.RemoteAddr's host unless that is a
// trusted proxy; then X-Forwarded-For read right to left, skipping trusted proxies,
// and the first untrusted hop is the client. Entries left of that hop were written
// by the client itself and are never believed. A malformed entry ends the walk: the
// trusted hop that passed it on is then the client, as far as anyone can tell.
func (p Proxies) Addr(r *http.Request) string {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	if !p.Trusts(peer) {
		return peer.String()
	}
	client := peer
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = hop
		if !p.Trusts(hop) {
			break
		}
	}
	return client.String()
}

// Peer returns the IP address of r's connection, and whether RemoteAddr held one.
func Peer(r *http.Request) (netip.Addr, bool) {
	return parseHop(r.RemoteAddr)
}

// forwardedFor returns every X-Forwarded-For entry, over all the header's lines, in
// order.
func forwardedFor(h http.Header) []string {
	var hops []string
	for _, line := range h.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

// parseHop reads an address as proxies write them: a bare IP, an IP with a port
// ("192.0.2.1:443", "[2001:db8::1]:443") or a bracketed IPv6 address. IPv4-mapped
// IPv6 addresses become IPv4, and zones are dropped.
func parseHop(s string) (netip.Addr, bool) {
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if addr, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return addr.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}
