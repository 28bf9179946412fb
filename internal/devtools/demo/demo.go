// Package demo holds Folio's demo catalogue of authors and their books, and loads it
// into a running system through the services' own HTTP APIs.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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
	l := &loader{requester: requester{hc: hc, token: token}, bookURL: strings.TrimSuffix(bookURL, "/"), authorURL: strings.TrimSuffix(authorURL, "/")}

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
	requester
	bookURL, authorURL string

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
// by itself (a 409 too: a key still held by an interrupted load's request), for up
// to retryFor. It reports whether the service replayed an earlier answer to the
// same key.
func (l *loader) post(ctx context.Context, url, key string, body, out any) (replayed bool, err error) {
	h, err := l.send(ctx, http.MethodPost, url, map[string]string{"Idempotency-Key": key}, body, out, http.StatusConflict)
	return h.Get("Idempotent-Replayed") == "true", err
}

// requester sends the loads' requests, as the caller of token.
type requester struct {
	hc    *http.Client
	token string
}

// statusError is a non-2xx answer.
type statusError struct {
	method, path string
	status       int
	detail       string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s answered %d %s%s", e.method, e.path, e.status, http.StatusText(e.status), e.detail)
}

// send sends body (none when nil) as JSON with header, and decodes a 2xx answer into
// out (when not nil); it returns the answer's headers. A failure to connect, and
// an answer that may pass by itself (429, 502, 503, 504, and the statuses in
// alsoRetry), are retried for up to retryFor, waiting 100 ms doubling to 3 s. A
// non-2xx answer is a *statusError. When ctx ends, no new attempt starts, but one
// in flight finishes, so that none is cut off after the service acted on it.
func (c requester) send(ctx context.Context, method, url string, header map[string]string, body, out any, alsoRetry ...int) (http.Header, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(retryFor)
	wait := 100 * time.Millisecond
	for {
		if err := context.Cause(ctx); err != nil {
			return nil, err
		}
		h, retry, err := c.once(ctx, method, url, header, payload, out)
		var se *statusError
		if errors.As(err, &se) {
			retry = slices.Contains(alsoRetry, se.status) || se.status == http.StatusTooManyRequests ||
				se.status == http.StatusBadGateway || se.status == http.StatusServiceUnavailable || se.status == http.StatusGatewayTimeout
		}
		if err == nil || !retry || time.Now().Add(wait).After(deadline) {
			return h, err
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(wait):
		}
		wait = min(2*wait, 3*time.Second)
	}
}

// once makes one attempt of send; retry says that its failure to get an answer
// may pass by itself.
func (c requester) once(ctx context.Context, method, url string, header map[string]string, payload []byte, out any) (h http.Header, retry bool, err error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, url, bytes.NewReader(payload))
	if err != nil {
		return nil, false, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, true, fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, true, fmt.Errorf("%s %s: read answer: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.Header, false, &statusError{method: method, path: req.URL.Path, status: resp.StatusCode, detail: explain(data)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, false, fmt.Errorf("%s %s: answer is not the JSON expected: %w", method, req.URL.Path, err)
		}
	}
	return resp.Header, false, nil
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
