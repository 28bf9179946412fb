package compose

// The tests of kafka.yaml, the override that moves the programs' events to a
// Kafka of the operator's: loaded over compose.yaml as `docker compose -f
// compose.yaml -f kafka.yaml` loads it, the merged project keeps compose.yaml's
// policy and adds Kafka's (each program on SCRAM as its own user, its password
// from a secret file, TLS with the CA's), and each program's settings, read as
// the program reads them, publish to a Kafka with TLS and SCRAM-SHA-512.

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"sigs.k8s.io/yaml"

	"folio/internal/platform/broker"
	"folio/internal/platform/config"
	"folio/internal/platform/tlstest"
)

// kafkaPrograms are the programs that open the broker, and so move to Kafka: the
// services publish and consume, the gateway follows the account revocations.
var kafkaPrograms = slices.Sorted(maps.Keys(programs))

// kafkaSecrets are the files kafka.yaml mounts, which the operator provides.
type kafkaSecrets struct {
	ca        []byte            // PEM
	passwords map[string]string // by program
}

// newKafkaSecrets makes a password per program, and takes ca as the brokers' CA.
func newKafkaSecrets(ca []byte) kafkaSecrets {
	k := kafkaSecrets{ca: ca, passwords: map[string]string{}}
	for _, program := range kafkaPrograms {
		k.passwords[program] = program + "-" + rand.Text()
	}
	return k
}

// write puts the files where kafka.yaml's header says, with a line ending, as
// an editor leaves one.
func (k kafkaSecrets) write(t *testing.T, secretsDir string) {
	t.Helper()
	dir := filepath.Join(secretsDir, "kafka")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca.pem": k.ca}
	for program, pw := range k.passwords {
		files[program+".password"] = []byte(pw + "\n")
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// loadKafka loads compose.yaml and kafkaYAML over it, with the Kafka secrets k
// and only env as the environment.
func loadKafka(t *testing.T, kafkaYAML []byte, k kafkaSecrets, env ...string) (system, error) {
	t.Helper()
	composeYAML, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := prepare(t, composeYAML)
	if err := os.WriteFile(filepath.Join(s.dir, "kafka.yaml"), kafkaYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	k.write(t, filepath.Join(s.dir, "secrets"))
	return s.load(t, env, "compose.yaml", "kafka.yaml")
}

// kafkaNetwork reports whether network is the one kafka.yaml puts service on to
// reach the operator's Kafka: Compose does not make it (it is external), the
// operator does, internal for a Kafka in containers on the same host or not for
// brokers elsewhere (kafka.yaml's header). Only a program that uses Kafka may be
// on it.
func (s system) kafkaNetwork(service, network string) bool {
	svc := s.Services[service]
	return network == "kafka" && bool(s.Networks[network].External) && deref(svc.Environment["FOLIO_BROKER"]) == "kafka"
}

// kafkaConfig is the broker configuration service's program reads from its
// environment, with each secret's path in the container replaced by its file on
// this machine.
func (s system) kafkaConfig(service string) (broker.Config, error) {
	env := s.Services[service].Environment
	var cfg broker.Config
	err := config.Load(&cfg, func(k string) string {
		v := deref(env[k])
		if file, ok := s.secretFile(service, v); ok && strings.HasPrefix(v, "/run/secrets/") {
			return file
		}
		return v
	})
	return cfg, err
}

// checkKafka returns what in the project breaks kafka.yaml's promises: every
// program on Kafka at brokers, by SCRAM-SHA-512 as a user of its own (the same
// for the instances of one program) with the password from its own secret file
// and none in a variable, over TLS that trusts the CA's secret alone.
func (s system) checkKafka(brokers string) []string {
	var problems []string
	users := map[string]string{} // user -> program
	for _, name := range slices.Sorted(maps.Keys(s.Services)) {
		svc := s.Services[name]
		if svc.Build == nil || svc.Build.Args["PROGRAM"] == nil {
			continue
		}
		program := *svc.Build.Args["PROGRAM"]
		fail := func(format string, args ...any) {
			problems = append(problems, name+": "+fmt.Sprintf(format, args...))
		}
		env := func(k string) string { return deref(svc.Environment[k]) }
		cfg, err := s.kafkaConfig(name)
		if err != nil {
			fail("its broker settings do not load: %v", err)
			continue
		}
		if cfg.Kind != "kafka" {
			fail("FOLIO_BROKER %q, want kafka", cfg.Kind)
			continue
		}
		if err := cfg.Validate(); err != nil {
			fail("its Kafka settings are refused: %v", err)
		}
		if cfg.KafkaBrokers != brokers {
			fail("FOLIO_KAFKA_BROKERS %q, want %q", cfg.KafkaBrokers, brokers)
		}
		if cfg.KafkaSASL != "scram-sha-512" {
			fail("FOLIO_KAFKA_SASL %q, want scram-sha-512", cfg.KafkaSASL)
		}
		if _, set := svc.Environment["FOLIO_KAFKA_PASSWORD"]; set || cfg.KafkaPassword != "" {
			fail("FOLIO_KAFKA_PASSWORD is set: the password belongs in a secret file")
		}
		if file, ok := s.secretFile(name, env("FOLIO_KAFKA_PASSWORD_FILE")); !ok {
			fail("FOLIO_KAFKA_PASSWORD_FILE %q is none of its secrets", env("FOLIO_KAFKA_PASSWORD_FILE"))
		} else if filepath.Base(file) != program+".password" {
			fail("FOLIO_KAFKA_PASSWORD_FILE is %s, not %s's password", filepath.Base(file), program)
		}
		switch other, taken := users[cfg.KafkaUser]; {
		case cfg.KafkaUser == "":
			fail("no FOLIO_KAFKA_USER")
		case taken && other != program:
			fail("FOLIO_KAFKA_USER %q is %s's too: each program has a user of its own, whose ACLs are its own", cfg.KafkaUser, other)
		default:
			users[cfg.KafkaUser] = program
		}
		if !cfg.KafkaTLS {
			fail("FOLIO_KAFKA_TLS is not on")
		}
		if file, ok := s.secretFile(name, env("FOLIO_KAFKA_CA")); !ok {
			fail("FOLIO_KAFKA_CA %q is none of its secrets", env("FOLIO_KAFKA_CA"))
		} else if b, err := os.ReadFile(file); err != nil {
			fail("FOLIO_KAFKA_CA: %v", err)
		} else if block, _ := pem.Decode(b); block == nil || block.Type != "CERTIFICATE" {
			fail("FOLIO_KAFKA_CA %s holds no PEM certificate", filepath.Base(file))
		}
		if !slices.ContainsFunc(slices.Collect(maps.Keys(svc.Networks)), func(n string) bool { return s.kafkaNetwork(name, n) }) {
			fail("on no network to the operator's Kafka: the backend network has no way out")
		}
	}
	return problems
}

// TestKafkaOverride: compose.yaml with kafka.yaml keeps compose.yaml's policy
// and puts every program on Kafka, each as its own user, with secrets in files;
// and each program's settings, as it reads them, publish an event to a Kafka
// that asks for TLS with the operator's CA and SCRAM-SHA-512 with those users.
func TestKafkaOverride(t *testing.T) {
	kafkaYAML, err := os.ReadFile("kafka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ca := tlstest.NewCA(t, "kafka test CA")
	k := newKafkaSecrets(ca.PEM)
	// 127.0.0.1, where kfake listens.
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.TLS(ca.ServerTLS(t, "127.0.0.1")), kfake.EnableSASL()}
	for program, pw := range k.passwords {
		opts = append(opts, kfake.User("SCRAM-SHA-512", program, pw))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")

	s, err := loadKafka(t, kafkaYAML, k, "FOLIO_KAFKA_BROKERS="+brokers)
	if err != nil {
		t.Fatalf("load compose.yaml with kafka.yaml: %v", err)
	}
	for _, problem := range slices.Concat(s.check(t), s.checkKafka(brokers)) {
		t.Error(problem)
	}
	// NATS stays, for discovery.
	if _, ok := s.Services["nats"]; !ok {
		t.Error("no nats service: discovery needs it")
	}
	var users []string
	for _, name := range slices.Sorted(maps.Keys(s.Services)) {
		if s.Services[name].Build == nil || s.Services[name].Build.Args["PROGRAM"] == nil {
			continue
		}
		cfg, err := s.kafkaConfig(name)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, cfg.KafkaUser)
		t.Run(name, func(t *testing.T) {
			program := *s.Services[name].Build.Args["PROGRAM"]
			if cfg.KafkaUser != program {
				t.Errorf("FOLIO_KAFKA_USER %q, want %q unless FOLIO_KAFKA_USER_%s says otherwise", cfg.KafkaUser, program, strings.ToUpper(program))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			b, err := broker.Open(ctx, cfg, nil, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			m := broker.Message{Subject: cfg.Prefix + "." + program + ".compose-checked", ID: name, Body: []byte(`{}`)}
			if err := b.Publish(ctx, m); err != nil {
				t.Errorf("publish with %s's settings: %v", name, err)
			}
		})
	}
	if want := []string{"auth", "author", "book", "book", "gateway", "inventory", "notify", "order", "payment"}; !slices.Equal(users, want) {
		t.Errorf("Kafka users %v, want %v: every program on Kafka", users, want)
	}
}

// TestKafkaOverrideCatchesBreaches: kafka.yaml changed in ways its promises or
// compose.yaml's policy forbid is refused, each for its reason.
func TestKafkaOverrideCatchesBreaches(t *testing.T) {
	original, err := os.ReadFile("kafka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ca := tlstest.NewCA(t, "kafka test CA").PEM
	k := newKafkaSecrets(ca)
	const brokers = "kafka-1.example:9093,kafka-2.example:9093"
	for _, tc := range []struct{ name, old, new, want string }{
		{"book-2 left on NATS", "  book-2:\n    environment: *book-kafka\n", "  book-2:\n",
			"book-2: FOLIO_BROKER \"nats\", want kafka"},
		{"the gateway left on NATS, deaf to revocations", "  gateway:\n    environment:\n      <<: *kafka\n", "  gateway:\n    environment:\n",
			"gateway: FOLIO_BROKER \"nats\", want kafka"},
		{"the password in a variable", "      FOLIO_KAFKA_PASSWORD_FILE: /run/secrets/notify.kafka-password\n",
			"      FOLIO_KAFKA_PASSWORD: ${NOTIFY_KAFKA_PASSWORD}\n", "notify: FOLIO_KAFKA_PASSWORD is set"},
		{"another program's password", "FOLIO_KAFKA_PASSWORD_FILE: /run/secrets/author.kafka-password\n    secrets: [kafka-ca.pem, author.kafka-password]",
			"FOLIO_KAFKA_PASSWORD_FILE: /run/secrets/book.kafka-password\n    secrets: [kafka-ca.pem, book.kafka-password]",
			"author: FOLIO_KAFKA_PASSWORD_FILE is book.password"},
		{"a password file not mounted", "    secrets: [kafka-ca.pem, auth.kafka-password]\n", "    secrets: [kafka-ca.pem]\n",
			"auth: FOLIO_KAFKA_PASSWORD_FILE \"/run/secrets/auth.kafka-password\" is none of its secrets"},
		{"one user for two programs", "${FOLIO_KAFKA_USER_NOTIFY:-notify}", "${FOLIO_KAFKA_USER_NOTIFY:-auth}",
			"FOLIO_KAFKA_USER \"auth\" is"},
		{"PLAIN", "  FOLIO_KAFKA_SASL: scram-sha-512\n", "  FOLIO_KAFKA_SASL: plain\n", "FOLIO_KAFKA_SASL \"plain\""},
		{"no TLS", "  FOLIO_KAFKA_TLS: \"true\"\n  FOLIO_KAFKA_CA: /run/secrets/kafka-ca.pem\n", "",
			"book-1: FOLIO_KAFKA_TLS is not on"},
		{"a network Compose makes, with a way out for every service", "    name: ${FOLIO_KAFKA_NETWORK:-folio-kafka}\n    external: true\n", "    name: folio-kafka\n",
			"author: on network kafka, which is not internal"},
		{"NATS on the way out", "services:\n", "services:\n  nats:\n    networks: [kafka]\n",
			"nats: on network kafka, which is not internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(original), tc.old) {
				t.Fatalf("kafka.yaml no longer holds %q", tc.old)
			}
			broken := strings.Replace(string(original), tc.old, tc.new, 1)
			s, err := loadKafka(t, []byte(broken), k, "FOLIO_KAFKA_BROKERS="+brokers, "NOTIFY_KAFKA_PASSWORD="+k.passwords["notify"])
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			problems := slices.Concat(s.check(t), s.checkKafka(brokers))
			t.Logf("problems: %q", problems)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("got problems %q, want one containing %q", problems, tc.want)
			}
		})
	}
}

// TestKafkaOverrideNeedsBrokers: without FOLIO_KAFKA_BROKERS, or with it empty,
// Compose refuses the project and says what to set, rather than the programs
// trying 127.0.0.1:9092, their own loopback.
func TestKafkaOverrideNeedsBrokers(t *testing.T) {
	kafkaYAML, err := os.ReadFile("kafka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ca := tlstest.NewCA(t, "kafka test CA").PEM
	k := newKafkaSecrets(ca)
	for name, env := range map[string][]string{"unset": nil, "empty": {"FOLIO_KAFKA_BROKERS="}} {
		t.Run(name, func(t *testing.T) {
			_, err := loadKafka(t, kafkaYAML, k, env...)
			if err == nil || !strings.Contains(err.Error(), "set FOLIO_KAFKA_BROKERS to your Kafka's brokers") {
				t.Errorf("loaded with FOLIO_KAFKA_BROKERS %s: err %v, want the message naming it", name, err)
			}
		})
	}
}

// TestKafkaOverrideNamesOnlyComposeServices: every service kafka.yaml names is
// one of compose.yaml's, since Compose would take a misspelt one for a new
// service; and the networks and secrets it declares are new ones, since
// declaring one of compose.yaml's again would replace it (the internal backend
// network, a program's nkey).
func TestKafkaOverrideNamesOnlyComposeServices(t *testing.T) {
	type file struct {
		Services, Networks, Secrets map[string]any
	}
	read := func(name string) file {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var f file
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return f
	}
	base, override := read("compose.yaml"), read("kafka.yaml")
	if len(override.Services) == 0 {
		t.Fatal("kafka.yaml names no service")
	}
	for name := range override.Services {
		if _, ok := base.Services[name]; !ok {
			t.Errorf("kafka.yaml names service %q, which compose.yaml has not: Compose would add it", name)
		}
	}
	for kind, declared := range map[string][2]map[string]any{
		"network": {base.Networks, override.Networks}, "secret": {base.Secrets, override.Secrets},
	} {
		for name := range declared[1] {
			if _, ok := declared[0][name]; ok {
				t.Errorf("kafka.yaml declares %s %q again, over compose.yaml's", kind, name)
			}
		}
	}
}

// TestSecretsScriptChecksKafkaFiles: secrets.sh --kafka makes none of the
// operator's Kafka files, names each one missing or wrong and fails, and once
// they are right makes them readable by the programs' user, unchanged.
func TestSecretsScriptChecksKafkaFiles(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("secrets.sh needs bash:", err)
	}
	secrets := filepath.Join(t.TempDir(), "secrets")
	makeSecrets(t, secrets) // what secrets.sh made already, so that it has only Kafka's to do
	run := func() (string, error) {
		cmd := exec.Command("bash", "secrets.sh", "--kafka")
		cmd.Env = append(os.Environ(), "FOLIO_COMPOSE_SECRETS="+secrets)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run()
	if err == nil {
		t.Fatalf("secrets.sh --kafka without the Kafka files succeeded:\n%s", out)
	}
	for _, f := range []string{"ca.pem", "book.password", "author.password", "auth.password", "notify.password",
		"inventory.password", "payment.password", "order.password", "gateway.password"} {
		if !strings.Contains(out, filepath.Join(secrets, "kafka", f)+": missing") {
			t.Errorf("secrets.sh --kafka does not name kafka/%s as missing:\n%s", f, out)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(secrets, "kafka")); len(entries) > 0 {
		t.Errorf("secrets.sh --kafka made %d Kafka files; they are the operator's", len(entries))
	}

	ca := tlstest.NewCA(t, "kafka test CA").PEM
	k := newKafkaSecrets(ca)
	k.write(t, secrets)
	for _, tc := range []struct{ name, file, content, want string }{
		{"a password on two lines", "auth.password", "first\nsecond\n", "holds more than one line"},
		{"an empty password", "notify.password", "\n", "holds an empty password"},
		{"the CA's private key", "ca.pem", string(ca) + "-----BEGIN EC PRIVATE KEY-----\nMHc=\n-----END EC PRIVATE KEY-----\n", "holds a private key"},
		{"no certificate", "ca.pem", "not a certificate\n", "holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(secrets, "kafka", tc.file)
			right, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, right, 0o600)
			out, err := run()
			if err == nil || !strings.Contains(out, path+": "+tc.want) {
				t.Errorf("secrets.sh --kafka: err %v, want it to say %q:\n%s", err, path+": "+tc.want, out)
			}
		})
	}

	before := readTree(t, filepath.Join(secrets, "kafka"))
	if out, err := run(); err != nil {
		t.Fatalf("secrets.sh --kafka with the Kafka files: %v\n%s", err, out)
	}
	if after := readTree(t, filepath.Join(secrets, "kafka")); !maps.Equal(before, after) {
		t.Error("secrets.sh --kafka changed the operator's Kafka files")
	}
	for name := range before {
		fi, err := os.Stat(filepath.Join(secrets, "kafka", name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("kafka/%s: mode %v, want 0644 (in the 0700 directory) so that user 65532 can read it", name, fi.Mode().Perm())
		}
	}
}
