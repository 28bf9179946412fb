package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// pool trusts the CA as a program does, from its file.
func pool(t *testing.T, ca *CA) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no PEM certificate", ca.File)
	}
	return p
}

// A server certificate verifies for its names under its CA alone: not for
// another name, not under another CA, not as a client's.
func TestServerTLS(t *testing.T) {
	ca, other := NewCA(t, "folio test CA"), NewCA(t, "another CA")
	cfg := ca.ServerTLS(t, "127.0.0.1", "kafka.test")
	if cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 {
		t.Fatalf("MinVersion %x, %d certificates; want TLS 1.2 and one", cfg.MinVersion, len(cfg.Certificates))
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"127.0.0.1", "kafka.test"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(t, ca), DNSName: name}); err != nil {
			t.Errorf("for %s under its CA: %v", name, err)
		}
	}
	for _, tt := range []struct {
		name string
		opts x509.VerifyOptions
	}{
		{"another name", x509.VerifyOptions{Roots: pool(t, ca), DNSName: "kafka.elsewhere.test"}},
		{"another CA", x509.VerifyOptions{Roots: pool(t, other), DNSName: "127.0.0.1"}},
		{"as a client's", x509.VerifyOptions{Roots: pool(t, ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
	} {
		if _, err := leaf.Verify(tt.opts); err == nil {
			t.Errorf("%s: verified", tt.name)
		}
	}
}

// A client's files load as a key pair that verifies as a client's under its
// CA, not as a server's.
func TestClientFiles(t *testing.T) {
	ca := NewCA(t, "folio test CA")
	certFile, keyFile := ca.ClientFiles(t, "book")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf.Subject.CommonName != "book" {
		t.Errorf("common name %q, want book", pair.Leaf.Subject.CommonName)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool(t, ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("as a client's: %v", err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool(t, ca), DNSName: "book"}); err == nil {
		t.Error("verified as a server's")
	}
	for _, f := range []string{certFile, keyFile, ca.File} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}
