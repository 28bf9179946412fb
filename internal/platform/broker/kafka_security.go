package broker

// The Kafka adapter's TLS and SASL. A cluster that anyone who reaches it may
// write to lets them forge every event, as decision 13 found for NATS; so the
// adapter authenticates with SASL (SCRAM, or PLAIN over TLS only) and checks the
// brokers' certificates, and the cluster's ACLs grant each credential the
// topics it writes (its own source's, its dead letters') and reads, and its own
// consumer groups. Kafka grants writing a topic, not a key, which is why each
// source has a topic of its own (kafka_topics.go): a credential that may
// publish book events cannot publish an account revocation.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The FOLIO_KAFKA_SASL mechanisms.
const (
	kafkaSASLScram512 = "scram-sha-512"
	kafkaSASLScram256 = "scram-sha-256"
	kafkaSASLPlain    = "plain"
)

// kafkaTLSOn reports whether the Kafka connections use TLS.
func (cfg Config) kafkaTLSOn() bool {
	return cfg.KafkaTLS || cfg.KafkaCA != "" || cfg.KafkaCert != "" || cfg.KafkaKey != ""
}

// kafkaMechanism is FOLIO_KAFKA_SASL as the adapter reads it: Kafka's own
// spelling (SCRAM-SHA-512) is accepted too.
func (cfg Config) kafkaMechanism() string {
	return strings.ToLower(strings.TrimSpace(cfg.KafkaSASL))
}

// validateKafkaSecurity checks the TLS and SASL settings without reading their
// files. Errors name the settings, never the password.
func (cfg Config) validateKafkaSecurity() error {
	if (cfg.KafkaCert == "") != (cfg.KafkaKey == "") {
		return errors.New("broker: FOLIO_KAFKA_CERT and FOLIO_KAFKA_KEY go together")
	}
	if cfg.KafkaPassword != "" && cfg.KafkaPasswordFile != "" {
		return errors.New("broker: give one of FOLIO_KAFKA_PASSWORD or FOLIO_KAFKA_PASSWORD_FILE")
	}
	credential := cfg.KafkaUser != "" || cfg.KafkaPassword != "" || cfg.KafkaPasswordFile != ""
	switch mech := cfg.kafkaMechanism(); mech {
	case "":
		// A credential without a mechanism would connect anonymously: the
		// operator meant something else.
		if credential {
			return errors.New("broker: FOLIO_KAFKA_USER or FOLIO_KAFKA_PASSWORD is set but FOLIO_KAFKA_SASL is not: set it to scram-sha-512, scram-sha-256 or plain")
		}
		return nil
	case kafkaSASLScram512, kafkaSASLScram256:
	case kafkaSASLPlain:
		// PLAIN sends the password itself; anyone on the path reads it.
		if !cfg.kafkaTLSOn() {
			return errors.New("broker: FOLIO_KAFKA_SASL=plain without TLS would send FOLIO_KAFKA_PASSWORD in clear: set FOLIO_KAFKA_TLS=true or FOLIO_KAFKA_CA, or use scram-sha-512")
		}
	default:
		return fmt.Errorf("broker: FOLIO_KAFKA_SASL: unknown mechanism %q (want scram-sha-512, scram-sha-256 or plain)", cfg.KafkaSASL)
	}
	if cfg.KafkaUser == "" || cfg.KafkaPassword == "" && cfg.KafkaPasswordFile == "" {
		return fmt.Errorf("broker: FOLIO_KAFKA_SASL=%s needs FOLIO_KAFKA_USER and FOLIO_KAFKA_PASSWORD (or FOLIO_KAFKA_PASSWORD_FILE)", cfg.kafkaMechanism())
	}
	return nil
}

// kafkaSecurityOpts are the client options for cfg's TLS and SASL, once
// validateKafkaSecurity has passed: this reads the files.
func kafkaSecurityOpts(cfg Config, log *slog.Logger) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if cfg.kafkaTLSOn() {
		tc, err := clientTLS("FOLIO_KAFKA", cfg.KafkaCA, cfg.KafkaCert, cfg.KafkaKey)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	mech := cfg.kafkaMechanism()
	if mech == "" {
		return opts, nil
	}
	password, err := cfg.kafkaPassword(log)
	if err != nil {
		return nil, err
	}
	var m sasl.Mechanism
	switch mech {
	case kafkaSASLScram512:
		m = scram.Auth{User: cfg.KafkaUser, Pass: password}.AsSha512Mechanism()
	case kafkaSASLScram256:
		m = scram.Auth{User: cfg.KafkaUser, Pass: password}.AsSha256Mechanism()
	case kafkaSASLPlain:
		m = plain.Auth{User: cfg.KafkaUser, Pass: password}.AsMechanism()
	}
	if !cfg.kafkaTLSOn() {
		// SCRAM keeps the password off the wire, but without TLS the events
		// travel in clear, and a connection can be taken over once it has
		// authenticated (Kafka's SCRAM has no channel binding).
		log.Warn("Kafka SASL without TLS: the credential is not sent, but the events are readable and the connection can be hijacked on the way; set FOLIO_KAFKA_TLS=true or FOLIO_KAFKA_CA",
			"sasl", mech)
	}
	return append(opts, kgo.SASL(m)), nil
}

// kafkaPassword is FOLIO_KAFKA_PASSWORD, or the contents of
// FOLIO_KAFKA_PASSWORD_FILE without its line ending.
func (cfg Config) kafkaPassword(log *slog.Logger) (string, error) {
	if cfg.KafkaPasswordFile == "" {
		return cfg.KafkaPassword, nil
	}
	b, err := os.ReadFile(cfg.KafkaPasswordFile)
	if err != nil {
		return "", fmt.Errorf("broker: FOLIO_KAFKA_PASSWORD_FILE: %w", err)
	}
	password := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if password == "" {
		return "", fmt.Errorf("broker: FOLIO_KAFKA_PASSWORD_FILE %s is empty", cfg.KafkaPasswordFile)
	}
	// Group access is how Kubernetes (fsGroup) and Compose hand a secret to a
	// program that does not run as the file's owner; the world's is a leak
	// (as with FOLIO_SECRETS_KEY_FILE).
	if fi, err := os.Stat(cfg.KafkaPasswordFile); err == nil && fi.Mode().Perm()&0o007 != 0 {
		log.Warn("the Kafka password file is open to every user of the machine", "file", cfg.KafkaPasswordFile, "mode", fi.Mode().Perm().String())
	}
	return password, nil
}

// kafkaDenied reports whether err is the cluster's ACLs refusing the
// credential a topic, or the cluster-wide right to create topics.
func kafkaDenied(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed)
}
