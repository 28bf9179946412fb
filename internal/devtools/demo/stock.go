package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// StockStats counts what a Stock did: Stocked books were given stock and a price
// now; Kept ones had them already (an earlier run, or an editor) and were left as
// they were.
type StockStats struct {
	Stocked, Kept int
	Elapsed       time.Duration
}

// Currency is the demo stock's currency.
const Currency = "EUR"

// DemoStock is the stock and price (in cents) the demo gives the book with id: a
// few copies at a few euros, varied but the same on every run.
func DemoStock(bookID string) (quantity int, priceCents int64) {
	h := fnv.New32a()
	h.Write([]byte(bookID))
	n := h.Sum32()
	return 5 + int(n%16), 499 + int64(n/16%31)*100
}

// Stock gives every book of the book service at bookURL stock and a price in the
// inventory service at inventoryURL (PUT /inventory/{id}, as the caller of token,
// an editor's or admin's), leaving alone the books that have some already, so that
// running it again changes nothing. Answers that may pass by themselves (429, 502,
// 503, 504, failures to connect) are retried for up to 90 s each.
func Stock(ctx context.Context, bookURL, inventoryURL, token string, hc *http.Client) (StockStats, error) {
	start := time.Now()
	if hc == nil {
		hc = http.DefaultClient
	}
	s := stocker{hc: hc, token: token, inventoryURL: strings.TrimSuffix(inventoryURL, "/")}
	var stats StockStats
	cursor := ""
	for {
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		target := strings.TrimSuffix(bookURL, "/") + "/books?limit=100"
		if cursor != "" {
			target += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := s.do(ctx, http.MethodGet, target, nil, &page); err != nil {
			return stats, err
		}
		for _, b := range page.Items {
			stocked, err := s.stock(ctx, b.ID)
			if err != nil {
				return stats, err
			}
			if stocked {
				stats.Stocked++
			} else {
				stats.Kept++
			}
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			break
		}
		cursor = *page.NextCursor
	}
	stats.Elapsed = time.Since(start)
	return stats, nil
}

type stocker struct {
	hc           *http.Client
	token        string
	inventoryURL string
}

// stock creates the demo stock of a book unless the book has stock already: the
// create asks If-None-Match: *, which the inventory service refuses with 412 when
// a row exists.
func (s stocker) stock(ctx context.Context, bookID string) (bool, error) {
	quantity, price := DemoStock(bookID)
	body := map[string]any{"quantity": quantity, "price": map[string]any{"amount": price, "currency": Currency}}
	err := s.do(ctx, http.MethodPut, s.inventoryURL+"/inventory/"+url.PathEscape(bookID), body, nil)
	if se, ok := err.(*statusError); ok && se.status == http.StatusPreconditionFailed {
		return false, nil
	}
	return err == nil, err
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

// do sends one request, retried while its failure may pass by itself, and decodes
// a 2xx answer into out when not nil.
func (s stocker) do(ctx context.Context, method, target string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(retryFor)
	wait := 100 * time.Millisecond
	for {
		err, retry := s.once(ctx, method, target, payload, out)
		if err == nil || !retry || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 3*time.Second)
	}
}

func (s stocker) once(ctx context.Context, method, target string, payload []byte, out any) (err error, retry bool) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, target, bytes.NewReader(payload))
	if err != nil {
		return err, false
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("If-None-Match", "*")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.Path, err), ctx.Err() == nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, req.URL.Path, err), true
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			retry = true
		}
		return &statusError{method: method, path: req.URL.Path, status: resp.StatusCode, detail: explain(data)}, retry
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer is not the JSON expected: %w", method, req.URL.Path, err), false
		}
	}
	return nil, false
}
