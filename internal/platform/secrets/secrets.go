// Package secrets seals values kept at rest (signing keys, webhook secrets) with a
// key-encryption key that does not live in the database, so that a stolen database
// alone reveals and signs nothing.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Config says where the key-encryption key comes from.
type Config struct {
	Key     string `env:"FOLIO_SECRETS_KEY" mask:"true"`
	KeyFile string `env:"FOLIO_SECRETS_KEY_FILE"`
}

// KeySize is the length of the key-encryption key: AES-256.
const KeySize = 32

const prefix = "sealed:v1:"

// DefaultKeyFile is the key file's name inside the data directory when neither
// FOLIO_SECRETS_KEY nor FOLIO_SECRETS_KEY_FILE is set.
const DefaultKeyFile = "secrets.key"

// ErrUnseal is returned (wrapped) when a sealed value cannot be opened: it is not
// sealed, it was sealed with another key or for another context, or it was altered.
var ErrUnseal = errors.New("secrets: cannot unseal")

// ErrOtherKey is returned (wrapped) when a sealed value names a key other than the
// one opening it: a configuration to mend (a key rotated, a public key copied
// wrong), not an altered value. It wraps ErrUnseal.
var ErrOtherKey = fmt.Errorf("%w: sealed with another key", ErrUnseal)

// Box seals and unseals values with one key.
type Box struct {
	aead  cipher.AEAD
	keyID string
	// macKey is derived from the key for Digest, so that no digest is ever made
	// with the key that seals.
	macKey []byte
}

// New returns a Box for a raw 32-byte key. It returns an error for a key of any other
// length.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secrets: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	// The key id names the key without revealing it, so that a value sealed with an
	// older key says so instead of failing as if it had been tampered with.
	sum := sha256.Sum256(append([]byte("folio-secrets-key-id:"), key...))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("folio-secrets-digest-key"))
	return &Box{aead: aead, keyID: hex.EncodeToString(sum[:4]), macKey: mac.Sum(nil)}, nil
}

// Digest returns HMAC-SHA256 of data under a key derived from b's, for purpose
// (which keeps digests made for one use from matching another's): the same for
// the same data, and of no use without the key to whoever wants to find data by
// hashing guesses. It is for values kept to be compared later that carry too
// little entropy to hash in the clear, such as a request holding a card number.
func (b *Box) Digest(purpose string, data []byte) []byte {
	mac := hmac.New(sha256.New, b.macKey)
	mac.Write([]byte(purpose))
	mac.Write([]byte{0})
	mac.Write(data)
	return mac.Sum(nil)
}

// Load returns the Box for cfg: the base64 key in cfg.Key, else the key file
// cfg.KeyFile (base64 text), else <dataDir>/secrets.key, which it creates (0600, in a
// 0700 directory) with a fresh random key if it is missing, logging a warning that the
// key lies beside the data it protects. It returns an error for a key that does not
// decode to 32 bytes, or a file it cannot read or create.
func Load(cfg Config, dataDir string, log *slog.Logger) (*Box, error) {
	switch {
	case cfg.Key != "":
		key, err := decodeKey(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("secrets: FOLIO_SECRETS_KEY: %w", err)
		}
		return New(key)
	case cfg.KeyFile != "":
		key, err := readKeyFile(cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		WarnIfOpenToAll(log, "secrets key", cfg.KeyFile)
		return New(key)
	}
	if dataDir == "" {
		dataDir = "."
	}
	path := filepath.Join(dataDir, DefaultKeyFile)
	key, err := readKeyFile(path)
	if err == nil {
		log.Warn("the secrets key lies beside the data it protects; set FOLIO_SECRETS_KEY or FOLIO_SECRETS_KEY_FILE to keep it elsewhere", "file", path)
		return New(key)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if key, err = createKeyFile(path); err != nil {
		return nil, err
	}
	log.Warn("created a secrets key beside the data it protects; set FOLIO_SECRETS_KEY or FOLIO_SECRETS_KEY_FILE to keep it elsewhere", "file", path)
	return New(key)
}

// GenerateKey returns a fresh random key in the base64 text form Load reads.
func GenerateKey() string {
	key := make([]byte, KeySize)
	rand.Read(key)
	return base64.StdEncoding.EncodeToString(key)
}

func decodeKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("key is not base64: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: read key file: %w", err)
	}
	key, err := decodeKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("secrets: key file %s: %w", path, err)
	}
	return key, nil
}

// EnsureKeyFile makes the key file path (0600, in a 0700 directory) with a fresh
// key unless it exists already, and returns an error if it cannot, or if an existing
// file holds no key. folio up uses it for the key it passes in
// FOLIO_SECRETS_KEY_FILE.
func EnsureKeyFile(path string) error {
	_, err := readKeyFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, err = createKeyFile(path)
	}
	return err
}

func createKeyFile(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secrets: create key directory: %w", err)
	}
	key := make([]byte, KeySize)
	rand.Read(key)
	// O_EXCL so that two instances starting at once cannot each write a key and
	// leave one of them sealing with a key nobody else has.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return readKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: create key file: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("secrets: write key file: %w", werr)
	}
	return key, nil
}

// KeyID names the Box's key in sealed values.
func (b *Box) KeyID() string { return b.keyID }

// Seal encrypts plaintext with AES-256-GCM, binding context as associated data (the
// row id, say, so that a sealed value copied into another row does not open), and
// returns the text form "sealed:v1:<key id>:<base64 of nonce and ciphertext>".
func (b *Box) Seal(plaintext, context []byte) string {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	rand.Read(nonce)
	out := b.aead.Seal(nonce, nonce, plaintext, context)
	return prefix + b.keyID + ":" + base64.RawStdEncoding.EncodeToString(out)
}

// Unseal opens a value made by Seal with the same key and context. It returns an
// error wrapping ErrUnseal for anything else.
func (b *Box) Unseal(sealed string, context []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, fmt.Errorf("%w: not a sealed value", ErrUnseal)
	}
	keyID, data, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, fmt.Errorf("%w: malformed sealed value", ErrUnseal)
	}
	if keyID != b.keyID {
		return nil, fmt.Errorf("%w (%s; this key is %s)", ErrOtherKey, keyID, b.keyID)
	}
	raw, err := base64.RawStdEncoding.DecodeString(data)
	if err != nil || len(raw) < b.aead.NonceSize()+b.aead.Overhead() {
		return nil, fmt.Errorf("%w: malformed sealed value", ErrUnseal)
	}
	n := b.aead.NonceSize()
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], context)
	if err != nil {
		return nil, fmt.Errorf("%w: wrong context or altered value", ErrUnseal)
	}
	return plain, nil
}

// IsSealed reports whether s is in the text form Seal produces (a value stored before
// sealing was introduced is not).
func IsSealed(s string) bool { return strings.HasPrefix(s, prefix) }

// WarnIfOpenToAll logs a warning when the key file at path (what names the key)
// is readable by every user of the machine. Group access is how Kubernetes
// (fsGroup) and Compose hand a secret to a program that does not run as the
// file's owner; the world's is a leak.
func WarnIfOpenToAll(log *slog.Logger, what, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		log.Warn("the "+what+" file is open to every user of the machine", "file", path, "mode", fi.Mode().Perm().String())
	}
}
