package secrets

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealToRecipient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "card.key")
	r, err := EnsureRecipientKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	again, err := EnsureRecipientKeyFile(path)
	if err != nil || again.PublicKey() != r.PublicKey() {
		t.Fatalf("second load: %v, public key %q, want %q", err, again.PublicKey(), r.PublicKey())
	}
	sealed, err := SealTo(r.PublicKey(), []byte("4242424242424242"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Open(sealed); err != nil || string(got) != "4242424242424242" {
		t.Fatalf("Open = %q, %v", got, err)
	}

	// Another key, an altered value and a Box's value are all refused.
	other, _ := LoadRecipient(GenerateRecipientKey())
	altered := sealed[:len(sealed)-2] + "AA"
	if altered == sealed {
		altered = sealed[:len(sealed)-2] + "BB"
	}
	for name, v := range map[string]string{"other key": mustSeal(t, other.PublicKey()), "altered": altered, "box value": "v1:whatever"} {
		if _, err := r.Open(v); !errors.Is(err, ErrUnseal) {
			t.Errorf("%s: Open error %v, want ErrUnseal", name, err)
		}
	}
	if _, err := r.Open(mustSeal(t, other.PublicKey())); !errors.Is(err, ErrOtherKey) {
		t.Errorf("sealed to another key: Open error %v, want ErrOtherKey", err)
	}
	if _, err := SealTo("c2hvcnQ=", nil); err == nil {
		t.Error("SealTo took a 5-byte public key")
	}
	if _, err := LoadRecipient("not base64!"); err == nil {
		t.Error("LoadRecipient took a key that is not base64")
	}
}

// TestSealedValuesNameTheirKey: a value sealed to a recipient names its key, so
// that one sealed to another key (a public key copied wrong, a key rotated) says
// so; the key id is only a name, since the sealed box itself is what cannot be
// forged.
func TestSealedValuesNameTheirKey(t *testing.T) {
	r, _ := LoadRecipient(GenerateRecipientKey())
	other, _ := LoadRecipient(GenerateRecipientKey())
	if r.KeyID() == other.KeyID() {
		t.Fatalf("two keys share the id %s", r.KeyID())
	}
	if id, err := PublicKeyID(r.PublicKey()); err != nil || id != r.KeyID() {
		t.Errorf("PublicKeyID = %q, %v; want the recipient's KeyID %q", id, err, r.KeyID())
	}
	sealed := mustSeal(t, r.PublicKey())
	rest, ok := strings.CutPrefix(sealed, "x25519:"+r.KeyID()+":")
	if !ok {
		t.Fatalf("sealed value %q does not begin with x25519:<key id>:", sealed)
	}
	toOther := mustSeal(t, other.PublicKey())
	_, otherBox, _ := strings.Cut(strings.TrimPrefix(toOther, "x25519:"), ":")
	for _, tc := range []struct {
		name, value string
		want        error // nil: opens
	}{
		{"named, this key", sealed, nil},
		{"unnamed", "x25519:" + rest, ErrUnseal},
		{"named, another key", toOther, ErrOtherKey},
		{"another key's box named as this key's", "x25519:" + r.KeyID() + ":" + otherBox, ErrUnseal},
		{"this key's box named as another's", "x25519:" + other.KeyID() + ":" + rest, ErrOtherKey},
	} {
		got, err := r.Open(tc.value)
		switch {
		case tc.want == nil && (err != nil || string(got) != "x"):
			t.Errorf("%s: Open = %q, %v; want it opened", tc.name, got, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: Open error %v, want %v", tc.name, err, tc.want)
		case tc.want == ErrUnseal && errors.Is(err, ErrOtherKey):
			t.Errorf("%s: Open error %v, an altered value taken for another key's", tc.name, err)
		}
	}
}

func mustSeal(t *testing.T, pub string) string {
	t.Helper()
	s, err := SealTo(pub, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDigest(t *testing.T) {
	a, _ := New([]byte("0123456789abcdef0123456789abcdef"))
	b, _ := New([]byte("fedcba9876543210fedcba9876543210"))
	d := a.Digest("order", []byte("4242424242424242"))
	if string(d) != string(a.Digest("order", []byte("4242424242424242"))) {
		t.Error("the same data under the same key and purpose gave two digests")
	}
	for name, other := range map[string][]byte{
		"other key":     b.Digest("order", []byte("4242424242424242")),
		"other purpose": a.Digest("orders", []byte("4242424242424242")),
		"other data":    a.Digest("order", []byte("4242424242424243")),
		"plain sha256":  sha256Sum([]byte("4242424242424242")),
	} {
		if string(other) == string(d) {
			t.Errorf("%s: same digest", name)
		}
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
