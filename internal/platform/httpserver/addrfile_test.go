package httpserver_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"folio/internal/platform/httpserver"
)

func TestAddrFileRoundTrip(t *testing.T) {
	for _, a := range []httpserver.Addrs{
		{HTTP: "127.0.0.1:41234", Metrics: "127.0.0.1:41235"},
		{HTTP: "[::1]:8080"}, // metrics off
	} {
		path := filepath.Join(t.TempDir(), "addr.json")
		if err := httpserver.WriteAddrFile(path, a); err != nil {
			t.Fatal(err)
		}
		got, err := httpserver.ReadAddrFile(path)
		if err != nil || got != a {
			t.Errorf("got %+v, %v; want %+v", got, err, a)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("mode %v, want 0600: the file says where the metrics listener is", mode)
		}
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
			t.Errorf("the directory holds %d entries, want the addr file alone (no temporary file left)", len(entries))
		}
	}
}

// TestAddrFileReplacedByRename: a reader that opened the previous file keeps reading
// it whole, because the new one is renamed over it rather than written into it.
func TestAddrFileReplacedByRename(t *testing.T) {
	path := filepath.Join(t.TempDir(), "addr.json")
	if err := httpserver.WriteAddrFile(path, httpserver.Addrs{HTTP: "127.0.0.1:1111"}); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := httpserver.WriteAddrFile(path, httpserver.Addrs{HTTP: "127.0.0.1:2222"}); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(old)
	if want := `{"http":"127.0.0.1:1111","metrics":""}`; err != nil || string(b) != want {
		t.Errorf("the open file reads %q, %v; want %q", b, err, want)
	}
	if got, err := httpserver.ReadAddrFile(path); err != nil || got.HTTP != "127.0.0.1:2222" {
		t.Errorf("got %+v, %v; want the new address", got, err)
	}
}

func TestReadAddrFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content  string // "" writes no file
		notExist bool
	}{
		"not written yet": {notExist: true},
		"not JSON":        {content: "127.0.0.1:8080"},
		"no http address": {content: `{"metrics":"127.0.0.1:9080"}`},
	} {
		path := filepath.Join(dir, name)
		if tc.content != "" {
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err := httpserver.ReadAddrFile(path)
		if err == nil || errors.Is(err, fs.ErrNotExist) != tc.notExist {
			t.Errorf("%s: got %v, want an error (wrapping fs.ErrNotExist: %v)", name, err, tc.notExist)
		}
	}
}

func TestWriteAddrFileNoDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "addr.json")
	if err := httpserver.WriteAddrFile(path, httpserver.Addrs{HTTP: "127.0.0.1:1"}); err == nil {
		t.Error("got nil, want an error for a directory that does not exist")
	}
}
