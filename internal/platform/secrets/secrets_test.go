package secrets_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"folio/internal/platform/secrets"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newBox(t *testing.T) *secrets.Box {
	t.Helper()
	b, err := secrets.Load(secrets.Config{Key: secrets.GenerateKey()}, "", discard())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealRoundTrip(t *testing.T) {
	b := newBox(t)
	plain := []byte("a private key")
	sealed := b.Seal(plain, []byte("key-1"))
	if !secrets.IsSealed(sealed) {
		t.Fatalf("IsSealed(%q) = false", sealed)
	}
	if strings.Contains(sealed, string(plain)) {
		t.Fatalf("sealed value %q holds the plaintext", sealed)
	}
	got, err := b.Unseal(sealed, []byte("key-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("got %q, want %q", got, plain)
	}
	if again := b.Seal(plain, []byte("key-1")); again == sealed {
		t.Fatal("two seals of the same value are equal: the nonce is not fresh")
	}
}

func TestUnsealRefuses(t *testing.T) {
	b := newBox(t)
	other := newBox(t)
	sealed := b.Seal([]byte("secret"), []byte("ctx"))
	tamper := func(s string) string {
		// Flip one character of the ciphertext, not of the prefix or key id.
		r := []byte(s)
		i := len(r) - 5
		if r[i] == 'A' {
			r[i] = 'B'
		} else {
			r[i] = 'A'
		}
		return string(r)
	}
	tests := []struct {
		name    string
		box     *secrets.Box
		sealed  string
		context string
	}{
		{"wrong key", other, sealed, "ctx"},
		{"wrong key, same key id claimed", other, strings.Replace(sealed, b.KeyID(), other.KeyID(), 1), "ctx"},
		{"tampered ciphertext", b, tamper(sealed), "ctx"},
		{"wrong context", b, sealed, "other-row"},
		{"empty context", b, sealed, ""},
		{"not sealed", b, "plain text", "ctx"},
		{"truncated", b, sealed[:len("sealed:v1:")+10], "ctx"},
		{"bad base64", b, "sealed:v1:" + b.KeyID() + ":!!!", "ctx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.box.Unseal(tt.sealed, []byte(tt.context))
			if err == nil {
				t.Fatalf("Unseal succeeded with %q, want an error", got)
			}
			if !errors.Is(err, secrets.ErrUnseal) {
				t.Fatalf("got %v, want ErrUnseal", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	key := secrets.GenerateKey()
	keyFile := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromEnv, err := secrets.Load(secrets.Config{Key: key}, t.TempDir(), discard())
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := secrets.Load(secrets.Config{KeyFile: keyFile}, t.TempDir(), discard())
	if err != nil {
		t.Fatal(err)
	}
	sealed := fromEnv.Seal([]byte("x"), nil)
	if _, err := fromFile.Unseal(sealed, nil); err != nil {
		t.Fatalf("the key from the file does not open what the same key from the environment sealed: %v", err)
	}

	bad := []struct {
		name string
		cfg  secrets.Config
	}{
		{"key not base64", secrets.Config{Key: "not base64!"}},
		{"key too short", secrets.Config{Key: "c2hvcnQ="}},
		{"key file missing", secrets.Config{KeyFile: filepath.Join(t.TempDir(), "absent")}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := secrets.Load(tt.cfg, t.TempDir(), discard()); err == nil {
				t.Fatal("Load succeeded, want an error")
			}
		})
	}
}

func TestLoadCreatesPrivateKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	first, err := secrets.Load(secrets.Config{}, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, secrets.DefaultKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("key file mode %v, want 0600", got)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Fatalf("data directory mode %v, want 0700", got)
	}
	if !strings.Contains(logs.String(), "beside the data") {
		t.Fatalf("no warning that the key lies beside the data; logs: %s", logs.String())
	}
	// A restart reads the same key back.
	second, err := secrets.Load(secrets.Config{}, dir, discard())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Unseal(first.Seal([]byte("x"), []byte("c")), []byte("c")); err != nil {
		t.Fatalf("the key read back does not open what the created key sealed: %v", err)
	}
}

func TestEnsureKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "secrets.key")
	if err := secrets.EnsureKeyFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: got %v, %v, want a 0600 file", fi, err)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := secrets.EnsureKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, first) {
		t.Error("a second EnsureKeyFile replaced the key")
	}
	if _, err := secrets.Load(secrets.Config{KeyFile: path}, "", discard()); err != nil {
		t.Errorf("Load of the made key file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := secrets.EnsureKeyFile(bad); err == nil {
		t.Error("EnsureKeyFile of a file holding no key: got nil, want an error")
	}
}

// A key file any user may read is warned of; one its group may read, as a
// Kubernetes Secret volume with fsGroup gives it, is not.
func TestLoadWarnsOfAWorldReadableKeyFile(t *testing.T) {
	for _, c := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o440, false}, {0o640, false}, {0o644, true}, {0o604, true}} {
		t.Run(c.mode.String(), func(t *testing.T) {
			keyFile := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(keyFile, []byte(secrets.GenerateKey()), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(keyFile, c.mode); err != nil {
				t.Fatal(err)
			}
			var logged bytes.Buffer
			if _, err := secrets.Load(secrets.Config{KeyFile: keyFile}, t.TempDir(), slog.New(slog.NewTextHandler(&logged, nil))); err != nil {
				t.Fatal(err)
			}
			if warned := strings.Contains(logged.String(), "open to every user"); warned != c.warn {
				t.Errorf("mode %v: warned %v, want %v (log: %s)", c.mode, warned, c.warn, logged.String())
			}
		})
	}
}
