package broker

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FOLIO_RABBITMQ_CA must name a readable PEM file: a typo must not fall back to
// the system's roots unnoticed.
func TestRabbitMQCARejected(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{filepath.Join(t.TempDir(), "missing.pem"), notPEM} {
		cfg := Config{Kind: "rabbitmq", RabbitMQURL: "amqps://127.0.0.1:1/", RabbitMQCA: ca, Stream: "S", Prefix: "p"}
		if b, err := Open(context.Background(), cfg, nil, nil); err == nil {
			_ = b.Close()
			t.Errorf("Open with FOLIO_RABBITMQ_CA=%s succeeded", ca)
		}
	}
}
