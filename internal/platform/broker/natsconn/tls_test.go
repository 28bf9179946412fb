package natsconn

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"folio/internal/platform/tlstest"
)

// FOLIO_NATS_CA: the programs reach a TLS NATS server, by nats:// or tls://, and
// trust only the CA they are given.
func TestTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "folio test CA")
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, HTTPPort: -1,
		TLSConfig: ca.ServerTLS(t, "127.0.0.1"), TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	hostPort := srv.Addr().String()
	for _, url := range []string{"nats://" + hostPort, "tls://" + hostPort} {
		opts, err := Config{CA: ca.File}.Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			t.Errorf("%s with the CA: %v", url, err)
			continue
		}
		if _, err := nc.TLSConnectionState(); err != nil {
			t.Errorf("%s: not over TLS: %v", url, err)
		}
		nc.Close()
		// Without it, the server's certificate is not trusted.
		if nc, err := nats.Connect(url); err == nil {
			nc.Close()
			t.Errorf("%s without the CA: connected", url)
		}
	}
}

// FOLIO_NATS_USER and FOLIO_NATS_PASSWORD, for servers configured with users.
func TestUserPassword(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, HTTPPort: -1,
		Users: []*server.User{{Username: "book", Password: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	for _, tt := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{User: "book", Password: "s3cret"}, true},
		{Config{User: "book", Password: "wrong"}, false},
		{Config{}, false},
	} {
		opts, err := tt.cfg.Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.ClientURL(), opts...)
		if err == nil {
			nc.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("user %q: connect error %v, want ok=%v", tt.cfg.User, err, tt.ok)
		}
	}
}
