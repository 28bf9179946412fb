package loadbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"folio/internal/platform/httpserver"
)

// ceilingBody is what the ceiling answers: one book as the book service sends it.
const ceilingBody = `{"id":"019ad4c2-5f10-7a3e-9c41-6d2b8e0f1a23","title":"The Left Hand of Darkness",` +
	`"author_id":"019ad4c2-5e02-7b11-8f0d-3c9a7e5b2d14","genre":"science-fiction","isbn":"9780441478125",` +
	`"published_year":1969,"version":1,"created_at":"2026-11-30T09:00:00.123456Z","updated_at":"2026-11-30T09:00:00.123456Z"}`

// serveCeiling serves the ceiling on addr until ctx ends: a bare net/http server
// that answers every request with ceilingBody, the least any service can do per
// request. Once it listens, it writes the address it took to addrFile, as the
// Folio programs do.
func serveCeiling(ctx context.Context, addr, addrFile string) error {
	body := []byte(ceilingBody)
	length := strconv.Itoa(len(body))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", length)
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	if addrFile != "" {
		if err := httpserver.WriteAddrFile(addrFile, httpserver.Addrs{HTTP: ln.Addr().String()}); err != nil {
			ln.Close()
			return fmt.Errorf("ceiling: %w", err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ceiling: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("ceiling: %w", err)
	}
	return nil
}
