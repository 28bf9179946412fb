package httpserver

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Addrs are the addresses a program has bound, as it reports them in its addr file
// (FOLIO_ADDR_FILE): whoever started it with port 0 learns the real ports from the
// program itself instead of guessing a free one that someone else may take first.
type Addrs struct {
	HTTP string `json:"http"`
	// Metrics is "" when the program serves no metrics.
	Metrics string `json:"metrics"`
	// Pprof is the profiler's address, "" when the program serves none.
	Pprof string `json:"pprof,omitempty"`
}

// WriteAddrFile writes a to path, readable by the owner only. It writes a temporary
// file in the same directory and renames it, so that a reader polling for path sees
// either nothing or the whole file, never half of it.
func WriteAddrFile(path string, a Addrs) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	tmp := f.Name()
	// CreateTemp makes the file 0600 already; Chmod says it does not depend on that.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write addr file %s: %w", path, err)
	}
	return nil
}

// ReadAddrFile reads the addresses a program wrote to path. While the program has
// not written it yet, the error wraps fs.ErrNotExist.
func ReadAddrFile(path string) (Addrs, error) {
	var a Addrs
	b, err := os.ReadFile(path)
	if err != nil {
		return a, fmt.Errorf("read addr file: %w", err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("read addr file %s: %w", path, err)
	}
	if a.HTTP == "" {
		return a, fmt.Errorf("read addr file %s: no http address", path)
	}
	return a, nil
}
