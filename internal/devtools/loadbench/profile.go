package loadbench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// profileTop is how many functions the report shows of each profile.
const profileTop = 12

// profileFile is a CPU profile of one program while one endpoint was measured.
type profileFile struct {
	program, path string
	err           error
}

// profiling is the CPU profiles being taken while one endpoint is measured.
type profiling struct {
	wg    sync.WaitGroup
	files []profileFile
}

// startProfiles starts taking a CPU profile of each program that serves a profiler,
// for d (whole seconds, at least one), into s.profile; it does nothing when s asks
// for no profiles.
func startProfiles(ctx context.Context, s settings, sys *system, label string, d time.Duration) *profiling {
	p := &profiling{}
	if s.profile == "" {
		return p
	}
	secs := max(1, int(d.Seconds()))
	p.files = make([]profileFile, 0, len(sys.profilers))
	for _, name := range slices.Sorted(maps.Keys(sys.profilers)) {
		p.files = append(p.files, profileFile{program: name,
			path: filepath.Join(s.profile, scriptName(label)+"."+name+".pprof")})
	}
	for i := range p.files {
		f := &p.files[i]
		url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", sys.profilers[f.program], secs)
		p.wg.Go(func() { f.err = fetchProfile(ctx, url, f.path) })
	}
	return p
}

// wait waits for the profiles and returns them.
func (p *profiling) wait() []profileFile {
	p.wg.Wait()
	return p.files
}

// fetchProfile writes what url answers to path.
func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reportProfiles prints, for each endpoint, the top functions of the profile of each
// program that used a tenth of a core or more while it was measured, as `go tool
// pprof -top` shows them (flat: in the function itself; cum: with what it calls).
func reportProfiles(w io.Writer, results []result) {
	if !slices.ContainsFunc(results, func(r result) bool { return len(r.profiles) > 0 }) {
		return
	}
	goTool, lookErr := exec.LookPath("go")
	fmt.Fprintf(w, "\nCPU profiles (go tool pprof -top; the files are in the -profile directory):\n")
	for _, r := range results {
		for _, f := range r.profiles {
			if i := slices.Index(watchedNames, f.program); i >= 0 && r.cpu.ok && i < len(r.cpu.procs) && r.cpu.procs[i] < 0.1 {
				continue
			}
			fmt.Fprintf(w, "\n%s: %s (%s)\n", r.label, f.program, f.path)
			switch {
			case f.err != nil:
				fmt.Fprintf(w, "  no profile: %v\n", f.err)
				continue
			case lookErr != nil:
				fmt.Fprintln(w, "  (no go tool on PATH to read it)")
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, goTool, "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", profileTop), f.path).CombinedOutput()
			cancel()
			if err != nil {
				fmt.Fprintf(w, "  go tool pprof: %v\n", err)
				continue
			}
			for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
				if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") || strings.HasPrefix(line, "Time:") {
					continue
				}
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
	}
}
