// Package authorclient is the book service's client of the author service's HTTP API
// (its OpenAPI document is served at the author service's /openapi.json).
package authorclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"folio/internal/book"
	"folio/internal/platform/fault"
)

// Client calls one author service.
type Client struct {
	base string
	http *http.Client
}

var _ book.Authors = (*Client)(nil)

// New returns a client of the author service at baseURL, calling it through hc (a
// client from package resilient, which carries the request id and trace context of
// the request being served).
func New(baseURL string, hc *http.Client) *Client { return &Client{base: baseURL, http: hc} }

// Exists reports whether the author with id exists (GET /authors/{id}). Errors:
// Unavailable when the author service cannot answer.
func (c *Client) Exists(ctx context.Context, id string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/authors/"+url.PathEscape(id), nil)
	if err != nil {
		return false, fmt.Errorf("author exists: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fault.Wrap(fault.Unavailable, err, "the author service cannot confirm the author right now")
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fault.Wrap(fault.Unavailable, fmt.Errorf("author service answered %s", resp.Status),
			"the author service cannot confirm the author right now")
	}
}
