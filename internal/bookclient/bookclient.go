// Package bookclient is the author service's client of the book service's HTTP API
// (its OpenAPI document is served at the book service's /openapi.json).
package bookclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/logging"
	"folio/internal/platform/problem"
	"folio/internal/platform/tracecontext"
)

// Book is a book as the book service sends it.
type Book struct {
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

// Page is one page of books. NextCursor is nil on the last page.
type Page struct {
	Items      []Book  `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// ListParams narrows and pages a list of books (GET /books). Empty fields are left out
// of the request, so the book service applies its defaults.
type ListParams struct {
	Genre    string
	AuthorID string
	Limit    int
	Cursor   string // the NextCursor of the previous page
}

// maxResponseBytes bounds how much of a response the client reads: a full page of
// 100 books is a small fraction of it.
const maxResponseBytes = 4 << 20

// Client calls one book service.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the book service at baseURL, calling it through hc (a
// client from package resilient).
func New(baseURL string, hc *http.Client) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), http: hc}
}

// ListBooks returns one page of books (GET /books). Errors: Malformed, carrying the
// book service's detail and field errors, when the book service rejects the request
// as malformed (400: a bad filter, limit or cursor); Unavailable when it cannot
// answer (refused, timed out, circuit open, 5xx) or answers in a way the client cannot
// use.
func (c *Client) ListBooks(ctx context.Context, p ListParams) (Page, error) {
	q := url.Values{}
	if p.Genre != "" {
		q.Set("genre", p.Genre)
	}
	if p.AuthorID != "" {
		q.Set("author_id", p.AuthorID)
	}
	if p.Limit != 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	u := c.base + "/books"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Page{}, fmt.Errorf("list books: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(httpserver.RequestIDHeader, logging.RequestID(ctx))
	if tp := tracecontext.From(ctx); tp != "" {
		req.Header.Set(tracecontext.Header, tp)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Page{}, unavailable(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Page{}, unavailable(fmt.Errorf("read book service answer: %w", err))
	}
	if len(body) > maxResponseBytes {
		return Page{}, unavailable(errors.New("book service answer is too large"))
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if !isMediaType(resp.Header.Get("Content-Type"), "application/json") {
			return Page{}, unavailable(fmt.Errorf("book service answered with content type %q", resp.Header.Get("Content-Type")))
		}
		var page Page
		if err := json.Unmarshal(body, &page); err != nil {
			return Page{}, unavailable(fmt.Errorf("decode book service answer: %w", err))
		}
		if page.Items == nil {
			page.Items = []Book{}
		}
		return page, nil
	case resp.StatusCode == http.StatusBadRequest:
		return Page{}, malformed(resp, body)
	default:
		return Page{}, unavailable(fmt.Errorf("book service answered %s", resp.Status))
	}
}

// unavailable classifies err as the book service not being able to answer.
func unavailable(err error) error {
	return fault.Wrap(fault.Unavailable, err, "the book service cannot answer right now")
}

// malformed turns the book service's 400 problem into a Malformed error with the same
// detail and field errors, which are safe to show to clients by construction.
func malformed(resp *http.Response, body []byte) error {
	var p problem.Problem
	if !isMediaType(resp.Header.Get("Content-Type"), problem.ContentType) || json.Unmarshal(body, &p) != nil {
		return unavailable(fmt.Errorf("book service answered %s without a problem document", resp.Status))
	}
	msg := p.Detail
	if msg == "" {
		msg = "the book service rejected the request as malformed"
	}
	return &fault.Error{Kind: fault.Malformed, Message: msg, Fields: p.Errors,
		Err: fmt.Errorf("book service answered %s", resp.Status)}
}

func isMediaType(header, want string) bool {
	mt, _, err := mime.ParseMediaType(header)
	return err == nil && mt == want
}
