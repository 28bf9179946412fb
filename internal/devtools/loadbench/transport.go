package loadbench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to copy the author database
)

// authorDataDir is the data directory (FOLIO_DATA_DIR) of the author service under
// test, under the benchmark's temporary directory; authorDatabase is the SQLite file
// the service keeps there by default (the chassis' <name>.db).
const (
	authorDataDir     = "author-data"
	authorGRPCDataDir = "author-grpc-data"
	authorDatabase    = "author.db"
)

// startAuthorGRPC starts a second author service that calls the book service over
// gRPC (FOLIO_BOOK_TRANSPORT=grpc), started as the first is, against the same book
// service, auth service and broker, with a database of its own, and waits until it
// answers with the same authors and book counts as the first.
//
// An author service learns its authors from POST /authors alone, each id made by
// the service, and its book counts from book events; books name the first service's
// author ids. So the second gets its data as a new replica restored from a backup
// would: once the first has applied every seeded book's event, its database is
// copied (VACUUM INTO, a consistent snapshot while it runs) to the second's data
// directory. The second joins the author services' durable consumer on the broker
// (author-books, one name for every author service), so it is not sent again the
// events the copy already holds; events of later writes (POST /books, measured
// last) are shared between the two, which nothing measured reads.
func (sys *system) startAuthorGRPC(ctx context.Context, dir string, progs map[string]string, d *dataset) error {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	want, err := waitBookCounts(ctx, client, sys.authorURL, d)
	if err != nil {
		return fmt.Errorf("author over gRPC: %w", err)
	}
	dataDir := filepath.Join(dir, authorGRPCDataDir)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("author over gRPC: %w", err)
	}
	if err := copySQLite(ctx, filepath.Join(dir, authorDataDir, authorDatabase), filepath.Join(dataDir, authorDatabase)); err != nil {
		return fmt.Errorf("author over gRPC: copy the author database: %w", err)
	}
	p, addrs, err := startReporting(ctx, dir, "author-grpc", progs["author"], nil,
		sys.authorEnv(anyPort, dataDir, sys.bookURL, "FOLIO_BOOK_TRANSPORT=grpc"))
	sys.authorGRPC = p
	if err != nil {
		return err
	}
	sys.noteProfiler("author-grpc", addrs)
	authorURL := "http://" + addrs.HTTP
	if err := p.waitReady(ctx, authorURL+"/readyz"); err != nil {
		return err
	}
	got, err := bookCounts(ctx, client, authorURL)
	if err != nil {
		return fmt.Errorf("author over gRPC: %w", err)
	}
	if !maps.Equal(got, want) {
		return fmt.Errorf("author over gRPC: it has %d authors with %d books, the first %d with %d",
			len(got), sum(got), len(want), sum(want))
	}
	sys.authorGRPCURL = authorURL
	return nil
}

// waitBookCounts waits, for at most applyTimeout, until the author service at
// authorURL lists every author of d with book counts that add up to d's books (its
// projection has applied every seeded book's event), and returns the counts.
func waitBookCounts(ctx context.Context, client *http.Client, authorURL string, d *dataset) (map[string]int, error) {
	deadline := time.Now().Add(applyTimeout)
	for {
		counts, err := bookCounts(ctx, client, authorURL)
		if err == nil && len(counts) >= len(d.authorIDs) && sum(counts) >= len(d.bookIDs) {
			return counts, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("the author service counts %d books of %d authors after %s, not %d of %d",
					sum(counts), len(counts), applyTimeout, len(d.bookIDs), len(d.authorIDs))
			}
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bookCounts returns every author's book_count, by id, from the author service at
// authorURL (GET /authors, page by page).
func bookCounts(ctx context.Context, client *http.Client, authorURL string) (map[string]int, error) {
	counts := map[string]int{}
	cursor := ""
	for {
		u := authorURL + "/authors?limit=100"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items []struct {
				ID        string `json:"id"`
				BookCount int    `json:"book_count"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", u, err)
		}
		for _, a := range page.Items {
			counts[a.ID] = a.BookCount
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			return counts, nil
		}
		cursor = *page.NextCursor
	}
}

// sum is the number of books counts adds up to.
func sum(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// copySQLite writes a consistent copy of the SQLite database at src, which a
// running service writes, to dst (which must not exist), read-only on src.
func copySQLite(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+src+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("VACUUM INTO %s: %w", dst, err)
	}
	return db.Close()
}

// transportPairs are the measurements that compare REST with gRPC in one run: the
// genre call with author→book over each transport (the same GET /authors/books
// load on two author services), and the read of one book, REST against GetBook,
// with the same Go load client.
var transportPairs = []struct{ name, label string }{
	{"genre call, author→book over HTTP/JSON", labelAuthorsBooks},
	{"genre call, author→book over gRPC", labelAuthorsBooksGRPC},
	{"GET /books/{id} (REST, Go client)", labelBookGetGoREST},
	{"GetBook (gRPC, Go client)", labelBookGetGoGRPC},
	{"GetBook (gRPC, gzip accepted, Go client)", labelBookGetGoGzip},
}

// reportTransports prints REST beside gRPC, from the measurements of this run: 2xx
// per second, latency, and the CPU each program spent per request.
func reportTransports(w io.Writer, results []result) {
	byLabel := map[string]result{}
	for _, r := range results {
		byLabel[r.label] = r
	}
	measured := false
	for _, p := range transportPairs {
		_, ok := byLabel[p.label]
		measured = measured || ok
	}
	if !measured {
		return
	}
	col := func(name string) int { return slices.Index(watchedNames, name) }
	fmt.Fprintln(w, "\nREST versus gRPC, in this run (CPU per request of each program, in µs):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "call\t2xx/s\tp50\tp99\tbook\tauthor\tservices\tload generator")
	for _, p := range transportPairs {
		r, ok := byLabel[p.label]
		if !ok {
			continue
		}
		perRequest := func(name string) string {
			i := col(name)
			if !r.cpu.ok || r.m.Rate <= 0 || i < 0 || i >= len(r.cpu.procs) {
				return "-"
			}
			return fmt.Sprintf("%.0f", r.cpu.procs[i]/r.m.Rate*1e6)
		}
		author := "-"
		switch p.label {
		case labelAuthorsBooks:
			author = perRequest("author")
		case labelAuthorsBooksGRPC:
			author = perRequest("author-grpc")
		}
		services := "-"
		if us, ok := cpuPerRequest(r); ok {
			services = fmt.Sprintf("%.0f", us)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\n", p.name, r.okPerSec, ms(r.m.Latencies.P50), ms(r.m.Latencies.P99),
			perRequest("book"), author, services, perRequest("load generator"))
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "genre calls: GET /authors/books?genre=X of two author services, one calling book with HTTP/JSON, one with")
	fmt.Fprintln(w, "gRPC (FOLIO_BOOK_TRANSPORT=grpc: the Connect client, asking for uncompressed answers, as REST's are).")
	fmt.Fprintln(w, "reads of one book: the same Go client, one HTTP/1.1 keep-alive or h2c connection per worker (the Connect")
	fmt.Fprintln(w, "client, as the author's), gRPC's answers uncompressed as REST's are, or with gzip accepted (book gzips\nanswers of 4 KiB and more: one book's is not).")
	fmt.Fprintln(w, "services is all under test (book, author…); load generator is wrk's or the Go client's own CPU.")
}
