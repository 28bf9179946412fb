package sqldb_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"folio/internal/platform/sqldb"
)

// mode returns the permission bits of path.
func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

// TestOpenPrivateFiles replays finding 4 of issue 8: the databases were 0644 in a
// 0755 directory, so any local user could read auth.db's keys and notify.db's
// webhook secrets. Now the directory Folio makes is 0700 and every file of the
// database 0600, whatever the umask, including files an earlier version left open.
func TestOpenPrivateFiles(t *testing.T) {
	// The most permissive umask, so that only the code decides the modes.
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "auth.db")

	db, err := sqldb.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, migrations); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("data directory: got %v, want 0700", got)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if got := mode(t, p); got != 0o600 {
			t.Errorf("%s: got %v, want 0600", filepath.Base(p), got)
		}
	}

	// Files an earlier version made readable by everyone are narrowed on the next open.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	again, err := sqldb.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	defer db.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if got := mode(t, p); got != 0o600 {
			t.Errorf("%s after reopening: got %v, want 0600", filepath.Base(p), got)
		}
	}
}
