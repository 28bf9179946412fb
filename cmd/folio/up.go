package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"folio/internal/devtools/demo"
	"folio/internal/devtools/localbuild"
	"folio/internal/devtools/localnats"
	"folio/internal/devtools/supervise"
	"folio/internal/platform/broker/natsconn"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/secrets"
)

// upConfig is what `folio up` is told by its flags.
type upConfig struct {
	dataDir       string
	host          string
	bookPort      int
	authorPort    int
	authPort      int
	notifyPort    int
	inventoryPort int
	paymentPort   int
	orderPort     int
	gatewayPort   int
	natsPort      int
	scale         scaleFlag
	bookDB        string
	authorDB      string
	authDB        string
	notifyDB      string
	inventoryDB   string
	paymentDB     string
	orderDB       string
	noDemo        bool
	readyTimeout  time.Duration
	// otlp is where the programs export their traces (OTLP over HTTP), or "".
	otlp string
}

// upFlags returns the flag set of `folio up` and the configuration it fills.
func upFlags() (*flag.FlagSet, *upConfig) {
	cfg := &upConfig{}
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.StringVar(&cfg.dataDir, "data-dir", ".folio", "`directory` for the services' SQLite databases, the built programs, the demo accounts' credentials and the markers of what the first run did")
	fs.StringVar(&cfg.host, "host", "127.0.0.1", "`address` the services listen on")
	fs.IntVar(&cfg.bookPort, "book-port", 8081, "port of the book service")
	fs.IntVar(&cfg.authorPort, "author-port", 8082, "port of the author service")
	fs.IntVar(&cfg.authPort, "auth-port", 8083, "port of the auth service")
	fs.IntVar(&cfg.notifyPort, "notify-port", 8084, "port of the notify service")
	fs.IntVar(&cfg.inventoryPort, "inventory-port", 8085, "port of the inventory service")
	fs.IntVar(&cfg.paymentPort, "payment-port", 8086, "port of the payment service (internal: the gateway has no route to it)")
	fs.IntVar(&cfg.orderPort, "order-port", 8087, "port of the order service")
	fs.IntVar(&cfg.gatewayPort, "gateway-port", 8080, "port of the gateway, the public entry point")
	fs.IntVar(&cfg.natsPort, "nats-port", 4322, "port of the embedded NATS server (events and discovery); not 4222, so that it runs beside a NATS already there")
	cfg.scale = scaleFlag{}
	fs.Var(cfg.scale, "scale", "`service=N` runs N instances of a service (book, author, auth, notify, inventory, payment or order), e.g. --scale book=3; repeatable. The extra instances listen on ports the system picks (each reports its own in <data-dir>/addr/<name>.json) and register in discovery")
	fs.StringVar(&cfg.bookDB, "book-db", "",
		"database `URL` of the book service, e.g. postgres://user:pass@host/folio_book (default $FOLIO_DATABASE_URL_BOOK, else SQLite in the data directory)")
	fs.StringVar(&cfg.authorDB, "author-db", "",
		"database `URL` of the author service, e.g. postgres://user:pass@host/folio_author (default $FOLIO_DATABASE_URL_AUTHOR, else SQLite in the data directory)")
	fs.StringVar(&cfg.authDB, "auth-db", "",
		"database `URL` of the auth service, e.g. postgres://user:pass@host/folio_auth (default $FOLIO_DATABASE_URL_AUTH, else SQLite in the data directory)")
	fs.StringVar(&cfg.notifyDB, "notify-db", "",
		"database `URL` of the notify service (default $FOLIO_DATABASE_URL_NOTIFY, else SQLite in the data directory)")
	fs.StringVar(&cfg.inventoryDB, "inventory-db", "",
		"database `URL` of the inventory service (default $FOLIO_DATABASE_URL_INVENTORY, else SQLite in the data directory)")
	fs.StringVar(&cfg.paymentDB, "payment-db", "",
		"database `URL` of the payment service (default $FOLIO_DATABASE_URL_PAYMENT, else SQLite in the data directory)")
	fs.StringVar(&cfg.orderDB, "order-db", "",
		"database `URL` of the order service (default $FOLIO_DATABASE_URL_ORDER, else SQLite in the data directory)")
	fs.BoolVar(&cfg.noDemo, "no-demo", false, "do not load the demo catalogue and its stock")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", 60*time.Second, "how long each service may take to become ready")
	fs.StringVar(&cfg.otlp, "otlp", "", "`URL` of an OpenTelemetry collector or Jaeger (OTLP over HTTP, e.g. http://127.0.0.1:4318) the programs export their traces to (default $OTEL_EXPORTER_OTLP_ENDPOINT; none: traces are not recorded)")
	return fs, cfg
}

// service is one instance of a Folio service as `folio up` runs it.
type service struct {
	name    string   // of the instance: "book", then "book-2", "book-3"…
	program string   // the service it is an instance of
	port    int      // 0 for an extra instance: the system picks it
	flag    string   // the flag that sets its port
	db      string   // "" for SQLite in the data directory
	noDB    bool     // the program keeps no database (the gateway)
	env     []string // the variables that point it at its peers
	proc    *supervise.Process
	url     string // known once ready, for an extra instance
	// addrFile is where the instance reports the addresses it bound
	// (FOLIO_ADDR_FILE): proof that what answers at its port is this instance.
	addrFile string
}

// up serves `folio up`: it runs the auth, author, book, notify, inventory, payment
// and order services and the gateway as child processes until ctx ends, then stops
// them. Errors: bad flags, a port in use, a service that cannot be
// built, started or made ready, a demo load that failed. Ctrl-C at any point is a
// clean stop, not an error.
func up(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	begin := time.Now()
	cfg, err := parseUp(args, getenv, stdout)
	if cfg == nil || err != nil {
		return err
	}
	services, err := planServices(cfg)
	if err != nil {
		return err
	}
	if err := prepareDataDir(cfg.dataDir, services); err != nil {
		return err
	}
	nats, err := connectToNATS(cfg, services, getenv)
	if err != nil {
		return err
	}
	creds, err := provideSecrets(cfg.dataDir, services)
	if err != nil {
		return err
	}

	sup := newSupervisor(stdout, cfg.dataDir, services)
	announce := context.AfterFunc(ctx, func() {
		sup.Logf("stopping the services (press Ctrl-C again to kill them at once)")
	})
	defer func() {
		announce()
		stopAll(sup, services)
	}()

	sup.Logf("starting NATS (JetStream in %s)", filepath.Join(cfg.dataDir, "nats"))
	_, probe, err := nats.start(ctx, sup, cfg.readyTimeout)
	if probe != nil {
		defer probe.close()
	}
	if err != nil {
		return interrupted(ctx, err)
	}
	if err := startServices(ctx, sup, cfg, services, getenv, stdout); err != nil {
		return interrupted(ctx, err)
	}
	sup.Logf("all services ready %s after start", since(begin))
	firstRun, err := createAccounts(ctx, sup, cfg.dataDir, serviceURL(cfg, cfg.authPort), creds)
	if err != nil {
		return interrupted(ctx, err)
	}
	if !cfg.noDemo {
		// One login for both loads, and none when both were done by an earlier run.
		tok := sync.OnceValues(func() (string, error) { return editorToken(ctx, serviceURL(cfg, cfg.authPort), creds) })
		if err := loadDemo(ctx, sup, cfg, tok); err != nil {
			return interrupted(ctx, err)
		}
		if err := loadDemoStock(ctx, sup, cfg, tok); err != nil {
			return interrupted(ctx, err)
		}
	}
	sup.Logf("started in %s", since(begin))
	sup.Output().Print(banner(serviceURL(cfg, cfg.gatewayPort), nats.url(), services, cfg.dataDir, cfg.otlp, creds, firstRun))

	<-ctx.Done()
	return nil
}

// serviceURL is the URL at which the first instance of a service listening on port
// is reached.
func serviceURL(cfg *upConfig, port int) string {
	return "http://" + net.JoinHostPort(connectHost(cfg.host), strconv.Itoa(port))
}

// planServices returns the instances to run, in start order (each one's peers are
// up before it starts), once it has checked that the ports cfg names are free.
func planServices(cfg *upConfig) ([]*service, error) {
	services := []*service{
		{name: "auth", port: cfg.authPort, flag: "--auth-port", db: cfg.authDB},
		{name: "author", port: cfg.authorPort, flag: "--author-port", db: cfg.authorDB},
		{name: "book", port: cfg.bookPort, flag: "--book-port", db: cfg.bookDB},
		{name: "notify", port: cfg.notifyPort, flag: "--notify-port", db: cfg.notifyDB},
		{name: "inventory", port: cfg.inventoryPort, flag: "--inventory-port", db: cfg.inventoryDB},
		{name: "payment", port: cfg.paymentPort, flag: "--payment-port", db: cfg.paymentDB},
		{name: "order", port: cfg.orderPort, flag: "--order-port", db: cfg.orderDB},
		{name: "gateway", port: cfg.gatewayPort, flag: "--gateway-port", noDB: true},
	}
	nats := &service{name: "NATS", port: cfg.natsPort, flag: "--nats-port"}
	// Every flag is checked before the machine is: a mistyped port is the
	// user's to fix whatever else runs here.
	for _, s := range append(services, nats) {
		if s.port < 1 || s.port > 65535 {
			return nil, fmt.Errorf("%s %d is not a port; pick one from 1 to 65535", s.flag, s.port)
		}
	}
	for _, s := range append(services, nats) {
		s.url = serviceURL(cfg, s.port)
		if err := checkPort(cfg.host, s); err != nil {
			return nil, err
		}
	}
	return scaleOut(services, cfg.scale), nil
}

// prepareDataDir makes the data directory and its addr directory, and names each
// instance's addr file there.
func prepareDataDir(dataDir string, services []*service) error {
	// The data directory holds the databases, keys and credentials: the owner's
	// alone, also when an earlier run made it 0755.
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	addrDir := filepath.Join(dataDir, "addr")
	if err := os.MkdirAll(addrDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	for _, s := range services {
		s.addrFile = filepath.Join(addrDir, s.name+".json")
		// A file left by an earlier run would name the ports of programs long gone.
		if err := os.Remove(s.addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	return nil
}

// connectToNATS returns the NATS server folio up is to run, and points every
// instance at it.
func connectToNATS(cfg *upConfig, services []*service, getenv func(string) string) (natsChild, error) {
	natsKeys, _, err := natsCredentials(cfg.dataDir, getenv)
	if err != nil {
		return natsChild{}, err
	}
	nats := natsChild{host: cfg.host, port: cfg.natsPort, dataDir: cfg.dataDir, names: natsNames(getenv),
		adminSeed: natsKeys["admin"], readyWithin: max(time.Minute, cfg.readyTimeout), aliveFailures: 3}
	// Every program finds its peers in the registry on folio up's NATS, which
	// it reaches with its own credential and nothing else of folio's environment.
	for _, s := range services {
		s.env = append(s.env, "FOLIO_DISCOVERY=nats", "FOLIO_NATS_URL="+nats.url(), "FOLIO_INSTANCE_ID="+s.name,
			"FOLIO_NATS_NKEY_FILE="+natsKeys[s.program], "FOLIO_NATS_CREDS=", "FOLIO_NATS_USER=", "FOLIO_NATS_PASSWORD=",
			"FOLIO_NATS_CA=", "FOLIO_NATS_CERT=", "FOLIO_NATS_KEY=")
	}
	return nats, nil
}

// provideSecrets returns the demo accounts' credentials, made on the first run, and
// gives the services that need them the admin account and the secrets key.
func provideSecrets(dataDir string, services []*service) (credentials, error) {
	creds, err := loadOrCreateCredentials(dataDir)
	if err != nil {
		return credentials{}, err
	}
	// The key that seals the signing keys and webhook secrets in the databases: one
	// file, 0600, made on the first run. Locally it lies beside the data; elsewhere it
	// is mounted from a secret store.
	secretsKey := filepath.Join(dataDir, "secrets.key")
	if err := secrets.EnsureKeyFile(secretsKey); err != nil {
		return credentials{}, err
	}
	cardKey := filepath.Join(dataDir, "payment-card.key")
	card, err := secrets.EnsureRecipientKeyFile(cardKey)
	if err != nil {
		return credentials{}, err
	}
	// The same admin every run: the auth service creates it when it is missing and
	// changes nothing when it exists, so an interrupted first run heals itself.
	for _, s := range services {
		if s.program == "auth" || s.program == "notify" || s.program == "order" {
			s.env = append(s.env, "FOLIO_SECRETS_KEY_FILE="+secretsKey)
		}
		if s.program == "auth" {
			s.env = append(s.env, "FOLIO_ADMIN_EMAIL="+creds.AdminEmail, "FOLIO_ADMIN_PASSWORD="+creds.AdminPassword)
		}
		if s.program == "notify" {
			// A developer's webhook receivers run on this machine or network; on a
			// shared network the address check stays on (the default).
			s.env = append(s.env, "FOLIO_WEBHOOK_ALLOW_PRIVATE=1")
		}
		// Card data is sealed by the order service to the payment service's key:
		// the payment service alone holds the private half.
		if s.program == "payment" {
			s.env = append(s.env, "FOLIO_PAYMENT_CARD_KEY_FILE="+cardKey)
		}
		if s.program == "order" {
			s.env = append(s.env, "FOLIO_PAYMENT_CARD_PUBLIC_KEY="+card.PublicKey())
		}
	}
	return creds, nil
}

// newSupervisor returns the supervisor of the services, its lines prefixed with
// the instances' names padded to the longest.
func newSupervisor(stdout io.Writer, dataDir string, services []*service) *supervise.Supervisor {
	width := len("folio")
	for _, s := range services {
		width = max(width, len(s.name))
	}
	// Every program writes to its own file under logs/, which folio up prints: a
	// program never waits for folio up to read what it wrote.
	return supervise.New(stdout, supervise.Config{Name: "folio", PrefixWidth: width, LogDir: filepath.Join(dataDir, "logs"),
		ProbeInterval: upProbeInterval, ProbeTimeout: upProbeTimeout})
}

// stopAll stops the services first, so that they can withdraw from the registry
// and hand their last events to NATS; then NATS.
func stopAll(sup *supervise.Supervisor, services []*service) {
	var stopping sync.WaitGroup
	for _, s := range services {
		if s.proc != nil {
			stopping.Go(s.proc.Stop)
		}
	}
	stopping.Wait()
	sup.Stop()
	sup.Logf("all services stopped")
	sup.Output().Flush()
}

// parseUp reads the flags of `folio up` and checks them. It returns a nil config and
// nil error when it printed help.
func parseUp(args []string, getenv func(string) string, stdout io.Writer) (*upConfig, error) {
	fs, cfg := upFlags()
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	// Read here rather than as flag defaults, so that help never shows a password.
	for _, db := range []struct {
		url *string
		env string
	}{{&cfg.bookDB, "FOLIO_DATABASE_URL_BOOK"}, {&cfg.authorDB, "FOLIO_DATABASE_URL_AUTHOR"}, {&cfg.authDB, "FOLIO_DATABASE_URL_AUTH"},
		{&cfg.notifyDB, "FOLIO_DATABASE_URL_NOTIFY"}, {&cfg.inventoryDB, "FOLIO_DATABASE_URL_INVENTORY"},
		{&cfg.paymentDB, "FOLIO_DATABASE_URL_PAYMENT"}, {&cfg.orderDB, "FOLIO_DATABASE_URL_ORDER"}} {
		if *db.url == "" {
			*db.url = getenv(db.env)
		}
	}
	dir, err := filepath.Abs(cfg.dataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	cfg.dataDir = dir
	if cfg.otlp == "" {
		cfg.otlp = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	} else if u, err := url.Parse(cfg.otlp); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--otlp %s is not an http(s) URL, e.g. http://127.0.0.1:4318", cfg.otlp)
	}
	switch {
	case cfg.readyTimeout <= 0:
		return nil, errors.New("--ready-timeout must be positive")
	}
	ports := []struct {
		flag string
		port int
	}{{"--book-port", cfg.bookPort}, {"--author-port", cfg.authorPort}, {"--auth-port", cfg.authPort}, {"--notify-port", cfg.notifyPort},
		{"--inventory-port", cfg.inventoryPort}, {"--payment-port", cfg.paymentPort}, {"--order-port", cfg.orderPort},
		{"--gateway-port", cfg.gatewayPort}, {"--nats-port", cfg.natsPort}}
	for i, a := range ports {
		for _, b := range ports[i+1:] {
			if a.port == b.port {
				return nil, fmt.Errorf("%s and %s are both %d; give each service a port of its own", a.flag, b.flag, a.port)
			}
		}
	}
	return cfg, nil
}

// startServices finds or builds the service programs, then starts each under sup in
// order, with its configuration in FOLIO_* variables on top of folio's own
// environment, and waits until it is ready before it starts the next.
func startServices(ctx context.Context, sup *supervise.Supervisor, cfg *upConfig, services []*service, getenv func(string) string, stdout io.Writer) error {
	sup.Logf("preparing the service programs (the first build takes a minute; later ones are quick)")
	var names []string
	for _, s := range services {
		if !slices.Contains(names, s.program) {
			names = append(names, s.program)
		}
	}
	paths, err := localbuild.Programs(ctx, filepath.Join(cfg.dataDir, "bin"), names...)
	if err != nil {
		return fmt.Errorf("prepare the service programs: %w", err)
	}

	logFormat := getenv("FOLIO_LOG_FORMAT")
	if logFormat == "" {
		logFormat = "json"
		if isTerminal(stdout) {
			logFormat = "text"
		}
	}
	for _, s := range services {
		spec := supervise.Spec{Name: s.name, Path: paths[s.program], Env: serviceEnv(cfg, s, logFormat),
			Ready: readyCheck(cfg.host, s.addrFile)}
		if s.port == 0 {
			spec.RestartEnv = restartOnSamePort(cfg.host, s.addrFile)
		}
		s.proc, err = sup.Start(spec)
		if err != nil {
			return err
		}
		if err := waitReady(ctx, cfg.host, s, cfg.readyTimeout); err != nil {
			return err
		}
	}
	return nil
}

// serviceEnv is the environment of instance s: folio's own, then the instance's
// configuration in FOLIO_* variables, which win over folio's.
func serviceEnv(cfg *upConfig, s *service, logFormat string) []string {
	env := append(os.Environ(),
		"FOLIO_HTTP_ADDR="+net.JoinHostPort(cfg.host, strconv.Itoa(s.port)),
		"FOLIO_DATA_DIR="+cfg.dataDir,
		"FOLIO_LOG_FORMAT="+logFormat,
		// Empty: each instance's default, loopback at its HTTP port + 1000 or any
		// free port if that is taken (its "metrics listening" line and its addr
		// file say which), rather than one address from folio's environment that
		// every instance would want.
		"FOLIO_METRICS_ADDR=",
		"FOLIO_ADDR_FILE="+s.addrFile,
		// Each program names itself in its spans; one name from folio's
		// environment would give them all the same.
		"OTEL_SERVICE_NAME=",
	)
	if cfg.otlp != "" {
		env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+cfg.otlp)
	}
	if s.program != "gateway" {
		// The services see requests through the gateway on loopback, and take the
		// client address it appends to X-Forwarded-For. The gateway itself trusts
		// no proxy: it is the edge.
		env = append(env, "FOLIO_TRUSTED_PROXIES=127.0.0.0/8,::1")
	} else {
		env = append(env, "FOLIO_TRUSTED_PROXIES=")
	}
	if !s.noDB {
		db := s.db
		if db == "" {
			// The instances of a service share its database, as they would in production.
			db = "sqlite:" + filepath.Join(cfg.dataDir, s.program+".db")
		}
		env = append(env, "FOLIO_DATABASE_URL="+db)
	}
	return append(env, s.env...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }

// interrupted returns nil when err came from ctx ending (Ctrl-C while starting is a
// clean stop), else err.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// connectHost returns the host to connect to for services listening on host: a
// wildcard address accepts connections on the loopback address.
func connectHost(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() == nil {
			return "::1"
		}
		return "127.0.0.1"
	}
	return host
}

// checkPort fails with a one-line message when s's port cannot be listened on.
func checkPort(host string, s *service) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(s.port)))
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("port %d (%s) is already in use; pick another with %s", s.port, s.name, s.flag)
	}
	if err != nil {
		return fmt.Errorf("cannot listen on %s for the %s service: %v", net.JoinHostPort(host, strconv.Itoa(s.port)), s.name, errors.Unwrap(err))
	}
	return ln.Close()
}

// waitReady waits until s has reported the address it bound in its addr file and
// answers /readyz there with 200, or s exits, ctx ends or timeout passes. The addr
// file is written by s itself once it has bound its port, so the /readyz that
// answers is s's, not that of a program that took the port first. An extra
// instance's URL is learnt from the file.
func waitReady(ctx context.Context, host string, s *service, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if n, why := s.proc.Exits(); n > 0 {
			return fmt.Errorf("the %s service exited before it was ready (%v); its log above says why", s.name, why)
		}
		if ready, err := answersReady(ctx, hc, host, s); err != nil {
			return err
		} else if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %s service was not ready within %s; its log above says why", s.name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// answersReady reports whether s has written its addr file and answers /readyz
// with 200; it sets s.url from the file when s has none yet.
func answersReady(ctx context.Context, hc *http.Client, host string, s *service) (bool, error) {
	addrs, err := httpserver.ReadAddrFile(s.addrFile)
	if err != nil {
		return false, nil
	}
	if s.url == "" {
		_, port, err := net.SplitHostPort(addrs.HTTP)
		if err != nil {
			return false, fmt.Errorf("the %s service reported %q: %w", s.name, addrs.HTTP, err)
		}
		s.url = "http://" + net.JoinHostPort(connectHost(host), port)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/readyz", nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, nil
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// upProbeInterval is how often folio up checks each program (its /readyz until it
// is ready, after a start; NATS's JetStream all the time), and upProbeTimeout how
// long a check may take: generous, since a write synced to disk on a busy machine
// can take seconds, and three failures in a row restart NATS.
const (
	upProbeInterval = 2 * time.Second
	upProbeTimeout  = 5 * time.Second
)

// readyCheck is the supervisor's Ready check of a service: it has reported the
// address it bound in addrFile and answers /readyz there with 200. A run counts as
// healthy, for the restart backoff, only from then.
func readyCheck(host, addrFile string) func(context.Context) error {
	hc := &http.Client{}
	return func(ctx context.Context) error {
		addrs, err := httpserver.ReadAddrFile(addrFile)
		if err != nil {
			return err
		}
		_, port, err := net.SplitHostPort(addrs.HTTP)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(connectHost(host), port)+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	}
}

// restartOnSamePort is the supervisor's RestartEnv for an instance that started on
// a port the system picked: the instance comes back on the port it had, which its
// peers may still hold in their pools (the registry entry expires by its TTL). If
// someone has taken that port meanwhile, the restart fails to bind and writes no
// addr file, so the next restart takes any port again.
func restartOnSamePort(host, addrFile string) func() []string {
	return func() []string {
		addrs, err := httpserver.ReadAddrFile(addrFile)
		// Removed so that only the coming run's own report will be read.
		_ = os.Remove(addrFile)
		if err != nil {
			return []string{"FOLIO_HTTP_ADDR=" + net.JoinHostPort(host, "0")}
		}
		_, port, err := net.SplitHostPort(addrs.HTTP)
		if err != nil {
			return []string{"FOLIO_HTTP_ADDR=" + net.JoinHostPort(host, "0")}
		}
		return []string{"FOLIO_HTTP_ADDR=" + net.JoinHostPort(host, port)}
	}
}

// markerName is the file in the data directory whose presence says the demo catalogue
// was loaded completely.
const markerName = "demo-loaded"

// loadDemo loads the demo catalogue, as the demo editor, unless the marker says an
// earlier run did.
func loadDemo(ctx context.Context, sup *supervise.Supervisor, cfg *upConfig, editor func() (string, error)) error {
	marker := filepath.Join(cfg.dataDir, markerName)
	if _, err := os.Stat(marker); err == nil {
		sup.Logf("demo catalogue already loaded (%s exists)", marker)
		return nil
	}
	sup.Logf("loading the demo catalogue through the services' APIs")
	tok, err := editor()
	if err != nil {
		return err
	}
	stats, err := demo.Load(ctx, serviceURL(cfg, cfg.bookPort), serviceURL(cfg, cfg.authorPort), tok, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("%w; run folio up again to resume the load, or pass --no-demo", err)
	}
	msg := fmt.Sprintf("demo catalogue loaded: %d authors and %d books created in %s",
		stats.Authors, stats.Books, stats.Elapsed.Round(10*time.Millisecond))
	if stats.AuthorsReplayed+stats.BooksReplayed > 0 {
		msg += fmt.Sprintf(" (%d authors and %d books were already there from an interrupted load)",
			stats.AuthorsReplayed, stats.BooksReplayed)
	}
	sup.Logf("%s", msg)
	content := fmt.Sprintf("loaded %s: %d authors, %d books\n", time.Now().UTC().Format(time.RFC3339),
		stats.Authors+stats.AuthorsReplayed, stats.Books+stats.BooksReplayed)
	if err := os.WriteFile(marker, []byte(content), 0o644); err != nil {
		return fmt.Errorf("record that the demo catalogue is loaded: %w", err)
	}
	return nil
}

// stockMarkerName is the file in the data directory whose presence says the demo
// stock and prices were loaded: a data directory from before the order services
// gets them on its next run.
const stockMarkerName = "demo-stock-loaded"

// loadDemoStock gives every book stock and a price in the inventory service, as the
// demo editor, unless the marker says an earlier run did.
func loadDemoStock(ctx context.Context, sup *supervise.Supervisor, cfg *upConfig, editor func() (string, error)) error {
	marker := filepath.Join(cfg.dataDir, stockMarkerName)
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	tok, err := editor()
	if err != nil {
		return err
	}
	stats, err := demo.Stock(ctx, serviceURL(cfg, cfg.bookPort), serviceURL(cfg, cfg.inventoryPort), tok, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("demo stock: %w; run folio up again to resume, or pass --no-demo", err)
	}
	sup.Logf("demo stock loaded: %d books stocked and priced (%d had stock already) in %s",
		stats.Stocked, stats.Kept, stats.Elapsed.Round(10*time.Millisecond))
	content := fmt.Sprintf("loaded %s: %d books stocked\n", time.Now().UTC().Format(time.RFC3339), stats.Stocked+stats.Kept)
	if err := os.WriteFile(marker, []byte(content), 0o644); err != nil {
		return fmt.Errorf("record that the demo stock is loaded: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// scaleFlag is the value of --scale: instances wanted per service.
type scaleFlag map[string]int

// scalable are the services that may run more than one instance: the gateway is
// the one public port, so it stays single here.
var scalable = []string{"auth", "author", "book", "notify", "inventory", "payment", "order"}

func (f scaleFlag) String() string {
	var parts []string
	for _, name := range scalable {
		if n, ok := f[name]; ok {
			parts = append(parts, name+"="+strconv.Itoa(n))
		}
	}
	return strings.Join(parts, ",")
}

func (f scaleFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		name, count, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(count)
		switch {
		case !ok || err != nil:
			return fmt.Errorf("%q is not service=N", part)
		case !slices.Contains(scalable, name):
			return fmt.Errorf("%q cannot be scaled; choose from %s", name, strings.Join(scalable, ", "))
		case n < 1 || n > 16:
			return fmt.Errorf("%s=%d: the number of instances must be 1 to 16", name, n)
		}
		f[name] = n
	}
	return nil
}

// scaleOut fills in each instance's program and adds the extra instances that
// scale asks for, right after the first one. An extra instance listens on a port
// the system picks (port 0) and reports it in its addr file: peers find it in the
// registry, so nobody needs its port before it starts.
func scaleOut(services []*service, scale scaleFlag) []*service {
	var out []*service
	for _, s := range services {
		s.program = s.name
		out = append(out, s)
		for i := 2; i <= scale[s.name]; i++ {
			extra := *s
			extra.name = fmt.Sprintf("%s-%d", s.name, i)
			extra.port = 0
			extra.flag = "--scale"
			extra.url = ""
			extra.env = slices.Clone(s.env)
			out = append(out, &extra)
		}
	}
	return out
}

// natsKeysDir is where, under the data directory, the programs' NATS nkey seeds are.
const natsKeysDir = "nats-keys"

// natsCredentials returns the nkey seed file of each program, and the users the
// embedded NATS accepts: one per program with the permissions of natsconn's
// table, and "admin" (unrestricted, for the operator's tools). The seeds are made
// on the first run, 0600 in a 0700 directory; the server knows only the public
// keys. The table is written for the subject prefix, stream and bucket names
// the programs will read from the same environment.
func natsCredentials(dataDir string, getenv func(string) string) (map[string]string, []localnats.User, error) {
	return natsUsers(filepath.Join(dataDir, natsKeysDir), natsNames(getenv))
}

// natsNames are the subject prefix, stream and bucket names the programs will read
// from the environment getenv reads.
func natsNames(getenv func(string) string) natsconn.Names {
	names := natsconn.DefaultNames
	for _, v := range []struct {
		name *string
		env  string
	}{{&names.Prefix, "FOLIO_EVENTS_PREFIX"}, {&names.Stream, "FOLIO_EVENTS_STREAM"}, {&names.Bucket, "FOLIO_DISCOVERY_BUCKET"}} {
		if e := getenv(v.env); e != "" {
			*v.name = e
		}
	}
	return names
}

// natsUsers is natsCredentials with the seeds in dir and the permissions written
// for names: what `folio nats serve` reads too.
func natsUsers(dir string, names natsconn.Names) (map[string]string, []localnats.User, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("NATS credentials: %w", err)
	}
	// An existing directory keeps its mode through MkdirAll: an earlier run's,
	// or one the user made, is made private too.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("NATS credentials: %w", err)
	}
	seeds := map[string]string{}
	var users []localnats.User
	for _, program := range append(natsconn.Programs(), "admin") {
		seed := filepath.Join(dir, program+".nk")
		public, err := natsconn.LoadOrCreateSeed(seed)
		if err != nil {
			return nil, nil, err
		}
		if err := os.Chmod(seed, 0o600); err != nil {
			return nil, nil, fmt.Errorf("NATS credentials: %w", err)
		}
		seeds[program] = seed
		u := localnats.User{Name: program, Nkey: public, Unrestricted: program == "admin"}
		if !u.Unrestricted {
			if u.Permissions, err = natsconn.For(program, names); err != nil {
				return nil, nil, err
			}
		}
		users = append(users, u)
	}
	return seeds, users, nil
}
