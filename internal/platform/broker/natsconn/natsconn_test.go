package natsconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// Issue 8, finding 10: url.Redacted keeps the user part, which in a NATS token
// URL is the token.
func TestRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"nats://s3cret@nats:4222", "nats://nats:4222"},
		{"nats://user:s3cret@nats:4222", "nats://nats:4222"},
		{"tls://a:s3cret@n1:4222, nats://s3cret@n2:4222", "tls://n1:4222,nats://n2:4222"},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://us:s3c#ret%zz@nats:4222", "nats://nats:4222"},
		{"s3cret@nats:4222", "nats:4222"},
	} {
		got := Redact(tt.in)
		if got != tt.want || strings.Contains(got, "s3c") {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "p.nk")
	if _, err := LoadOrCreateSeed(seed); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"nothing: anonymous", Config{}, true},
		{"nkey", Config{NkeyFile: seed}, true},
		{"user and password", Config{User: "book", Password: "pw"}, true},
		{"creds", Config{CredsFile: filepath.Join(dir, "x.creds")}, true},
		{"two credentials", Config{NkeyFile: seed, User: "book", Password: "pw"}, false},
		{"a missing seed", Config{NkeyFile: filepath.Join(dir, "missing.nk")}, false},
		{"a certificate without its key", Config{Cert: "c.pem"}, false},
		{"CA and client certificate", Config{CA: "ca.pem", Cert: "c.pem", Key: "k.pem"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.cfg.Options(); (err == nil) != tt.ok {
				t.Errorf("Options() error %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestLoadOrCreateSeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "book.nk")
	first, err := LoadOrCreateSeed(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first, "U") {
		t.Errorf("public key %q is not a user nkey", first)
	}
	again, err := LoadOrCreateSeed(path)
	if err != nil || again != first {
		t.Errorf("second load = %q, %v; want the same key %q", again, err, first)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	if err := os.WriteFile(path, []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSeed(path); err == nil {
		t.Error("a broken seed file was accepted")
	}
}

// No program may delete or purge anything, nor publish outside its own subjects.
func TestPermissionsAreNarrow(t *testing.T) {
	for _, program := range Programs() {
		p, err := For(program, DefaultNames)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Publish {
			switch {
			case strings.Contains(s, "STREAM.DELETE"), strings.Contains(s, "PURGE"), strings.Contains(s, "MSG.DELETE"),
				strings.Contains(s, "CONSUMER.DELETE.FOLIO_EVENTS"), s == ">", strings.HasPrefix(s, "folio.>"),
				strings.HasPrefix(s, "$KV.folio_discovery.>"), strings.HasPrefix(s, "$KV.folio_discovery.*"):
				t.Errorf("%s may publish %s", program, s)
			case strings.HasPrefix(s, "$KV.") && !strings.HasPrefix(s, "$KV.folio_discovery."+program+"."):
				t.Errorf("%s may write another's registry keys: %s", program, s)
			}
		}
		if len(p.Subscribe) != 1 || p.Subscribe[0] != "_INBOX.>" {
			t.Errorf("%s subscribes to %v, want only its inboxes", program, p.Subscribe)
		}
	}
	if _, err := For("intruder", DefaultNames); err == nil {
		t.Error("an unknown program got permissions")
	}
}

// The rendered configuration is one nats-server reads.
func TestServerConfigParses(t *testing.T) {
	keys := map[string]string{}
	for _, program := range Programs() {
		pub, err := LoadOrCreateSeed(filepath.Join(t.TempDir(), program+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		keys[program] = pub
	}
	conf, err := ServerConfig(DefaultNames, keys)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte("jetstream {}\n"+conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server cannot read it: %v\n%s", err, conf)
	}
	if len(opts.Nkeys) != len(keys) {
		t.Fatalf("%d nkey users, want %d", len(opts.Nkeys), len(keys))
	}
	for _, u := range opts.Nkeys {
		if u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0 || len(u.Permissions.Publish.Deny) == 0 {
			t.Errorf("user %s has no publish allow or deny list", u.Nkey)
		}
	}
}
