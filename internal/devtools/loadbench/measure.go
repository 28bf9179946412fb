package loadbench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// requestTimeout bounds one request of the load generator.
const requestTimeout = 10 * time.Second

// Labels of the endpoints measured, as the report's rows show them.
const (
	labelCeiling      = "ceiling GET /"
	labelBookGet      = "GET /books/{id}"
	labelBookGetToken = "GET /books/{id} with a bearer token"
	labelBookList     = "GET /books?genre=X&limit=20"
	labelAuthorsBooks = "GET /authors/books?genre=X"
	labelBookCreate   = "POST /books"

	// The same reads and calls over gRPC beside REST: GET /authors/books of an
	// author service that calls book over gRPC (FOLIO_BOOK_TRANSPORT=grpc), and
	// GET /books/{id} beside GetBook, both with the Go load client (wrk speaks no gRPC).
	labelAuthorsBooksGRPC = "GET /authors/books?genre=X, author→book over gRPC"
	labelBookGetGoREST    = "GET /books/{id} (REST, Go client)"
	labelBookGetGoGRPC    = "GetBook (gRPC, Go client)"
	labelBookGetGoGzip    = "GetBook (gRPC, gzip accepted, Go client)"

	labelGatewayBookGet      = "gateway GET /books/{id}"
	labelNginxBookGet        = "nginx GET /books/{id}"
	labelGatewayAuthorsBooks = "gateway GET /authors/books?genre=X"
)

// proxied are the routes measured both directly and through a proxy in front of the
// service.
var proxied = []struct{ proxy, direct, via string }{
	{"gateway", labelBookGet, labelGatewayBookGet},
	{"gateway", labelAuthorsBooks, labelGatewayAuthorsBooks},
	{"nginx", labelBookGet, labelNginxBookGet},
}

// target is a goal for one endpoint, set for the outside-in measurement (-load wrk):
// a share of the ceiling's 2xx per second, or else a rate, and a p99 bound (each 0
// when not set). A target with both a share and a rate is met by either.
type target struct {
	label string
	share float64
	rate  float64
	p99   time.Duration
}

var targets = []target{
	{label: labelBookGet, share: 0.50},
	{label: labelBookList, share: 0.25},
	{label: labelAuthorsBooks, share: 0.08, rate: 3000, p99: 50 * time.Millisecond},
	{label: labelBookCreate, rate: 3000, p99: 50 * time.Millisecond},
}

// gatewayVsNginx is the goal for the gateway: GET /books/{id} through it at this
// fraction, at least, of the same reads through nginx in the same run.
const gatewayVsNginx = 0.8

// endpoint is one thing measured: requests of one method to base, each to the next
// of paths in turn (so that caches and coalescing see the spread a real load has),
// or, for POST /books, a new book each; or, with client set, the reads of the
// books ids by the Go load client, whatever -load says.
type endpoint struct {
	label  string
	method string
	base   string // scheme://host
	paths  []string
	header http.Header
	create bool // POST /books: each request a new book with its own ISBN (dataset.newBook)

	client string   // clientREST or clientGRPC: driven by the Go load client (goclient.go)
	ids    []string // the book ids the Go load client reads, in turn
}

// targeter returns the requests of e for vegeta, taking paths in turn from a shuffled start.
func (e endpoint) targeter(d *dataset) vegeta.Targeter {
	var next atomic.Uint64
	next.Store(rand.Uint64N(uint64(len(e.paths))))
	return func(t *vegeta.Target) error {
		t.Method, t.URL, t.Header = e.method, e.base+e.paths[next.Add(1)%uint64(len(e.paths))], e.header
		if e.create {
			t.Body = d.newBook(genres[rand.IntN(len(genres))])
		}
		return nil
	}
}

// result is the measurement of one endpoint.
type result struct {
	label    string
	m        vegeta.Metrics
	ok       uint64  // 2xx answers
	okPerSec float64 // 2xx answers per second
	ratio    float64 // okPerSec as a fraction of the ceiling's
	cpu      cpuUse  // CPU used while measuring, by each of watchedNames
	profiles []profileFile
}

// measureAll drives each endpoint in turn, warm-up first, with the load generator
// s.load names, and returns the results in the order measured, the ceiling first.
// wrk's scripts go in dir.
func measureAll(ctx context.Context, s settings, dir string, sys *system, d *dataset, token string, progress io.Writer) ([]result, error) {
	// One client for all attacks, so that the connections the warm-up opened are
	// the ones measured.
	client := &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: s.workers,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()

	var results []result
	for _, e := range endpoints(sys, d, token) {
		if !s.selects(e.label) {
			continue
		}
		fmt.Fprintf(progress, "measuring %s ...\n", e.label)
		var r result
		var err error
		switch {
		case e.client != "":
			r, err = measureGoClient(ctx, s, dir, sys, e)
		case s.load == loadWrk:
			r, err = measureWrk(ctx, s, dir, sys, e, d)
		default:
			r, err = measure(ctx, s, sys, client, e, d)
		}
		if err != nil {
			return nil, err
		}
		if results != nil && results[0].okPerSec > 0 {
			r.ratio = r.okPerSec / results[0].okPerSec
		} else if results == nil {
			r.ratio = 1
		}
		results = append(results, r)
	}
	return results, nil
}

// endpoints are what measureAll drives, in order: the ceiling first, and the one
// that writes last. The genre endpoints rotate over every genre, the reads by id over
// every book (shuffled), as a load of many clients would.
func endpoints(sys *system, d *dataset, token string) []endpoint {
	ids := slices.Clone(d.bookIDs)
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	bookPaths := make([]string, len(ids))
	for i, id := range ids {
		bookPaths[i] = "/books/" + id
	}
	var listPaths, genrePaths []string
	for _, g := range genres {
		listPaths = append(listPaths, "/books?genre="+g+"&limit=20")
		genrePaths = append(genrePaths, "/authors/books?genre="+g)
	}
	// Through the gateway, every request carries the admin's token, so that the
	// gateway verifies a JWT on each one, though these reads need none. The book
	// service verifies the token of each POST itself, and of each read that carries
	// one: measured beside the same read without it.
	authHeader := http.Header{"Authorization": []string{"Bearer " + token}}
	createHeader := http.Header{"Content-Type": []string{"application/json"}, "Authorization": authHeader["Authorization"]}
	get := func(label, base string, paths []string, h http.Header) endpoint {
		return endpoint{label: label, method: http.MethodGet, base: base, paths: paths, header: h}
	}
	goClient := func(label, protocol string) endpoint {
		return endpoint{label: label, base: sys.bookURL, client: protocol, ids: ids}
	}
	list := []endpoint{
		get(labelCeiling, sys.ceilingURL, []string{"/"}, nil),
		get(labelBookGet, sys.bookURL, bookPaths, nil),
		goClient(labelBookGetGoREST, clientREST),
		goClient(labelBookGetGoGRPC, clientGRPC),
		goClient(labelBookGetGoGzip, clientGRPCGzip),
		get(labelBookGetToken, sys.bookURL, bookPaths, authHeader),
		get(labelGatewayBookGet, sys.gatewayURL, bookPaths, authHeader),
	}
	if sys.nginxURL != "" {
		list = append(list, get(labelNginxBookGet, sys.nginxURL, bookPaths, nil))
	}
	list = append(list,
		get(labelBookList, sys.bookURL, listPaths, nil),
		get(labelAuthorsBooks, sys.authorURL, genrePaths, nil))
	if sys.authorGRPCURL != "" {
		list = append(list, get(labelAuthorsBooksGRPC, sys.authorGRPCURL, genrePaths, nil))
	}
	return append(list,
		get(labelGatewayAuthorsBooks, sys.gatewayURL, genrePaths, authHeader),
		// Last, as it grows the database the other endpoints read.
		endpoint{label: labelBookCreate, method: http.MethodPost, base: sys.bookURL, paths: []string{"/books"},
			header: createHeader, create: true},
	)
}

// measure drives e for s.warmup unmeasured, then for s.duration measured, and
// returns what it measured but the ratio to the ceiling.
func measure(ctx context.Context, s settings, sys *system, client *http.Client, e endpoint, d *dataset) (result, error) {
	if s.warmup > 0 {
		if _, err := attack(ctx, client, e.label, e.targeter(d), s.workers, s.warmup); err != nil {
			return result{}, err
		}
	}
	before := sampleCPU(sys.watched())
	prof := startProfiles(ctx, s, sys, e.label, s.duration)
	m, err := attack(ctx, client, e.label, e.targeter(d), s.workers, s.duration)
	if err != nil {
		return result{}, err
	}
	used := cpuBetween(before, sampleCPU(sys.watched()))
	client.CloseIdleConnections()
	r := result{label: e.label, m: m, cpu: used, profiles: prof.wait()}
	for code, n := range m.StatusCodes {
		if c, _ := strconv.Atoi(code); c >= 200 && c <= 299 {
			r.ok += uint64(n)
		}
	}
	if secs := (m.Duration + m.Wait).Seconds(); secs > 0 {
		r.okPerSec = float64(r.ok) / secs
	}
	return r, nil
}

// generatorRun is one run of a load generator in a process of its own (wrk, the
// Go load client), as the report reads it.
type generatorRun struct {
	m        vegeta.Metrics
	ok       uint64        // 2xx answers
	duration time.Duration // first request to last answer, as the generator measured it
	cpu      time.Duration // user and system CPU of the generator's process
	wall     time.Duration // from its start to its exit
}

// measureGenerator drives e with a load generator in a process of its own, which
// runLoad runs for the time it is given: for s.warmup unmeasured, then for
// s.duration measured. It returns what was measured but the ratio to the ceiling;
// the CPU column of the load generator is the process's own.
func measureGenerator(ctx context.Context, s settings, sys *system, e endpoint, runLoad func(time.Duration) (generatorRun, error)) (result, error) {
	if s.warmup > 0 {
		if _, err := runLoad(s.warmup); err != nil {
			return result{}, err
		}
	}
	before := sampleCPU(sys.watched())
	prof := startProfiles(ctx, s, sys, e.label, s.duration)
	run, err := runLoad(s.duration)
	if err != nil {
		return result{}, err
	}
	used := cpuBetween(before, sampleCPU(sys.watched()))
	if used.ok && run.wall > 0 {
		used.procs[0] = run.cpu.Seconds() / run.wall.Seconds()
	}
	r := result{label: e.label, m: run.m, cpu: used, profiles: prof.wait(), ok: run.ok}
	if secs := run.duration.Seconds(); secs > 0 {
		r.okPerSec = float64(r.ok) / secs
	}
	return r, nil
}

// attack drives the requests of tr at the highest rate workers connections can sustain, each sending
// its next request as soon as the last one is answered, for d.
func attack(ctx context.Context, client *http.Client, label string, tr vegeta.Targeter, workers int, d time.Duration) (vegeta.Metrics, error) {
	atk := vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.Workers(uint64(workers)),
		vegeta.MaxWorkers(uint64(workers)),
	)
	// Rate 0 is no pacing at all: with MaxWorkers set, that is closed-loop max rate.
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	var m vegeta.Metrics
	for res := range atk.Attack(tr, vegeta.Rate{Freq: 0}, d, label) {
		m.Add(res)
	}
	m.Close()
	if err := ctx.Err(); err != nil {
		return m, err
	}
	return m, nil
}

// report prints the table of results, the targets, and the cost of the proxies.
func report(w io.Writer, results []result, sys *system) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "endpoint\trequests\treq/s\tp50\tp99\tsuccess\tvs ceiling\tanswer size")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%.2f%%\t%.1f%%\t%s\n", r.label, r.m.Requests, r.m.Rate,
			ms(r.m.Latencies.P50), ms(r.m.Latencies.P99), 100*successRatio(r), 100*r.ratio, size(r.m.BytesIn.Mean))
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nreq/s counts every answer; success is the share of 2xx answers; vs ceiling compares 2xx answers per second;")
	fmt.Fprintln(w, "answer size is the mean body size with vegeta, the mean bytes read per answer, headers included, with wrk;")
	fmt.Fprintln(w, "with the Go client, the mean payload: the JSON body over REST, the protobuf message over gRPC.")

	for _, r := range results {
		if r.ok == r.m.Requests {
			continue
		}
		var codes []string
		for _, code := range slices.Sorted(maps.Keys(r.m.StatusCodes)) {
			if c, _ := strconv.Atoi(code); c < 200 || c > 299 {
				name := code
				if c == 0 {
					name = "no answer"
				}
				codes = append(codes, fmt.Sprintf("%s ×%d", name, r.m.StatusCodes[code]))
			}
		}
		errs := r.m.Errors
		if len(errs) > 3 {
			errs = errs[:3]
		}
		fmt.Fprintf(w, "%s: %d of %d not 2xx (%s); errors: %s\n", r.label, r.m.Requests-r.ok, r.m.Requests,
			strings.Join(codes, ", "), strings.Join(errs, "; "))
	}

	absent := map[int]bool{}
	for i, p := range sys.watched() {
		absent[i] = p.pid <= 0
	}
	reportCPU(w, results, absent)
	reportTokenCost(w, results)

	fmt.Fprintln(w, "\ntargets (set for -load wrk; reported, not enforced):")
	for _, t := range targets {
		for _, r := range results {
			if r.label == t.label {
				fmt.Fprintf(w, "  %-28s %s\n", t.label, t.verdict(r))
			}
		}
	}

	reportProxies(w, results, sys)
}

// reportProxies prints what the gateway and nginx cost on the routes measured both
// directly and through them: throughput (2xx per second) through the proxy as a
// fraction of direct, and the latency added at p50 and p99.
func reportProxies(w io.Writer, results []result, sys *system) {
	byLabel := map[string]result{}
	for _, r := range results {
		byLabel[r.label] = r
	}
	fmt.Fprintln(w, "\nthrough the gateway (and nginx), versus direct, in this run:")
	fmt.Fprintf(w, "gateway: rate limit on at %s/s (burst %s), every request with the admin's bearer token (JWT verified);\n",
		gatewayRateLimit, gatewayRateBurst)
	if sys.nginxURL != "" {
		fmt.Fprintln(w, "nginx:   plain reverse proxy to book (master + one worker, upstream keepalive 64, access log off).")
	} else {
		fmt.Fprintf(w, "nginx:   nginx comparison skipped: %s.\n", sys.nginxSkipped)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "route\tvia\tdirect 2xx/s\tvia 2xx/s\tvia/direct\tp50 direct\tp50 via\tadded p50\tp99 direct\tp99 via\tadded p99")
	for _, p := range proxied {
		d, okD := byLabel[p.direct]
		v, okV := byLabel[p.via]
		if !okD || !okV {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.direct, p.proxy, d.okPerSec, v.okPerSec,
			percentOf(v.okPerSec, d.okPerSec), ms(d.m.Latencies.P50), ms(v.m.Latencies.P50),
			signedMs(v.m.Latencies.P50-d.m.Latencies.P50), ms(d.m.Latencies.P99), ms(v.m.Latencies.P99),
			signedMs(v.m.Latencies.P99-d.m.Latencies.P99))
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "each row compares two measurements of this run with the same workers; latencies are the load generator's.")
	g, okG := byLabel[labelGatewayBookGet]
	n, okN := byLabel[labelNginxBookGet]
	if okG && okN {
		verdict := "met"
		if n.okPerSec <= 0 || g.okPerSec/n.okPerSec < gatewayVsNginx {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "target: gateway >= %.0f%% of nginx for %s: %s  %s\n",
			100*gatewayVsNginx, labelBookGet, percentOf(g.okPerSec, n.okPerSec), verdict)
	}
}

// verdict says how r, the measurement of t's endpoint, stands against t.
func (t target) verdict(r result) string {
	var goals, got []string
	met := true
	if t.share > 0 || t.rate > 0 {
		shareMet := t.share > 0 && r.ratio >= t.share
		rateMet := t.rate > 0 && r.okPerSec >= t.rate
		met = shareMet || rateMet
		if t.share > 0 {
			goals = append(goals, fmt.Sprintf(">= %.0f%% of ceiling", 100*t.share))
			got = append(got, fmt.Sprintf("%.1f%%", 100*r.ratio))
		}
		if t.rate > 0 {
			goals = append(goals, fmt.Sprintf(">= %.0f 2xx/s", t.rate))
			got = append(got, fmt.Sprintf("%.0f/s", r.okPerSec))
		}
	}
	goal := strings.Join(goals, " or ")
	if t.p99 > 0 {
		met = met && r.m.Latencies.P99 <= t.p99
		goal += fmt.Sprintf(", p99 <= %s", ms(t.p99))
		got = append(got, "p99 "+ms(r.m.Latencies.P99))
	}
	verdict := "met"
	if !met {
		verdict = "NOT met"
	}
	return fmt.Sprintf("%s: %s  %s", strings.TrimPrefix(goal, ", "), strings.Join(got, ", "), verdict)
}

// percentOf formats a/b as a percentage.
func percentOf(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*a/b)
}

// signedMs formats d in milliseconds with its sign.
func signedMs(d time.Duration) string {
	if d >= 0 {
		return "+" + ms(d)
	}
	return ms(d)
}

func successRatio(r result) float64 {
	if r.m.Requests == 0 {
		return 0
	}
	return float64(r.ok) / float64(r.m.Requests)
}

// ms formats d in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// reportCPU prints how the machine's CPU was shared during each measurement, and
// what the processes under test spent per request.
func reportCPU(w io.Writer, results []result, absent map[int]bool) {
	if len(results) == 0 || !results[0].cpu.ok {
		return
	}
	fmt.Fprintf(w, "\nCPU used while measuring, in cores (this machine has %d):\n", runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "endpoint\t%s\tkernel\tother programs\tCPU per request\n", strings.Join(watchedNames, "\t"))
	worst := 0.0
	for _, r := range results {
		if !r.cpu.ok {
			continue
		}
		fmt.Fprint(tw, r.label)
		for i, c := range r.cpu.procs {
			if absent[i] {
				fmt.Fprint(tw, "\t-")
				continue
			}
			fmt.Fprintf(tw, "\t%.2f", c)
		}
		perRequest := "-"
		if us, ok := cpuPerRequest(r); ok {
			perRequest = fmt.Sprintf("%.0fµs", us)
		}
		fmt.Fprintf(tw, "\t%.2f\t%.2f\t%s\n", r.cpu.kernel, r.cpu.others, perRequest)
		worst = max(worst, r.cpu.others)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "CPU per request is what the processes under test (not the load generator) spent per request;")
	fmt.Fprintln(w, "kernel is kernel threads and interrupts, such as the file system work that the services' fsyncs cause.")
	if worst > busyOthers {
		fmt.Fprintf(w, "warning: other programs used up to %.2f cores while measuring, so these figures understate this machine; "+
			"run the benchmark again on an otherwise idle machine\n", worst)
	}
}

// cpuPerRequest returns the CPU, in µs, that the processes under test (not the load
// generator) spent per request while r was measured.
func cpuPerRequest(r result) (float64, bool) {
	if !r.cpu.ok || r.m.Rate <= 0 || len(r.cpu.procs) == 0 {
		return 0, false
	}
	served := 0.0
	for _, c := range r.cpu.procs[1:] {
		served += c
	}
	return served / r.m.Rate * 1e6, true
}

// reportTokenCost prints what verifying a bearer token inside the book service adds
// to a read: the same reads of the same run, with and without the admin's token.
// The same token on every request is the verifier's cached path (a signature check
// at most once a minute); a new token per request cannot be had from the auth
// service fast enough (each login runs argon2id), so the signature path is left to
// the authn package's Go benchmark, which the report names.
func reportTokenCost(w io.Writer, results []result) {
	var plain, token *result
	for i := range results {
		switch results[i].label {
		case labelBookGet:
			plain = &results[i]
		case labelBookGetToken:
			token = &results[i]
		}
	}
	if plain == nil || token == nil {
		return
	}
	fmt.Fprintln(w, "\nin-service token verification (book), versus the same reads without a token, in this run:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "route\twithout 2xx/s\twith 2xx/s\twith/without\tCPU/req without\tCPU/req with\tadded CPU/req\tadded p50\tadded p99")
	cpuWithout, okWithout := cpuPerRequest(*plain)
	cpuWith, okWith := cpuPerRequest(*token)
	cpu := []string{"-", "-", "-"}
	if okWithout && okWith {
		cpu = []string{fmt.Sprintf("%.0fµs", cpuWithout), fmt.Sprintf("%.0fµs", cpuWith), fmt.Sprintf("%+.0fµs", cpuWith-cpuWithout)}
	}
	fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\n", labelBookGet, plain.okPerSec, token.okPerSec,
		percentOf(token.okPerSec, plain.okPerSec), cpu[0], cpu[1], cpu[2],
		signedMs(token.m.Latencies.P50-plain.m.Latencies.P50), signedMs(token.m.Latencies.P99-plain.m.Latencies.P99))
	_ = tw.Flush()
	fmt.Fprintln(w, "the same token on every request: the verifier's cached path (a signature check at most once a minute per token).")
	fmt.Fprintln(w, "a new token per request (the EdDSA signature path): go test -run '^$' -bench Require ./internal/platform/authn/")
}

// size formats a byte count.
func size(n float64) string {
	switch {
	case n >= 10*1024:
		return fmt.Sprintf("%.0fKiB", n/1024)
	case n >= 1024:
		return fmt.Sprintf("%.1fKiB", n/1024)
	default:
		return fmt.Sprintf("%.0fB", n)
	}
}
