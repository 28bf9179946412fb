package natsconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// testCA makes a CA and a certificate it signs for 127.0.0.1; it returns the CA's
// PEM file and the server's TLS configuration.
func testCA(t *testing.T) (string, *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "folio test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// FOLIO_NATS_CA: the programs reach a TLS NATS server, by nats:// or tls://, and
// trust only the CA they are given.
func TestTLS(t *testing.T) {
	caFile, serverTLS := testCA(t)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, HTTPPort: -1,
		TLSConfig: serverTLS, TLS: true})
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
		opts, err := Config{CA: caFile}.Options()
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
