package secrets

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
)

// Recipient holds the private half of an X25519 key pair: values sealed to its
// public key (SealTo) by anyone can be opened by it alone. The order service seals
// card data to the payment service this way, so that the service that keeps the
// sealed value until it is sent cannot read it.
type Recipient struct {
	public, private [32]byte
}

// recipientPrefix marks a sealed-to-recipient value, so that a value sealed by a
// Box is not mistaken for one. The text form is "x25519:<key id>:<base64url of the
// sealed box>".
const recipientPrefix = "x25519:"

// GenerateRecipientKey returns a fresh private key in the base64 form that
// LoadRecipient reads.
func GenerateRecipientKey() string {
	var private [32]byte
	if _, err := rand.Read(private[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms.
	}
	return base64.StdEncoding.EncodeToString(private[:])
}

// LoadRecipient returns the Recipient of a base64 private key. Errors: a key that is
// not 32 bytes of base64.
func LoadRecipient(privateKey string) (*Recipient, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(privateKey))
	if err != nil || len(raw) != 32 {
		return nil, errors.New("a recipient key is 32 bytes in base64")
	}
	r := &Recipient{}
	copy(r.private[:], raw)
	pub, err := curve25519.X25519(r.private[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("recipient key: %w", err)
	}
	copy(r.public[:], pub)
	return r, nil
}

// EnsureRecipientKeyFile returns the Recipient whose private key is in the file at
// path, made (0600, in a 0700 directory) with a fresh key when missing.
func EnsureRecipientKeyFile(path string) (*Recipient, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("recipient key file: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return EnsureRecipientKeyFile(path) // made by another process meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("recipient key file: %w", err)
		}
		key := GenerateRecipientKey()
		if _, err := f.WriteString(key + "\n"); err != nil {
			f.Close()
			return nil, fmt.Errorf("recipient key file: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("recipient key file: %w", err)
		}
		return LoadRecipient(key)
	}
	if err != nil {
		return nil, fmt.Errorf("recipient key file: %w", err)
	}
	r, err := LoadRecipient(string(b))
	if err != nil {
		return nil, fmt.Errorf("recipient key file %s: %w", path, err)
	}
	return r, nil
}

// PublicKey is the base64 public key that SealTo takes.
func (r *Recipient) PublicKey() string { return base64.StdEncoding.EncodeToString(r.public[:]) }

// KeyID names r's public key in the values sealed to it, so that one sealed to
// another key says so (ErrOtherKey) instead of failing as if it had been altered.
// Like the public key, it is no secret.
func (r *Recipient) KeyID() string { return recipientKeyID(r.public[:]) }

func recipientKeyID(public []byte) string {
	sum := sha256.Sum256(append([]byte("folio-recipient-key-id:"), public...))
	return hex.EncodeToString(sum[:4])
}

// PublicKeyID is the KeyID of the recipient whose base64 public key is given, as
// SealTo names it: for the sender to say which key it seals to. Errors: a public
// key that is not 32 bytes of base64.
func PublicKeyID(publicKey string) (string, error) {
	pub, err := decodePublicKey(publicKey)
	if err != nil {
		return "", err
	}
	return recipientKeyID(pub[:]), nil
}

func decodePublicKey(publicKey string) (*[32]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(publicKey))
	if err != nil || len(raw) != 32 {
		return nil, errors.New("a recipient's public key is 32 bytes in base64")
	}
	return (*[32]byte)(raw), nil
}

// SealTo seals plaintext to the recipient whose base64 public key is given: only
// that recipient's Open can read it. Errors: a public key that is not 32 bytes of
// base64.
func SealTo(publicKey string, plaintext []byte) (string, error) {
	pub, err := decodePublicKey(publicKey)
	if err != nil {
		return "", err
	}
	sealed, err := box.SealAnonymous(nil, plaintext, pub, rand.Reader)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return recipientPrefix + recipientKeyID(pub[:]) + ":" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open returns the plaintext of a value SealTo sealed to r's public key. Errors:
// ErrOtherKey (wrapped) for a value that names another key, ErrUnseal (wrapped)
// for any other value not sealed to r, or altered.
func (r *Recipient) Open(sealed string) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, recipientPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: not a value sealed to a recipient", ErrUnseal)
	}
	keyID, data, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, fmt.Errorf("%w: malformed sealed value", ErrUnseal)
	}
	if keyID != r.KeyID() {
		return nil, fmt.Errorf("%w (%s; this key is %s)", ErrOtherKey, keyID, r.KeyID())
	}
	raw, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnseal, err)
	}
	plain, ok := box.OpenAnonymous(nil, raw, &r.public, &r.private)
	if !ok {
		return nil, fmt.Errorf("%w: not sealed to this key, or altered", ErrUnseal)
	}
	return plain, nil
}
