package main

import (
	"bytes"
	"context"
	"folio/internal/platform/broker/natsconn"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// folio up's NATS credentials: one per program and the operator's, private, the
// same on every run, and written for the names the programs are configured with.
func TestNATSCredentials(t *testing.T) {
	dataDir := t.TempDir()
	// A directory left open by an earlier version is made private.
	if err := os.MkdirAll(filepath.Join(dataDir, natsKeysDir), 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string { return map[string]string{"FOLIO_EVENTS_PREFIX": "lib"}[k] }
	seeds, users, err := natsCredentials(dataDir, env)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(natsconn.Programs()) + 1; len(users) != want || len(seeds) != want {
		t.Fatalf("%d users and %d seeds, want %d (every program and admin)", len(users), len(seeds), want)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, natsKeysDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("keys directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	for name, seed := range seeds {
		if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s seed mode %v (%v), want 0600", name, fi.Mode().Perm(), err)
		}
	}
	for _, u := range users {
		switch {
		case u.Name == "admin" && !u.Unrestricted, u.Name != "admin" && u.Unrestricted:
			t.Errorf("user %s: unrestricted %v", u.Name, u.Unrestricted)
		case u.Name == "book" && !strings.Contains(strings.Join(u.Permissions.Publish, " "), "lib.book.>"):
			t.Errorf("book's permissions ignore FOLIO_EVENTS_PREFIX: %v", u.Permissions.Publish)
		}
	}
	_, again, err := natsCredentials(dataDir, env)
	if err != nil {
		t.Fatal(err)
	}
	for i := range users {
		if users[i].Nkey != again[i].Nkey {
			t.Errorf("%s got a new key on the second run", users[i].Name)
		}
	}
}

func TestNATSCommandPrintsServerConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"folio", "nats", "--keys-dir", dir}, noEnv, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"authorization {", `"folio.book.>"`, `"$KV.folio_discovery.auth.>"`, "nkey: U"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "book.nk")); err != nil {
		t.Errorf("no seed for book: %v", err)
	}
}
