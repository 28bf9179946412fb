// Package compose holds Folio's Docker Compose system (compose.yaml, nats.conf,
// initdb/, secrets.sh, and kafka.yaml, the override for a Kafka of the
// operator's) and the test that loads it as Compose does and checks the policy it
// promises: only the gateway published, every program hardened and
// health-checked, each service on its own database, no secret in a variable.
package compose

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"folio/internal/platform/broker/natsconn"
)

// programs are Folio's programs and the port each listens on.
var programs = map[string]string{"book": "8081", "author": "8082", "auth": "8083", "notify": "8084",
	"inventory": "8085", "payment": "8086", "order": "8087", "gateway": "8080"}

// routed are the services the gateway sends requests to, which it waits for;
// payment is not one (the order saga reaches it through the broker only).
var routed = []string{"book", "author", "auth", "notify", "inventory", "order"}

// system is compose.yaml loaded by compose-go, as `docker compose` loads it, with
// the secret files secrets.sh makes.
type system struct {
	*types.Project
	dir string // the copy of deploy/compose the project was loaded from
}

// load copies compose.yaml, nats.conf and initdb/ to a new directory, runs
// secrets.sh there (the real one, making every secret file), and loads the project
// with the schema validation and consistency checks on, and no variable of this
// machine's environment.
func load(t *testing.T, composeYAML []byte) system {
	t.Helper()
	s, err := prepare(t, composeYAML).load(t, nil, "compose.yaml")
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	return s
}

// prepare copies compose.yaml, nats.conf and initdb/ to a new directory and puts
// there the secret files secrets.sh makes; it returns the directory, whose
// project is not loaded yet.
func prepare(t *testing.T, composeYAML []byte) system {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("secrets.sh needs bash:", err)
	}
	dir := t.TempDir()
	copyFile(t, "nats.conf", filepath.Join(dir, "nats.conf"))
	copyFile(t, "initdb/01-databases.sh", filepath.Join(dir, "initdb", "01-databases.sh"))
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), composeYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	makeSecrets(t, filepath.Join(dir, "secrets"))
	return system{dir: dir}
}

// load loads the files of s's directory, each overriding those before it as
// `docker compose -f a -f b` does, with only env as the environment.
func (s system) load(t *testing.T, env []string, files ...string) (system, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(s.dir, f)
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(s.dir), cli.WithEnv(env), cli.WithConsistency(true), cli.WithNormalization(true),
		cli.WithProfiles([]string{"observability"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return s, err
	}
	return system{Project: p, dir: s.dir}, nil
}

// secretsMade is the directory secrets.sh made once for this test binary: making
// it runs `go run ./cmd/folio nats`, which takes seconds.
var secretsMade string

func makeSecrets(t *testing.T, dir string) {
	t.Helper()
	if secretsMade == "" {
		made, err := os.MkdirTemp("", "folio-compose-secrets-")
		if err != nil {
			t.Fatal(err)
		}
		secretsMade = filepath.Join(made, "secrets")
		cmd := exec.Command("bash", "secrets.sh")
		cmd.Env = append(os.Environ(), "FOLIO_COMPOSE_SECRETS="+secretsMade)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("secrets.sh: %v\n%s", err, out)
		}
		// Run again, it keeps every file.
		before := readTree(t, secretsMade)
		cmd = exec.Command("bash", "secrets.sh")
		cmd.Env = append(os.Environ(), "FOLIO_COMPOSE_SECRETS="+secretsMade)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("secrets.sh, again: %v\n%s", err, out)
		}
		if after := readTree(t, secretsMade); !maps.Equal(before, after) {
			t.Errorf("secrets.sh run again changed the secrets")
		}
	}
	for name, content := range readTree(t, secretsMade) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if secretsMade != "" {
		os.RemoveAll(filepath.Dir(secretsMade))
	}
	os.Exit(code)
}

// TestComposeRunsEveryProgram: every program the broker has a credential for
// (natsconn's permission table, which `folio nats` makes the nkeys from) is one
// this test holds compose.yaml to, so a new service cannot be left out of it.
func TestComposeRunsEveryProgram(t *testing.T) {
	if got, want := slices.Sorted(maps.Keys(programs)), natsconn.Programs(); !slices.Equal(got, want) {
		t.Errorf("programs checked %v, want natsconn's %v", got, want)
	}
}

func TestComposePolicy(t *testing.T) {
	yaml, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range load(t, yaml).check(t) {
		t.Error(problem)
	}
}

// TestComposePolicyCatchesBreaches: compose.yaml changed in ways the policy
// forbids is refused, each for its reason.
func TestComposePolicyCatchesBreaches(t *testing.T) {
	original, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"book's port published", "    volumes:\n      - book-1-data:/data\n",
			"    volumes:\n      - book-1-data:/data\n    ports: [\"8081:8081\"]\n", "book-1: publishes ports"},
		{"the gateway on every interface", "${FOLIO_GATEWAY_ADDR:-127.0.0.1:8080}:8080", "8080:8080", "gateway: publishes"},
		{"one book instance", "  book-2:\n    <<: *book\n", "  book-2:\n    <<: *book\n    build: {context: ../.., dockerfile: Containerfile, args: {PROGRAM: author, PORT: \"8082\"}}\n",
			"want 2 book instances"},
		{"a writable root", "  read_only: true\n  cap_drop: [ALL]\n", "  cap_drop: [ALL]\n", "read_only"},
		{"root", "  user: \"65532:65532\"\n  read_only", "  user: \"0\"\n  read_only", "runs as root"},
		{"the password in the URL", "postgres://author@postgres:5432/author?sslmode=disable&passfile=/run/secrets/author.pgpass",
			"postgres://author:hunter22@postgres:5432/author?sslmode=disable", "author: FOLIO_DATABASE_URL"},
		{"another service's database", "postgres://notify@postgres:5432/notify?", "postgres://book@postgres:5432/book?", "notify: FOLIO_DATABASE_URL"},
		{"no health check", "    test: [\"CMD\", \"/program\", \"--healthcheck\"]\n", "    test: [\"CMD\", \"/program\", \"--version\"]\n", "health check"},
		{"no secrets key", "    secrets: [auth.pgpass, auth.nk, auth-secrets.key]\n", "    secrets: [auth.pgpass, auth.nk]\n", "FOLIO_SECRETS_KEY_FILE"},
		{"NATS on the image's configuration, with no authorization", "      - ./nats.conf:/etc/nats/nats.conf:ro\n", "", "nats: no configuration mounted"},
		{"a role PostgreSQL cannot make", "book.pgpass, author.pgpass, auth.pgpass, notify.pgpass,", "book.pgpass, author.pgpass, auth.pgpass,",
			"PostgreSQL is not given notify.pgpass"},
		{"Jaeger's UI on every interface", `      - "127.0.0.1:16686:16686"`, `      - "16686:16686"`, "jaeger: publishes 16686"},
		{"Prometheus as root", "    user: \"65534:65534\"\n", "", "prometheus: not read-only, non-root"},
		{"another program's nkey", "FOLIO_NATS_NKEY_FILE: /run/secrets/gateway.nk", "FOLIO_NATS_NKEY_FILE: /run/secrets/book.nk", "gateway: FOLIO_NATS_NKEY_FILE"},
		{"the gateway before the order service", "      order:\n        condition: service_healthy\n", "", "gateway: starts before order is healthy"},
		{"no database for inventory", "postgres://inventory@postgres:5432/inventory?", "postgres://inventory@postgres:5432/book?", "inventory: FOLIO_DATABASE_URL"},
		{"the card key made in payment's volume", "    secrets: [payment.pgpass, payment.nk, payment-card.key]\n", "    secrets: [payment.pgpass, payment.nk]\n",
			"payment: FOLIO_PAYMENT_CARD_KEY_FILE \"/run/secrets/payment-card.key\" is none of its secrets"},
		{"order without the payment's public key", "    env_file: [./secrets/order.env]\n", "",
			"order: FOLIO_PAYMENT_CARD_PUBLIC_KEY \"\" is not the public half"},
		{"order sealing to another key", "      FOLIO_NATS_NKEY_FILE: /run/secrets/order.nk\n",
			"      FOLIO_NATS_NKEY_FILE: /run/secrets/order.nk\n      FOLIO_PAYMENT_CARD_PUBLIC_KEY: " + otherPublicKey + "\n",
			"order: FOLIO_PAYMENT_CARD_PUBLIC_KEY \"" + otherPublicKey + "\" is not the public half"},
		{"a PostgreSQL without the order role", "inventory.pgpass, payment.pgpass, order.pgpass]", "inventory.pgpass, payment.pgpass]",
			"PostgreSQL is not given order.pgpass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(original), tc.old) {
				t.Fatalf("compose.yaml no longer holds %q", tc.old)
			}
			broken := strings.Replace(string(original), tc.old, tc.new, 1)
			problems := load(t, []byte(broken)).check(t)
			t.Logf("problems: %q", problems)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("got problems %q, want one containing %q", problems, tc.want)
			}
		})
	}
}

// otherPublicKey is an X25519 public key (of the private key 32 bytes of 7),
// which is not the payment service's.
var otherPublicKey = func() string {
	key, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(key.PublicKey().Bytes())
}()

// check returns what in the project breaks Folio's policy.
func (s system) check(t *testing.T) []string {
	t.Helper()
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	initdb, err := os.ReadFile(filepath.Join(s.dir, "initdb", "01-databases.sh"))
	if err != nil {
		t.Fatal(err)
	}

	instances := map[string][]string{} // program -> its services
	for _, name := range slices.Sorted(maps.Keys(s.Services)) {
		svc := s.Services[name]
		for target := range svc.DependsOn {
			if _, ok := s.Services[target]; !ok {
				fail("%s: depends on %s, which is not a service", name, target)
			}
		}
		// The observability profile's UIs (Jaeger, Prometheus) are published too,
		// on loopback only: they ask for no login.
		observability := slices.Contains(svc.Profiles, "observability")
		if len(svc.Ports) > 0 && name != "gateway" && !observability {
			fail("%s: publishes ports %v; only the gateway may", name, svc.Ports)
		}
		for _, p := range svc.Ports {
			if observability && p.HostIP != "127.0.0.1" {
				fail("%s: publishes %d on %q, not on loopback", name, p.Target, p.HostIP)
			}
		}
		for _, n := range slices.Sorted(maps.Keys(svc.Networks)) {
			if !s.Networks[n].Internal && name != "gateway" && name != "notify" && !observability && !s.kafkaNetwork(name, n) {
				fail("%s: on network %s, which is not internal; only the gateway and notify (webhooks) reach out", name, n)
			}
		}
		switch {
		case name == "postgres", name == "nats":
			continue
		case observability:
			if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") || svc.User == "" || strings.HasPrefix(svc.User, "0") {
				fail("%s: not read-only, non-root and without capabilities", name)
			}
			continue
		}
		if svc.Build == nil || svc.Build.Dockerfile != "Containerfile" || svc.Build.Args["PROGRAM"] == nil {
			fail("%s: not one of Folio's programs built from the root Containerfile", name)
			continue
		}
		program := *svc.Build.Args["PROGRAM"]
		port, ok := programs[program]
		if !ok {
			fail("%s: PROGRAM %q is none of Folio's", name, program)
			continue
		}
		instances[program] = append(instances[program], name)
		if got := svc.Build.Args["PORT"]; got == nil || *got != port {
			fail("%s: build arg PORT %v, want %s", name, got, port)
		}
		problems = append(problems, s.checkProgram(name, program, port, initdb)...)
	}
	for _, program := range slices.Sorted(maps.Keys(programs)) {
		want := 1
		if program == "book" {
			want = 2
		}
		if len(instances[program]) != want {
			fail("%s: %d instances %v, want %d %s instances", program, len(instances[program]), instances[program], want, program)
		}
	}
	gateway, ok := s.Services["gateway"]
	if ok {
		for _, p := range gateway.Ports {
			if p.HostIP != "127.0.0.1" {
				fail("gateway: publishes %s:%s, want loopback (127.0.0.1) unless FOLIO_GATEWAY_ADDR says otherwise", p.HostIP, p.Published)
			}
		}
		for _, program := range routed {
			for _, name := range instances[program] {
				if d, ok := gateway.DependsOn[name]; !ok || d.Condition != types.ServiceConditionHealthy {
					fail("gateway: starts before %s is healthy", name)
				}
			}
		}
	}
	problems = append(problems, s.checkNATS()...)
	problems = append(problems, s.checkPostgres()...)
	problems = append(problems, s.checkCardKey(instances["payment"], instances["order"])...)
	problems = append(problems, s.checkNoSecretInEnvironment()...)
	return problems
}

// checkProgram checks the service name, an instance of program listening on port.
func (s system) checkProgram(name, program, port string, initdb []byte) []string {
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, name+": "+fmt.Sprintf(format, args...))
	}
	svc := s.Services[name]
	env := func(k string) string {
		if v := svc.Environment[k]; v != nil {
			return *v
		}
		return ""
	}

	// Hardening.
	if hc := svc.HealthCheck; hc == nil || hc.Disable || !slices.Equal(hc.Test, []string{"CMD", "/program", "--healthcheck"}) {
		fail("health check is not [CMD /program --healthcheck]")
	} else if hc.Interval == nil || hc.Retries == nil || hc.StartPeriod == nil || hc.Timeout == nil ||
		time.Duration(*hc.Timeout) <= 3*time.Second { // the check gives /readyz 3 s itself
		fail("health check wants an interval, retries, a start period and a timeout over 3s: %+v", hc)
	}
	if !svc.ReadOnly {
		fail("root filesystem not read_only")
	}
	if !slices.Contains(svc.CapDrop, "ALL") {
		fail("capabilities not all dropped: %v", svc.CapDrop)
	}
	if !slices.ContainsFunc(svc.SecurityOpt, func(o string) bool { return o == "no-new-privileges:true" || o == "no-new-privileges" }) {
		fail("no no-new-privileges in security_opt %v", svc.SecurityOpt)
	}
	if uid, _, _ := strings.Cut(svc.User, ":"); uid == "" || uid == "0" || uid == "root" {
		fail("runs as root (user %q); the images' user is 65532", svc.User)
	}
	if !slices.ContainsFunc(svc.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == "/data" && v.Source != ""
	}) {
		fail("no named volume at /data")
	}

	// Its NATS credential: its own program's seed, admitted by the server.
	if path, ok := s.secretFile(name, env("FOLIO_NATS_NKEY_FILE")); !ok {
		fail("FOLIO_NATS_NKEY_FILE %q is none of its secrets", env("FOLIO_NATS_NKEY_FILE"))
	} else if filepath.Base(path) != program+".nk" {
		fail("FOLIO_NATS_NKEY_FILE is %s, not %s's seed", filepath.Base(path), program)
	}
	if env("FOLIO_DISCOVERY") != "nats" {
		fail("FOLIO_DISCOVERY %q, want nats", env("FOLIO_DISCOVERY"))
	}
	if program == "gateway" {
		return problems
	}
	if want := "http://" + name + ":" + port; env("FOLIO_ADVERTISE_URL") != want {
		fail("FOLIO_ADVERTISE_URL %q, want %q", env("FOLIO_ADVERTISE_URL"), want)
	}
	if env("FOLIO_INSTANCE_ID") != name {
		fail("FOLIO_INSTANCE_ID %q, want %q", env("FOLIO_INSTANCE_ID"), name)
	}
	if d, ok := svc.DependsOn["postgres"]; !ok || d.Condition != types.ServiceConditionHealthy {
		fail("starts before PostgreSQL is healthy")
	}

	// Its own database, as its own role, the password from a pgpass secret.
	u, err := url.Parse(env("FOLIO_DATABASE_URL"))
	if err != nil || u.Scheme != "postgres" {
		fail("FOLIO_DATABASE_URL %q is not a postgres URL", env("FOLIO_DATABASE_URL"))
		return problems
	}
	if _, set := u.User.Password(); set || u.User.Username() != program || u.Path != "/"+program {
		fail("FOLIO_DATABASE_URL %s: want user and database %s, and no password in it", u.Redacted(), program)
	}
	if !regexp.MustCompile(`(?m)^database ` + program + `$`).Match(initdb) {
		fail("initdb/01-databases.sh does not create database %s", program)
	}
	passfile := u.Query().Get("passfile")
	if path, ok := s.secretFile(name, passfile); !ok {
		fail("FOLIO_DATABASE_URL: passfile %q is none of its secrets", passfile)
	} else if pw, ok := s.pgpassPassword(path, program); !ok {
		fail("FOLIO_DATABASE_URL: its pgpass file %s holds no password for %s", filepath.Base(path), program)
	} else {
		// What the program's driver makes of the URL, the secret where it is mounted.
		q := u.Query()
		q.Set("passfile", path)
		u.RawQuery = q.Encode()
		cfg, err := pgconn.ParseConfig(u.String())
		if err != nil || cfg.Password != pw {
			fail("FOLIO_DATABASE_URL: the driver does not find the password in its passfile (%v)", err)
		}
		if !slices.ContainsFunc(s.Services["postgres"].Secrets, func(c types.ServiceSecretConfig) bool { return c.Source == filepath.Base(passfile) }) {
			fail("PostgreSQL is not given %s, from which its init script sets the role's password", filepath.Base(passfile))
		}
	}

	// The key that seals secrets at rest, and the first admin.
	if program == "auth" || program == "notify" {
		if path, ok := s.secretFile(name, env("FOLIO_SECRETS_KEY_FILE")); !ok {
			fail("FOLIO_SECRETS_KEY_FILE %q is none of its secrets", env("FOLIO_SECRETS_KEY_FILE"))
		} else if b, err := os.ReadFile(path); err != nil {
			fail("FOLIO_SECRETS_KEY_FILE: %v", err)
		} else if key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err != nil || len(key) != 32 {
			fail("FOLIO_SECRETS_KEY_FILE holds no base64 of 32 bytes")
		} else if filepath.Base(path) != program+"-secrets.key" {
			fail("FOLIO_SECRETS_KEY_FILE is %s, not %s's own key", filepath.Base(path), program)
		}
	}
	if program == "auth" && (env("FOLIO_ADMIN_EMAIL") == "" || env("FOLIO_ADMIN_PASSWORD") == "") {
		fail("no first admin account (FOLIO_ADMIN_EMAIL, FOLIO_ADMIN_PASSWORD)")
	}
	return problems
}

// checkNATS checks that the NATS server admits exactly the programs' nkeys, with
// the configuration compose.yaml mounts.
func (s system) checkNATS() []string {
	nats, ok := s.Services["nats"]
	if !ok {
		return []string{"no nats service"}
	}
	var problems []string
	if len(nats.Ports) > 0 || !nats.ReadOnly || !slices.Contains(nats.CapDrop, "ALL") {
		problems = append(problems, "nats: published, or not read-only with all capabilities dropped")
	}
	// The configuration files where the server finds them: nats.conf includes the
	// authorization block by a path relative to its own.
	etc, err := os.MkdirTemp(s.dir, "etc-nats-")
	if err != nil {
		return []string{err.Error()}
	}
	var main string
	for _, c := range nats.Volumes {
		if c.Type != types.VolumeTypeBind || !strings.HasPrefix(c.Target, "/etc/nats/") {
			continue
		}
		b, err := os.ReadFile(c.Source)
		if err != nil {
			return append(problems, err.Error())
		}
		if c.Target == "/etc/nats/nats.conf" {
			main = filepath.Join(etc, "nats.conf")
			// Quoted: a test's directory may hold a comma, which ends an unquoted value.
			b = []byte(strings.ReplaceAll(string(b), "store_dir: /data", fmt.Sprintf("store_dir: %q", filepath.Join(s.dir, "jetstream"))))
		}
		if err := os.WriteFile(filepath.Join(etc, strings.TrimPrefix(c.Target, "/etc/nats/")), b, 0o644); err != nil {
			return append(problems, err.Error())
		}
	}
	if main == "" {
		return append(problems, "nats: no configuration mounted at /etc/nats/nats.conf, the image's")
	}
	opts, err := server.ProcessConfigFile(main)
	if err != nil {
		return append(problems, fmt.Sprintf("nats: %v", err))
	}
	var admitted []string
	for _, u := range opts.Nkeys {
		admitted = append(admitted, u.Nkey)
	}
	if !opts.JetStream {
		problems = append(problems, "nats: no JetStream")
	}
	var seeds []string
	for program := range programs {
		seed, err := os.ReadFile(s.Secrets[program+".nk"].File)
		if err != nil {
			problems = append(problems, fmt.Sprintf("nats: %s's seed: %v", program, err))
			continue
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			problems = append(problems, fmt.Sprintf("nats: %s's seed: %v", program, err))
			continue
		}
		public, _ := kp.PublicKey()
		seeds = append(seeds, public)
	}
	slices.Sort(admitted)
	slices.Sort(seeds)
	if !slices.Equal(admitted, seeds) {
		problems = append(problems, fmt.Sprintf("nats: admits %v, want the programs' nkeys %v", admitted, seeds))
	}
	return problems
}

// checkPostgres checks PostgreSQL's own setup: its password from a secret, and a
// health check the services can wait on.
func (s system) checkPostgres() []string {
	pg, ok := s.Services["postgres"]
	if !ok {
		return []string{"no postgres service"}
	}
	var problems []string
	pwFile := pg.Environment["POSTGRES_PASSWORD_FILE"]
	if _, ok := s.secretFile("postgres", deref(pwFile)); !ok {
		problems = append(problems, fmt.Sprintf("postgres: POSTGRES_PASSWORD_FILE %q is none of its secrets", deref(pwFile)))
	}
	if pg.Environment["POSTGRES_PASSWORD"] != nil {
		problems = append(problems, "postgres: POSTGRES_PASSWORD in the environment")
	}
	if hc := pg.HealthCheck; hc == nil || len(hc.Test) < 2 || hc.Test[1] != "pg_isready" {
		problems = append(problems, "postgres: no pg_isready health check")
	}
	if !slices.ContainsFunc(pg.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == "/var/lib/postgresql/data"
	}) {
		problems = append(problems, "postgres: its data is on no named volume")
	}
	if !slices.ContainsFunc(pg.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Target == "/docker-entrypoint-initdb.d" && filepath.Base(v.Source) == "initdb"
	}) {
		problems = append(problems, "postgres: initdb/ is not its init scripts")
	}
	return problems
}

// checkCardKey: the payment service opens card data with the private key of
// its own secret file (32 bytes in base64), never one made in its volume, and
// every order instance seals to that key's public half, else no payment could be
// authorised.
func (s system) checkCardKey(payments, orders []string) []string {
	var problems []string
	var public string
	for _, name := range payments {
		path := deref(s.Services[name].Environment["FOLIO_PAYMENT_CARD_KEY_FILE"])
		file, ok := s.secretFile(name, path)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: FOLIO_PAYMENT_CARD_KEY_FILE %q is none of its secrets", name, path))
			continue
		}
		if s.Services[name].Environment["FOLIO_PAYMENT_CARD_KEY"] != nil {
			problems = append(problems, name+": FOLIO_PAYMENT_CARD_KEY is set: the private key belongs in a secret file")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: FOLIO_PAYMENT_CARD_KEY_FILE: %v", name, err))
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(raw) != 32 {
			problems = append(problems, name+": FOLIO_PAYMENT_CARD_KEY_FILE holds no base64 of 32 bytes")
			continue
		}
		key, err := ecdh.X25519().NewPrivateKey(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: FOLIO_PAYMENT_CARD_KEY_FILE: %v", name, err))
			continue
		}
		public = base64.StdEncoding.EncodeToString(key.PublicKey().Bytes())
	}
	for _, name := range orders {
		got := deref(s.Services[name].Environment["FOLIO_PAYMENT_CARD_PUBLIC_KEY"])
		if public != "" && got != public {
			problems = append(problems, fmt.Sprintf("%s: FOLIO_PAYMENT_CARD_PUBLIC_KEY %q is not the public half of the payment service's card key %q", name, got, public))
		}
	}
	return problems
}

// checkNoSecretInEnvironment: no secret file's content (a password, a key, a seed)
// is in any service's environment, where anyone who may inspect a container reads
// it. The first admin's password is the one exception (auth reads it from its
// environment only): it comes from admin.env, not from a secret.
func (s system) checkNoSecretInEnvironment() []string {
	var problems []string
	for name, secret := range s.Secrets {
		b, err := os.ReadFile(secret.File)
		if err != nil {
			problems = append(problems, fmt.Sprintf("secret %s: %v", name, err))
			continue
		}
		value := strings.TrimSpace(string(b))
		if strings.HasSuffix(name, ".pgpass") {
			value = value[strings.LastIndex(value, ":")+1:]
		}
		for svcName, svc := range s.Services {
			for k, v := range svc.Environment {
				if v != nil && value != "" && strings.Contains(*v, value) {
					problems = append(problems, fmt.Sprintf("%s: %s holds secret %s", svcName, k, name))
				}
			}
		}
	}
	return problems
}

// secretFile returns the host file of the secret service mounts at path.
func (s system) secretFile(service, path string) (string, bool) {
	for _, c := range s.Services[service].Secrets {
		target := c.Target
		if target == "" {
			target = c.Source
		}
		if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		if target == path {
			if secret, ok := s.Secrets[c.Source]; ok && secret.File != "" {
				return secret.File, true
			}
		}
	}
	return "", false
}

// pgpassPassword returns the password of the pgpass file at path for user on
// database db (both named after the service), as host:port:database:user:password.
func (s system) pgpassPassword(path, service string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	fields := strings.SplitN(strings.TrimSpace(string(b)), ":", 5)
	if len(fields) != 5 || fields[2] != service || fields[3] != service || len(fields[4]) < 16 {
		return "", false
	}
	return fields[4], true
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// readTree returns the files under dir by their path in it, with their contents.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
