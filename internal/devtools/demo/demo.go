// Package demo holds Folio's demo catalogue of authors and their books, and loads it
// into a running system through the services' own HTTP APIs.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"folio/internal/platform/problem"
)

//go:embed catalogue.json
var catalogueJSON []byte

// Author is one author of the demo catalogue with their books. Key is a stable,
// unique name for the author from which the idempotency keys of the load are made.
type Author struct {
	Key       string `json:"key"`
	Name      string `json:"name"`
	Bio       string `json:"bio"`
	BirthYear *int   `json:"birth_year"`
	Books     []Book `json:"books"`
}

// Book is one book of the demo catalogue.
type Book struct {
	Title         string `json:"title"`
	Genre         string `json:"genre"`
	PublishedYear *int   `json:"published_year"`
}

// Catalogue returns the demo catalogue's authors, parsed afresh on each call so that
// callers may change what they get. Errors: the embedded file is not valid (a bug
// that the package's tests catch).
func Catalogue() ([]Author, error) {
	var c struct {
		Authors []Author `json:"authors"`
	}
	dec := json.NewDecoder(bytes.NewReader(catalogueJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("demo catalogue: %w", err)
	}
	return c.Authors, nil
}

// Stats counts what a Load did. Authors and Books count the resources the services
// created now; AuthorsReplayed and BooksReplayed count those an earlier, interrupted
// load had created, which the services recognised by their Idempotency-Key.
type Stats struct {
	Authors, Books                 int
	AuthorsReplayed, BooksReplayed int
	Elapsed                        time.Duration // how long the load took
}

// Workers is how many authors Load writes at once.
const Workers = 4

// retryFor bounds how long Load retries one request that meets a passing condition:
// a service restarting, a peer unavailable (503), or a key still held by a request
// that an interrupted load left running (409, freed by the service within a minute).
const retryFor = 90 * time.Second

// requestTimeout bounds each request, since one in flight is not cut off when the
// load is cancelled.
const requestTimeout = 30 * time.Second

// Load creates every author of the catalogue with POST /authors on the author service
// at authorURL, then each of their books with POST /books on the book service at
// bookURL, a few authors at a time, as the caller of token: an access token with
// role editor or admin, which the services check. Every request carries an
// Idempotency-Key made from the catalogue's keys, so that running Load again after an
// interrupted load creates nothing twice (the services scope keys to the token's
// subject, so the same account must load again). When ctx ends, Load sends no new request but lets those in
// flight finish, so that no request is cut off after the service acted on it and
// before it recorded its answer. hc may be nil for http.DefaultClient; each request
// is bounded by a 30 s timeout in any case.
//
// Errors: the first request that failed, naming the request, the status and the
// service's explanation. Answers that may pass by themselves (409, 429, 502, 503,
// 504) and failures to connect are retried with the same key for up to 90 s first;
// any other non-2xx answer (a refused token's 401 or 403 included) fails at once.
// When ctx ended first, its error.
func Load(ctx context.Context, bookURL, authorURL, token string, hc *http.Client) (Stats, error) {
	start := time.Now()
	authors, err := Catalogue()
	if err != nil {
		return Stats{}, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	l := &loader{hc: hc, bookURL: strings.TrimSuffix(bookURL, "/"), authorURL: strings.TrimSuffix(authorURL, "/"), token: token}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan Author)
	var wg sync.WaitGroup
	for range Workers {
		wg.Go(func() {
			for a := range jobs {
				if err := l.author(ctx, a); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
feed:
	for _, a := range authors {
		select {
		case jobs <- a:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()

	l.mu.Lock()
	stats := l.stats
	l.mu.Unlock()
	stats.Elapsed = time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return stats, err
	}
	return stats, nil
}

type loader struct {
	hc                 *http.Client
	bookURL, authorURL string
	token              string

	mu    sync.Mutex
	stats Stats
}

// author creates one author and then their books, in catalogue order.
func (l *loader) author(ctx context.Context, a Author) error {
	body := struct {
		Name      string `json:"name"`
		Bio       string `json:"bio,omitempty"`
		BirthYear *int   `json:"birth_year,omitempty"`
	}{a.Name, a.Bio, a.BirthYear}
	var created struct {
		ID string `json:"id"`
	}
	replayed, err := l.post(ctx, l.authorURL+"/authors", "demo-author-"+a.Key, body, &created)
	if err != nil {
		return fmt.Errorf("load demo author %q: %w", a.Key, err)
	}
	if created.ID == "" {
		return fmt.Errorf("load demo author %q: POST /authors answered without an id", a.Key)
	}
	l.count(&l.stats.Authors, &l.stats.AuthorsReplayed, replayed)

	for i, b := range a.Books {
		body := struct {
			Title         string `json:"title"`
			AuthorID      string `json:"author_id"`
			Genre         string `json:"genre"`
			PublishedYear *int   `json:"published_year,omitempty"`
		}{b.Title, created.ID, b.Genre, b.PublishedYear}
		key := fmt.Sprintf("demo-book-%s-%d", a.Key, i+1)
		replayed, err := l.post(ctx, l.bookURL+"/books", key, body, nil)
		if err != nil {
			return fmt.Errorf("load demo book %q of %q: %w", b.Title, a.Key, err)
		}
		l.count(&l.stats.Books, &l.stats.BooksReplayed, replayed)
	}
	return nil
}

func (l *loader) count(created, replayed *int, wasReplayed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if wasReplayed {
		*replayed++
	} else {
		*created++
	}
}

// post sends body as JSON with the idempotency key and decodes a 2xx answer into out
// (when not nil). It retries, with the same key, while the failure is one that passes
// by itself, for up to retryFor. It reports whether the service replayed an earlier
// answer to the same key.
func (l *loader) post(ctx context.Context, url, key string, body, out any) (replayed bool, err error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return false, err
	}
	deadline := time.Now().Add(retryFor)
	wait := 100 * time.Millisecond
	for {
		if err := context.Cause(ctx); err != nil {
			return false, err
		}
		replayed, retry, err := l.postOnce(ctx, url, key, payload, out)
		if err == nil || !retry || time.Now().Add(wait).After(deadline) {
			return replayed, err
		}
		select {
		case <-ctx.Done():
			return false, context.Cause(ctx)
		case <-time.After(wait):
		}
		wait = min(2*wait, 3*time.Second)
	}
}

func (l *loader) postOnce(ctx context.Context, url, key string, payload []byte, out any) (replayed, retry bool, err error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return false, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return false, true, fmt.Errorf("POST %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, true, fmt.Errorf("POST %s: read answer: %w", req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		switch resp.StatusCode {
		case http.StatusConflict, http.StatusTooManyRequests, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			retry = true
		}
		return false, retry, fmt.Errorf("POST %s answered %s%s", req.URL.Path, resp.Status, explain(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return false, false, fmt.Errorf("POST %s: answer is not the JSON expected: %w", req.URL.Path, err)
		}
	}
	return resp.Header.Get("Idempotent-Replayed") == "true", false, nil
}

// explain renders a problem+json answer as ": detail (field: message; …)", or a
// short excerpt of any other body.
func explain(body []byte) string {
	var p problem.Problem
	if err := json.Unmarshal(body, &p); err == nil && (p.Detail != "" || p.Title != "") {
		s := p.Detail
		if s == "" {
			s = p.Title
		}
		var fields []string
		for _, f := range p.Errors {
			fields = append(fields, f.Field+": "+f.Message)
		}
		if len(fields) > 0 {
			s += " (" + strings.Join(fields, "; ") + ")"
		}
		return ": " + s
	}
	text := strings.TrimSpace(string(body))
	if text == "" {
		return ""
	}
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return ": " + text
}
