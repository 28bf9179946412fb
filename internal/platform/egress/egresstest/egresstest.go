// Package egresstest starts peers that are not what a user-given URL claims, for
// tests of what Folio shows of them when it calls out.
package egresstest

import (
	"bufio"
	"net"
	"testing"
)

// NotHTTP starts a loopback TCP server that answers every connection with the
// line banner, as NATS greets with INFO {...}, and returns its address. It stops
// when the test ends.
func NotHTTP(t testing.TB, banner string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// Read the request line first, so that the banner is taken as the
				// answer every time; sent before it, the client may see an idle
				// connection closed instead, which shows nothing of it either.
				_, _ = bufio.NewReader(c).ReadString('\n')
				_, _ = c.Write([]byte(banner + "\r\n"))
			}()
		}
	}()
	return ln.Addr().String()
}
