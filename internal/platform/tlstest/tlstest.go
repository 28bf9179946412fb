// Package tlstest makes certificates in tests: a CA, and the server and client
// certificates it issues, with the CA's certificate and the client's files
// written as PEM. The brokers' TLS tests and Compose's Kafka override test
// each need a CA of their own that nothing else trusts, so that a test can
// show a connection is refused without it.
package tlstest

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
)

// CA is a certificate authority made for one test.
type CA struct {
	Cert *x509.Certificate // to trust it, as in a pool of client CAs
	PEM  []byte            // Cert, PEM-encoded, as a program's CA file holds it
	File string            // a file holding PEM, in the test's temporary directory
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA named name, valid from an hour before now to an hour after
// (a margin for clocks, not a test of expiry), and writes its certificate to
// File.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
	ca.File = writeFile(tb, tb.TempDir(), "ca.pem", ca.PEM)
	return ca
}

// ServerTLS is a server's TLS configuration with a certificate of ca for hosts
// (IP addresses or DNS names), TLS 1.2 at least.
func (ca *CA) ServerTLS(tb testing.TB, hosts ...string) *tls.Config {
	tb.Helper()
	cert, _, _ := ca.issue(tb, x509.ExtKeyUsageServerAuth, hosts)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// ClientFiles issues a client certificate named name and writes it and its
// key as PEM files, as a program's certificate and key settings name them.
func (ca *CA) ClientFiles(tb testing.TB, name string) (certFile, keyFile string) {
	tb.Helper()
	_, certPEM, keyPEM := ca.issue(tb, x509.ExtKeyUsageClientAuth, []string{name})
	dir := tb.TempDir()
	return writeFile(tb, dir, "cert.pem", certPEM), writeFile(tb, dir, "key.pem", keyPEM)
}

// issue signs a certificate for usage and names (the first its common name,
// each an IP address or DNS name of it), with a random serial so that the
// certificates of one CA differ.
func (ca *CA) issue(tb testing.TB, usage x509.ExtKeyUsage, names []string) (cert tls.Certificate, certPEM, keyPEM []byte) {
	tb.Helper()
	if len(names) == 0 {
		tb.Fatal("tlstest: a certificate needs a name")
	}
	key := newKey(tb)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// writeFile writes b to dir/name, readable by the test's user alone, as a
// secret is, and returns its path.
func writeFile(tb testing.TB, dir, name string, b []byte) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
