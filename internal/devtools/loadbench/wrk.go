package loadbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The load generators of -load: vegeta runs inside this process, wrk is a program
// of its own, started for each endpoint.
const (
	loadVegeta = "vegeta"
	loadWrk    = "wrk"
)

// wrkSerialsPerThread is how many ISBN serials one wrk thread may use in one run of
// POST /books: far more than any thread can send in a run.
const wrkSerialsPerThread = 10_000_000

// wrkMark starts the line that the script's done function prints: the figures the
// report needs, read from wrk's own summary rather than from its human-readable text.
const wrkMark = "folio-wrk"

// measureWrk drives e with wrk, a separate process, for s.warmup unmeasured, then
// for s.duration measured (each rounded up to whole seconds, wrk's unit), with
// s.wrkThreads threads and s.workers connections, and returns what it measured but
// the ratio to the ceiling. The CPU column of the load generator is wrk's own.
func measureWrk(ctx context.Context, s settings, dir string, sys *system, e endpoint, d *dataset) (result, error) {
	script, err := writeWrkScript(dir, e, d)
	if err != nil {
		return result{}, err
	}
	return measureGenerator(ctx, s, sys, e, func(dur time.Duration) (generatorRun, error) {
		run, err := runWrk(ctx, s, script, e, d, dur)
		if err != nil {
			return generatorRun{}, err
		}
		return generatorRun{m: run.metrics(), ok: run.requests - run.statusErrors, duration: run.duration,
			cpu: run.cpu, wall: run.wall}, nil
	})
}

// wrkRun is what one run of wrk reported.
type wrkRun struct {
	requests, statusErrors, bytes uint64
	connect, read, write, timeout uint64
	duration                      time.Duration // as wrk measured it
	p50, p90, p99, mean, max      time.Duration
	cpu                           time.Duration // user and system CPU of the wrk process
	wall                          time.Duration // from start to exit
}

// metrics returns run as the vegeta metrics the report reads.
func (run wrkRun) metrics() vegeta.Metrics {
	m := vegeta.Metrics{Requests: run.requests, Duration: run.duration}
	if secs := run.duration.Seconds(); secs > 0 {
		m.Rate = float64(run.requests) / secs
	}
	m.Latencies.P50, m.Latencies.P90, m.Latencies.P99 = run.p50, run.p90, run.p99
	m.Latencies.Mean, m.Latencies.Max = run.mean, run.max
	m.BytesIn.Total = run.bytes
	if run.requests > 0 {
		m.BytesIn.Mean = float64(run.bytes) / float64(run.requests)
	}
	if run.statusErrors > 0 {
		m.Errors = append(m.Errors, fmt.Sprintf("%d answers with a status of 400 or more", run.statusErrors))
	}
	if n := run.connect + run.read + run.write + run.timeout; n > 0 {
		m.Errors = append(m.Errors, fmt.Sprintf("socket errors: connect %d, read %d, write %d, timeout %d",
			run.connect, run.read, run.write, run.timeout))
	}
	return m
}

// runWrk runs wrk with script against e for dur and reads what the script's done
// function printed. For POST /books, the script is given the first ISBN serial of
// the run: every run gets serials no run of d used before, each thread a range of
// its own.
func runWrk(ctx context.Context, s settings, script string, e endpoint, d *dataset, dur time.Duration) (wrkRun, error) {
	secs := max(1, int(math.Ceil(dur.Seconds())))
	args := []string{"-t", strconv.Itoa(s.wrkThreads), "-c", strconv.Itoa(s.workers), "-d", strconv.Itoa(secs) + "s",
		"--timeout", strconv.Itoa(int(requestTimeout.Seconds())) + "s", "-s", script, e.base + e.paths[0]}
	if e.create {
		serials := uint64(s.wrkThreads * wrkSerialsPerThread)
		args = append(args, "--", strconv.FormatUint(d.isbns.Add(serials)-serials+1, 10))
	}
	cmd := exec.CommandContext(ctx, s.wrk, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return wrkRun{}, fmt.Errorf("%s %s: %w\n%s%s", s.wrk, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	run, err := parseWrk(stdout.String())
	if err != nil {
		return wrkRun{}, fmt.Errorf("%s %s: %w\n%s", s.wrk, strings.Join(args, " "), err, stdout.String())
	}
	run.wall = wall
	run.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return run, nil
}

// parseWrk reads the line that the script's done function printed among wrk's output.
func parseWrk(out string) (wrkRun, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), wrkMark+" ")
		if !ok {
			continue
		}
		values := map[string]uint64{}
		for _, field := range strings.Fields(rest) {
			k, v, _ := strings.Cut(field, "=")
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 {
				return wrkRun{}, fmt.Errorf("wrk script printed %q, not a count", field)
			}
			values[k] = uint64(n)
		}
		us := func(k string) time.Duration { return time.Duration(values[k]) * time.Microsecond }
		run := wrkRun{
			requests: values["requests"], statusErrors: values["status"], bytes: values["bytes"],
			connect: values["connect"], read: values["read"], write: values["write"], timeout: values["timeout"],
			duration: us("duration_us"), p50: us("p50_us"), p90: us("p90_us"), p99: us("p99_us"),
			mean: us("mean_us"), max: us("max_us"),
		}
		if run.duration <= 0 {
			return wrkRun{}, errors.New("wrk reported no duration")
		}
		return run, nil
	}
	return wrkRun{}, errors.New("wrk printed no " + wrkMark + " line")
}

// writeWrkScript writes the Lua script that makes wrk send e's requests: each
// thread takes e's paths in turn from its own starting point, or, for POST /books,
// sends a new book per request with an ISBN of its own range of serials (from the
// first serial runWrk passes it); its done function prints wrk's summary for
// parseWrk.
func writeWrkScript(dir string, e endpoint, d *dataset) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Written by folio bench: %s, for wrk.\n", e.label)
	b.WriteString("local paths = {\n")
	for _, p := range e.paths {
		fmt.Fprintf(&b, "  %s,\n", luaString(p))
	}
	b.WriteString("}\nlocal headers = {\n")
	for k, vs := range e.header {
		fmt.Fprintf(&b, "  [%s] = %s,\n", luaString(k), luaString(strings.Join(vs, ", ")))
	}
	b.WriteString("}\n")
	if e.create {
		b.WriteString("local authors = {\n")
		for _, id := range d.authorIDs {
			fmt.Fprintf(&b, "  %s,\n", luaString(id))
		}
		b.WriteString("}\nlocal genres = {\n")
		for _, g := range genres {
			fmt.Fprintf(&b, "  %s,\n", luaString(g))
		}
		fmt.Fprintf(&b, "}\nlocal serials_per_thread = %d\n", wrkSerialsPerThread)
		b.WriteString(wrkCreateLua)
	} else {
		b.WriteString(wrkReadLua)
	}
	fmt.Fprintf(&b, wrkDoneLua, wrkMark)
	path := filepath.Join(dir, "wrk-"+scriptName(e.label)+".lua")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write wrk script: %w", err)
	}
	return path, nil
}

// wrkThreadsLua numbers the threads (setup runs in wrk's main Lua state, once per
// thread, before each thread's own state runs init).
const wrkThreadsLua = `
local thread_count = 0
function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end
`

// wrkReadLua sends the paths in turn, from a starting point of each thread's own,
// each request formatted once, in init.
const wrkReadLua = wrkThreadsLua + `
local requests = {}
local i = 0
function init(args)
  for k, p in ipairs(paths) do
    requests[k] = wrk.format(nil, p, headers)
  end
  i = (tid * 7919) % #requests
end
function request()
  i = i % #requests + 1
  return requests[i]
end
`

// wrkCreateLua sends POST /books with a new book each time: a random seeded author
// and genre, and an ISBN-13 made from a serial of the thread's own range.
const wrkCreateLua = wrkThreadsLua + `
local n = 0
local first_serial = 0
local function isbn13(serial)
  local s = string.format("979%09d", serial % 1000000000)
  local sum = 0
  for k = 1, 12 do
    local v = s:byte(k) - 48
    if k % 2 == 0 then v = v * 3 end
    sum = sum + v
  end
  return s .. tostring((10 - sum % 10) % 10)
end
function init(args)
  first_serial = tonumber(args[1])
  math.randomseed(os.time() + tid)
end
function request()
  n = n + 1
  local serial = first_serial + tid * serials_per_thread + n
  local body = string.format(
    '{"title":"Collected Stories, Volume %d","author_id":"%s","genre":"%s","isbn":"%s","published_year":%d}',
    serial, authors[math.random(#authors)], genres[math.random(#genres)], isbn13(serial), 1900 + math.random(0, 125))
  return wrk.format("POST", paths[1], headers, body)
end
`

// wrkDoneLua prints wrk's summary on one line that starts with its argument.
const wrkDoneLua = `
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("%s requests=%%d duration_us=%%d bytes=%%d status=%%d connect=%%d read=%%d write=%%d timeout=%%d p50_us=%%d p90_us=%%d p99_us=%%d mean_us=%%d max_us=%%d\n",
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)), math.floor(latency:percentile(99)),
    math.floor(latency.mean), math.floor(latency.max)))
end
`

// luaString quotes s as a Lua string literal.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\%03d", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// scriptName makes a file name of an endpoint's label.
func scriptName(label string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return unicode.ToLower(r)
		}
		return '-'
	}, label), "-")
}

// wrkVersion returns wrk's name and version, as its first line of help says.
func wrkVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if f := strings.Fields(string(out)); len(f) >= 2 && f[0] == "wrk" {
		return "wrk " + f[1]
	}
	return "wrk"
}
