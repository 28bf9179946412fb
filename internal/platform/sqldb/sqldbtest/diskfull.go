package sqldbtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a new directory and returns the directory,
// unmounted when the test ends (after the cleanups registered later, such as a
// process using it). A small file system is how a test fills a disk for real.
//
// Mounting needs root: without it, or when mount is refused (a container without
// CAP_SYS_ADMIN), the test is skipped, saying why, unless FOLIO_REQUIRE_INTEGRATION=1
// and the test runs as root, where it fails.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	require := RequireIntegration() && os.Geteuid() == 0
	if os.Geteuid() != 0 {
		t.Skip("skipped: a full disk is tested on a tmpfs the test mounts, which needs root (CI runs it as root with FOLIO_REQUIRE_INTEGRATION=1)")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		if require {
			t.Fatalf("FOLIO_REQUIRE_INTEGRATION=1 and root, but there is no mount command: %v", err)
		}
		t.Skipf("skipped: no mount command to mount a tmpfs: %v", err)
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if require {
			t.Fatalf("FOLIO_REQUIRE_INTEGRATION=1 and root, but mounting a tmpfs failed: %v: %s", err, out)
		}
		t.Skipf("skipped: mounting a tmpfs was refused (%v: %s); the test needs root with CAP_SYS_ADMIN", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// Something still holds a file there; detach it rather than leave a mount.
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// Fill writes a file in dir until its file system has no space left, and returns
// the file's path: removing it frees the space again.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for len(chunk) > 0 {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			// A partial page may still fit: finish with smaller writes.
			chunk = chunk[:len(chunk)/2]
		}
	}
	return path
}
