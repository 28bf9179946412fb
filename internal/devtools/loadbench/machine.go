package loadbench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// describeMachine returns one line about the machine the benchmark runs on: CPUs,
// CPU model, memory, OS and architecture, and the Go version of this program.
func describeMachine() string {
	model := procField("/proc/cpuinfo", "model name")
	if model == "" {
		model = "unknown CPU model"
	}
	mem := "unknown memory"
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 64); err == nil {
		mem = fmt.Sprintf("%.1f GiB memory", kb/(1<<20))
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s/%s, %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// procField returns the value of the first "key: value" line with the key in the file
// at path, or "" when there is none (as outside Linux).
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
