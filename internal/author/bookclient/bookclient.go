// Package bookclient is the author service's client of the book service: the
// author.Books the domain lists books with, over the book service's HTTP API (its
// OpenAPI document is served at the book service's /openapi.json) or over gRPC
// (proto/folio/book/v1), the same answers either way.
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

	"folio/internal/author"
	"folio/internal/platform/fault"
	"folio/internal/platform/problem"
)

// maxResponseBytes bounds how much of a response the client reads: a full page of
// 100 books is a small fraction of it.
const maxResponseBytes = 4 << 20

// Client calls one book service.
type Client struct {
	base string
	http *http.Client
}

var _ author.Books = (*Client)(nil)

// New returns a client of the book service at baseURL, calling it through hc (a
// client from package resilient, which carries the request id and trace context of
// the request being served).
func New(baseURL string, hc *http.Client) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), http: hc}
}

// ListBooks returns one page of books (GET /books); empty fields of p are left out of
// the request, and p.IfNoneMatch is sent as If-None-Match, a 304 to which is a
// listing NotModified. Errors: Malformed, carrying the
// book service's detail and field errors, when the book service rejects the request
// as malformed (400: a bad filter, limit or cursor); Unavailable when it cannot
// answer (refused, timed out, circuit open, 5xx) or answers in a way the client cannot
// use.
func (c *Client) ListBooks(ctx context.Context, p author.BookSearch) (author.BookListing, error) {
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
		return author.BookListing{}, fmt.Errorf("list books: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if p.IfNoneMatch != "" {
		req.Header.Set("If-None-Match", p.IfNoneMatch)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return author.BookListing{}, unavailable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && p.IfNoneMatch != "" {
		return author.BookListing{Items: []author.Book{}, ETag: resp.Header.Get("ETag"), NotModified: true}, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return author.BookListing{}, unavailable(fmt.Errorf("read book service answer: %w", err))
	}
	if len(body) > maxResponseBytes {
		return author.BookListing{}, unavailable(errors.New("book service answer is too large"))
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if !isMediaType(resp.Header.Get("Content-Type"), "application/json") {
			return author.BookListing{}, unavailable(fmt.Errorf("book service answered with content type %q", resp.Header.Get("Content-Type")))
		}
		var page author.BookListing
		if err := json.Unmarshal(body, &page); err != nil {
			return author.BookListing{}, unavailable(fmt.Errorf("decode book service answer: %w", err))
		}
		if page.Items == nil {
			page.Items = []author.Book{}
		}
		page.ETag = resp.Header.Get("ETag")
		return page, nil
	case resp.StatusCode == http.StatusBadRequest:
		return author.BookListing{}, malformed(resp, body)
	default:
		return author.BookListing{}, unavailable(fmt.Errorf("book service answered %s", resp.Status))
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
