// Package natsconn holds what every NATS connection of a Folio program shares:
// its credential and TLS settings, the redaction of NATS URLs for logs, and the
// one table of what each program may publish and subscribe to.
package natsconn

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Config is how a program proves who it is to NATS and checks the server. All
// fields are optional: without a credential the connection is anonymous, which
// only a server without authentication (a developer's own) accepts.
type Config struct {
	// NkeyFile holds the program's nkey seed ("SU…"), the credential folio up
	// generates; the seed never leaves the program, the server knows only its
	// public key.
	NkeyFile string `env:"FOLIO_NATS_NKEY_FILE"`
	// CredsFile is a NATS .creds file (a user JWT and its seed), for servers run
	// in operator mode.
	CredsFile string `env:"FOLIO_NATS_CREDS"`
	// User and Password, for servers configured with users.
	User     string `env:"FOLIO_NATS_USER"`
	Password string `env:"FOLIO_NATS_PASSWORD" mask:"true"`
	// CA is a PEM file of the CA that signed the server's certificate: with it,
	// nats:// URLs are required to upgrade to TLS too. tls:// URLs use the
	// system's roots without it.
	CA string `env:"FOLIO_NATS_CA"`
	// Cert and Key are a client certificate, for servers that verify clients.
	Cert string `env:"FOLIO_NATS_CERT"`
	Key  string `env:"FOLIO_NATS_KEY" mask:"true"`
}

// Options are the nats.Connect options cfg asks for. Errors: more than one
// credential, a certificate without its key, an unreadable nkey seed.
func (cfg Config) Options() ([]nats.Option, error) {
	var opts []nats.Option
	given := 0
	if cfg.NkeyFile != "" {
		given++
		o, err := nats.NkeyOptionFromSeed(cfg.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed FOLIO_NATS_NKEY_FILE: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.CredsFile != "" {
		given++
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.User != "" || cfg.Password != "" {
		given++
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if given > 1 {
		return nil, errors.New("nats: give one of FOLIO_NATS_NKEY_FILE, FOLIO_NATS_CREDS or FOLIO_NATS_USER/FOLIO_NATS_PASSWORD")
	}
	if cfg.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.CA))
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return nil, errors.New("nats: FOLIO_NATS_CERT and FOLIO_NATS_KEY go together")
	}
	if cfg.Cert != "" {
		opts = append(opts, nats.ClientCert(cfg.Cert, cfg.Key))
	}
	return opts, nil
}

// Redact is a NATS server URL, or a comma-separated list of them, fit for a log:
// the user information goes entirely, since in nats://token@host it is the
// secret itself (url.URL.Redacted would keep it).
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactOne(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func redactOne(s string) string {
	u, err := url.Parse(s)
	if err == nil {
		u.User = nil
		return u.String()
	}
	// Unparsable (a password holding '#' or a stray '%'): drop all before the last '@'.
	scheme, rest, ok := strings.Cut(s, "://")
	if i := strings.LastIndex(rest, "@"); ok && i >= 0 {
		return scheme + "://" + rest[i+1:]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// LoadOrCreateSeed returns the public key of the user nkey whose seed is in path,
// creating the seed first (0600, its directory 0700) if the file is missing.
func LoadOrCreateSeed(path string) (public string, err error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", fmt.Errorf("nats: create nkey: %w", err)
		}
		if seed, err = kp.Seed(); err != nil {
			return "", fmt.Errorf("nats: create nkey: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", fmt.Errorf("nats: nkey directory: %w", err)
		}
		// O_EXCL: two folio up started together must not overwrite each other's seed.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("nats: write nkey seed: %w", err)
		}
		_, werr := f.Write(append(seed, '\n'))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", fmt.Errorf("nats: write nkey seed: %w", werr)
		}
	} else if err != nil {
		return "", fmt.Errorf("nats: read nkey seed: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return "", fmt.Errorf("nats: nkey seed %s: %w", path, err)
	}
	return kp.PublicKey()
}
