package loadbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/protobuf/proto"

	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
)

// ClientEnv turns Run into the benchmark's Go load client: Run starts it, as it does
// the ceiling, by running the current executable again, with ClientEnv set to the
// path of a JSON file that says what to load (clientSpec). The client loads, then
// prints what it measured as one line of JSON (clientResult) on stdout, and exits.
//
// It exists because wrk cannot speak gRPC (HTTP/2 with trailers), and h2load, which
// can, sends one body throughout: to compare a REST read with the same read over
// gRPC fairly, one load generator drives both, from a process of its own, as wrk
// does, so that the services' CPU is measured apart from the load's.
const ClientEnv = "FOLIO_BENCH_CLIENT"

// The protocols of the Go load client.
const (
	clientREST = "rest" // GET /books/{id}, HTTP/1.1 keep-alive, the JSON decoded
	clientGRPC = "grpc" // folio.book.v1.BookService/GetBook over gRPC, h2c, answers uncompressed
	// clientGRPCGzip is clientGRPC accepting gzip answers, as the Connect client
	// does by default (and grpc-go once its gzip codec is linked in): the book
	// service's Connect handler then compresses answers of 4 KiB and more.
	clientGRPCGzip = "grpc-gzip"
)

// clientSpec is what one run of the Go load client does: for Duration, Connections
// workers, each on a connection of its own, each sending its next request when the
// last one is answered, asking for the books of IDs in turn (from a shuffled start,
// one counter shared by the workers, as vegeta's targeter does).
type clientSpec struct {
	Protocol    string        `json:"protocol"` // clientREST or clientGRPC
	Addr        string        `json:"addr"`     // host:port of the book service
	IDs         []string      `json:"ids"`
	Connections int           `json:"connections"`
	Duration    time.Duration `json:"duration"`
}

// clientResult is what one run of the Go load client measured. Latencies are in
// nanoseconds; MeanBytes is the mean payload of a successful answer: the JSON body
// over REST, the protobuf message over gRPC.
type clientResult struct {
	Requests uint64 `json:"requests"`
	OK       uint64 `json:"ok"`
	// Failures counts the other answers by kind: "404", "NotFound", "transport
	// error", "wrong book"…
	Failures  map[string]uint64 `json:"failures,omitempty"`
	Errors    []string          `json:"errors,omitempty"` // the first few, as text
	Duration  time.Duration     `json:"duration_ns"`      // first request sent to the last answer
	P50       time.Duration     `json:"p50_ns"`
	P90       time.Duration     `json:"p90_ns"`
	P99       time.Duration     `json:"p99_ns"`
	Mean      time.Duration     `json:"mean_ns"`
	Max       time.Duration     `json:"max_ns"`
	MeanBytes uint64            `json:"mean_bytes"`
	ReqPerS   float64           `json:"req_per_s"`
}

// maxClientErrors bounds the error texts a client run keeps.
const maxClientErrors = 5

// call is one request of a worker: it asks for the book id and returns the size of
// the payload answered, or the kind of failure and the error.
type call func(ctx context.Context, id string) (size int, failure string, err error)

// serveClient is Run as the Go load client: it reads the spec at specPath, loads,
// and prints the result to stdout.
func serveClient(ctx context.Context, specPath string, stdout io.Writer) error {
	b, err := os.ReadFile(specPath)
	if err != nil {
		return fmt.Errorf("load client: %w", err)
	}
	var spec clientSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("load client: %s: %w", specPath, err)
	}
	res, err := runClient(ctx, spec)
	if err != nil {
		return fmt.Errorf("load client: %w", err)
	}
	return json.NewEncoder(stdout).Encode(res)
}

// runClient loads the book service as spec says and returns what it measured.
func runClient(ctx context.Context, spec clientSpec) (clientResult, error) {
	if len(spec.IDs) == 0 || spec.Connections < 1 || spec.Duration <= 0 {
		return clientResult{}, errors.New("the spec needs ids, connections and a duration")
	}
	// The calls get no deadline of their own, which gRPC would send to the server
	// (grpc-timeout) and REST would not: a stuck call is cancelled with the run,
	// requestTimeout after its end.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := time.AfterFunc(spec.Duration+requestTimeout, cancel)
	defer stop.Stop()

	calls := make([]call, spec.Connections)
	for i := range calls {
		c, closeConn, err := newCall(spec)
		if err != nil {
			return clientResult{}, err
		}
		defer closeConn()
		calls[i] = c
	}

	var next atomic.Uint64
	next.Store(uint64(time.Now().UnixNano()) % uint64(len(spec.IDs)))
	type workerLog struct {
		latencies []time.Duration
		bytes     uint64
		failures  map[string]uint64
		errors    []string
	}
	logs := make([]workerLog, spec.Connections)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(spec.Duration)
	for w := range calls {
		l := &logs[w]
		l.failures = map[string]uint64{}
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				id := spec.IDs[next.Add(1)%uint64(len(spec.IDs))]
				t0 := time.Now()
				size, failure, err := calls[w](ctx, id)
				l.latencies = append(l.latencies, time.Since(t0))
				if failure != "" {
					l.failures[failure]++
					if err != nil && len(l.errors) < maxClientErrors {
						l.errors = append(l.errors, err.Error())
					}
					continue
				}
				l.bytes += uint64(size)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := ctx.Err(); err != nil && time.Now().Before(end) {
		return clientResult{}, err
	}

	res := clientResult{Duration: took, Failures: map[string]uint64{}}
	var all []time.Duration
	var payload uint64
	for _, l := range logs {
		all = append(all, l.latencies...)
		payload += l.bytes
		for k, n := range l.failures {
			res.Failures[k] += n
		}
		res.Errors = append(res.Errors, l.errors...)
	}
	res.Errors = res.Errors[:min(len(res.Errors), maxClientErrors)]
	res.Requests = uint64(len(all))
	res.OK = res.Requests
	for _, n := range res.Failures {
		res.OK -= n
	}
	if res.OK > 0 {
		res.MeanBytes = payload / res.OK
	}
	slices.Sort(all)
	if len(all) > 0 {
		var total time.Duration
		for _, d := range all {
			total += d
		}
		res.Mean, res.Max = total/time.Duration(len(all)), all[len(all)-1]
		res.P50, res.P90, res.P99 = percentile(all, 50), percentile(all, 90), percentile(all, 99)
	}
	if took > 0 {
		res.ReqPerS = float64(res.Requests) / took.Seconds()
	}
	return res, nil
}

// newCall returns the call of spec's protocol on a connection of its own, and what
// closes that connection.
func newCall(spec clientSpec) (call, func(), error) {
	switch spec.Protocol {
	case clientREST:
		return restCall(spec.Addr)
	case clientGRPC:
		// Without gzip, the client accepts uncompressed answers alone, as REST's are
		// (the book service's REST API compresses none).
		return grpcCall(spec.Addr, connect.WithAcceptCompression("gzip", nil, nil))
	case clientGRPCGzip:
		return grpcCall(spec.Addr)
	}
	return nil, nil, fmt.Errorf("protocol %q is none of %s, %s, %s", spec.Protocol, clientREST, clientGRPC, clientGRPCGzip)
}

// restBook is the book of GET /books/{id}, as a Go client of the REST API decodes
// it: the REST side of the comparison gets a typed book too, as gRPC's does.
type restBook struct {
	ID            string    `json:"id"`
	Title         string    `json:"title"`
	AuthorID      string    `json:"author_id"`
	Genre         string    `json:"genre"`
	ISBN          *string   `json:"isbn"`
	PublishedYear *int      `json:"published_year"`
	Version       int       `json:"version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// restCall reads books with GET /books/{id} over one HTTP/1.1 keep-alive connection
// (a transport of its own, at most one connection, no gzip asked for, as wrk asks
// for none), and decodes each answer.
func restCall(addr string) (call, func(), error) {
	transport := &http.Transport{
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + addr + "/books/"
	var buf bytes.Buffer
	c := func(ctx context.Context, id string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+id, nil)
		if err != nil {
			return 0, "request", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "transport error", err
		}
		buf.Reset()
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return 0, "transport error", err
		case resp.StatusCode < 200 || resp.StatusCode > 299:
			return 0, fmt.Sprint(resp.StatusCode), fmt.Errorf("GET /books/%s: %s", id, resp.Status)
		}
		var b restBook
		if err := json.Unmarshal(buf.Bytes(), &b); err != nil {
			return 0, "undecodable answer", fmt.Errorf("GET /books/%s: %w", id, err)
		}
		if b.ID != id {
			return 0, "wrong book", fmt.Errorf("GET /books/%s answered book %q", id, b.ID)
		}
		return buf.Len(), "", nil
	}
	return c, transport.CloseIdleConnections, nil
}

// grpcCall reads books with GetBook over gRPC on one HTTP/2 connection without TLS
// (h2c, as the book service serves gRPC on its port), with the Connect client and
// opts: a transport of its own, since HTTP/2 multiplexes every call of a transport
// on one connection. The Connect client rather than grpc-go: it is the client the
// author service calls book with, so this row and the genre call over gRPC share
// it; it runs on net/http as the REST client does, so that what differs is the
// protocol, not the HTTP library; and it lets the answers' compression be chosen
// (grpc-go 1.85 advertises every compressor linked in, and the OTLP exporter links
// in gzip, whatever its AcceptCompressors option is given).
func grpcCall(addr string, opts ...connect.ClientOption) (call, func(), error) {
	transport := &http.Transport{IdleConnTimeout: 90 * time.Second, Protocols: new(http.Protocols)}
	transport.Protocols.SetUnencryptedHTTP2(true)
	client := bookv1connect.NewBookServiceClient(&http.Client{Transport: transport}, "http://"+addr,
		append([]connect.ClientOption{connect.WithGRPC()}, opts...)...)
	c := func(ctx context.Context, id string) (int, string, error) {
		resp, err := client.GetBook(ctx, &bookv1.GetBookRequest{Id: id})
		if err != nil {
			return 0, connect.CodeOf(err).String(), err
		}
		if got := resp.GetBook().GetId(); got != id {
			return 0, "wrong book", fmt.Errorf("GetBook(%s) answered book %q", id, got)
		}
		return proto.Size(resp), "", nil
	}
	return c, transport.CloseIdleConnections, nil
}

// clientRun is one run of the Go load client, as the benchmark saw it.
type clientRun struct {
	res  clientResult
	cpu  time.Duration // user and system CPU of the client process
	wall time.Duration // from start to exit
}

// runGoClient runs the Go load client (this executable again, with ClientEnv set)
// for dur with the spec of e, and reads what it printed.
func runGoClient(ctx context.Context, s settings, dir string, e endpoint, dur time.Duration) (clientRun, error) {
	exe, err := os.Executable()
	if err != nil {
		return clientRun{}, fmt.Errorf("load client: %w", err)
	}
	spec := clientSpec{Protocol: e.client, Addr: strings.TrimPrefix(e.base, "http://"), IDs: e.ids,
		Connections: s.workers, Duration: dur}
	b, err := json.Marshal(spec)
	if err != nil {
		return clientRun{}, err
	}
	specPath := filepath.Join(dir, "client-"+scriptName(e.label)+".json")
	if err := os.WriteFile(specPath, b, 0o600); err != nil {
		return clientRun{}, fmt.Errorf("load client: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, os.Args[1:]...)
	cmd.Env = append(cleanEnv(), ClientEnv+"="+specPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return clientRun{}, fmt.Errorf("load client for %s: %w\n%s%s", e.label, err, stdout.String(), stderr.String())
	}
	var res clientResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return clientRun{}, fmt.Errorf("load client for %s printed no result: %w\n%s", e.label, err, stdout.String())
	}
	return clientRun{res: res, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), wall: wall}, nil
}

// measureGoClient drives e with the Go load client, a separate process, for
// s.warmup unmeasured, then for s.duration measured, with s.workers connections,
// and returns what it measured but the ratio to the ceiling. The CPU column of the
// load generator is the client's own.
func measureGoClient(ctx context.Context, s settings, dir string, sys *system, e endpoint) (result, error) {
	return measureGenerator(ctx, s, sys, e, func(dur time.Duration) (generatorRun, error) {
		run, err := runGoClient(ctx, s, dir, e, dur)
		if err != nil {
			return generatorRun{}, err
		}
		return generatorRun{m: run.metrics(), ok: run.res.OK, duration: run.res.Duration, cpu: run.cpu, wall: run.wall}, nil
	})
}

// metrics returns run as the vegeta metrics the report reads.
func (run clientRun) metrics() vegeta.Metrics {
	res := run.res
	m := vegeta.Metrics{Requests: res.Requests, Duration: res.Duration, Rate: res.ReqPerS}
	m.Latencies.P50, m.Latencies.P90, m.Latencies.P99 = res.P50, res.P90, res.P99
	m.Latencies.Mean, m.Latencies.Max = res.Mean, res.Max
	m.BytesIn.Mean = float64(res.MeanBytes)
	m.BytesIn.Total = res.MeanBytes * res.OK
	if len(res.Failures) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(res.Failures)) {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, res.Failures[k]))
		}
		m.Errors = append(m.Errors, "failed: "+strings.Join(parts, ", "))
	}
	m.Errors = append(m.Errors, res.Errors...)
	return m
}
