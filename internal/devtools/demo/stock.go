package demo

import (
	"context"
	"errors"
	"hash/fnv"
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
	s := stocker{requester: requester{hc: hc, token: token}, inventoryURL: strings.TrimSuffix(inventoryURL, "/")}
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
		if _, err := s.send(ctx, http.MethodGet, target, nil, nil, &page); err != nil {
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
	requester
	inventoryURL string
}

// stock creates the demo stock of a book unless the book has stock already: the
// create asks If-None-Match: *, which the inventory service refuses with 412 when
// a row exists.
func (s stocker) stock(ctx context.Context, bookID string) (bool, error) {
	quantity, price := DemoStock(bookID)
	body := map[string]any{"quantity": quantity, "price": map[string]any{"amount": price, "currency": Currency}}
	_, err := s.send(ctx, http.MethodPut, s.inventoryURL+"/inventory/"+url.PathEscape(bookID), map[string]string{"If-None-Match": "*"}, body, nil)
	var se *statusError
	if errors.As(err, &se) && se.status == http.StatusPreconditionFailed {
		return false, nil
	}
	return err == nil, err
}
