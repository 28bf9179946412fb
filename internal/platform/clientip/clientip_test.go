package clientip

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{in: "", want: ""},
		{in: "  ", want: ""},
		{in: "127.0.0.0/8,::1", want: "127.0.0.0/8,::1/128"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "192.0.2.7", want: "192.0.2.7/32"},
		{in: " 10.0.0.0/8 , fd00::/8 ,", want: "10.0.0.0/8,fd00::/8"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},
		{in: "10.0.0.0/33", err: true},
		{in: "proxy.internal", err: true},
		{in: "10.0.0.1,nope", err: true},
	} {
		p, err := Parse(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("Parse(%q): got %v, want an error", tc.in, p)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("Parse(%q): got %q, %v, want %q", tc.in, p.String(), err, tc.want)
		}
	}
}

func TestAddr(t *testing.T) {
	trusted, err := Parse("127.0.0.0/8,::1,10.0.0.0/8,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		proxies Proxies
		remote  string
		xff     []string
		want    string
	}{
		{name: "no proxies trusted: the peer, whatever the header says", remote: "203.0.113.9:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "loopback peer but nothing trusted", remote: "127.0.0.1:4000", xff: []string{"198.51.100.1"}, want: "127.0.0.1"},
		{name: "untrusted peer's header is ignored", proxies: trusted, remote: "203.0.113.9:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "trusted peer without a header", proxies: trusted, remote: "127.0.0.1:4000", want: "127.0.0.1"},
		{name: "trusted peer names the client", proxies: trusted, remote: "127.0.0.1:4000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "client-forged entries left of the client are skipped", proxies: trusted, remote: "127.0.0.1:4000",
			xff: []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "chain of trusted proxies walked right to left", proxies: trusted, remote: "127.0.0.1:4000",
			xff: []string{"1.1.1.1, 198.51.100.1, 10.0.0.5, 10.0.0.6"}, want: "198.51.100.1"},
		{name: "several header lines read as one list", proxies: trusted, remote: "127.0.0.1:4000",
			xff: []string{"1.1.1.1, 198.51.100.1", "10.0.0.5"}, want: "198.51.100.1"},
		{name: "every hop trusted: the leftmost", proxies: trusted, remote: "127.0.0.1:4000", xff: []string{"10.0.0.1, 10.0.0.2"}, want: "10.0.0.1"},
		{name: "malformed entry stops at the hop that passed it on", proxies: trusted, remote: "127.0.0.1:4000",
			xff: []string{"198.51.100.1, bogus, 10.0.0.5"}, want: "10.0.0.5"},
		{name: "malformed only entry: the peer", proxies: trusted, remote: "127.0.0.1:4000", xff: []string{"not-an-ip"}, want: "127.0.0.1"},
		{name: "empty entry", proxies: trusted, remote: "127.0.0.1:4000", xff: []string{"198.51.100.1,,"}, want: "127.0.0.1"},
		{name: "entry with a port", proxies: trusted, remote: "127.0.0.1:4000", xff: []string{"198.51.100.1:5555"}, want: "198.51.100.1"},
		{name: "IPv6 peer and client", proxies: trusted, remote: "[::1]:4000", xff: []string{"2001:db8::7"}, want: "2001:db8::7"},
		{name: "bracketed IPv6 entry with port", proxies: trusted, remote: "[::1]:4000", xff: []string{"[2001:db8::7]:443"}, want: "2001:db8::7"},
		{name: "bracketed IPv6 entry", proxies: trusted, remote: "[::1]:4000", xff: []string{"[2001:db8::7]"}, want: "2001:db8::7"},
		{name: "trusted IPv6 proxy in the chain", proxies: trusted, remote: "[::1]:4000", xff: []string{"2001:db8::7, fd00::1"}, want: "2001:db8::7"},
		{name: "untrusted IPv6 peer", proxies: trusted, remote: "[2001:db8::9]:4000", xff: []string{"2001:db8::7"}, want: "2001:db8::9"},
		{name: "IPv4-mapped peer is IPv4", proxies: trusted, remote: "[::ffff:127.0.0.1]:4000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "IPv4-mapped client is IPv4", proxies: trusted, remote: "127.0.0.1:4000", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "IPv4-mapped trusted hop is trusted", proxies: trusted, remote: "127.0.0.1:4000", xff: []string{"198.51.100.1, ::ffff:10.0.0.5"}, want: "198.51.100.1"},
		{name: "zone dropped", proxies: trusted, remote: "[fe80::1%eth0]:4000", want: "fe80::1"},
		{name: "remote without a port", proxies: trusted, remote: "203.0.113.9", want: "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tc.proxies.Addr(r); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTrusts(t *testing.T) {
	p, err := Parse("10.0.0.0/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.2.3.4": true, "::ffff:10.2.3.4": true, "11.0.0.1": false, "::1": true, "::2": false, "127.0.0.1": false,
	} {
		if got := p.Trusts(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Trusts(%s): got %v, want %v", addr, got, want)
		}
	}
}
