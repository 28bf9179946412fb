// Package localbuild finds or builds Folio's service programs for the tools that run
// them on one machine: folio up, folio bench and the end-to-end tests. They run the
// very programs production runs, each as its own OS process.
package localbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Programs returns the path of each named program (cmd/<name>). Programs installed
// beside the running executable are used as they are; otherwise they are built from
// the source tree that contains the working directory into dir, which Go's build
// cache makes quick after the first time.
func Programs(ctx context.Context, dir string, names ...string) (map[string]string, error) {
	paths := make(map[string]string, len(names))
	if exe, err := os.Executable(); err == nil {
		for _, n := range names {
			p := filepath.Join(filepath.Dir(exe), n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				paths[n] = p
			}
		}
		if len(paths) == len(names) {
			return paths, nil
		}
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("build programs: %w", err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
		paths[n] = filepath.Join(dir, n)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", strings.Join(names, " "), err, out.String())
	}
	return paths, nil
}

// ModuleRoot returns the directory of Folio's go.mod, searching up from the working
// directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module folio\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the Folio programs are not installed beside this one and the working directory is not inside Folio's source tree")
		}
		dir = parent
	}
}
