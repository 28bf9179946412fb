// Package paging is how Folio's lists are read a page at a time, in id order,
// whatever the transport: a request names where the page starts and how long it
// is, a page says where the next one starts.
package paging

import (
	"encoding/base64"
	"errors"
	"strings"

	"folio/internal/platform/id"
)

// Request is the paging part of a list request.
type Request struct {
	Limit int    // how many items at most; from 1 to 100 once parsed
	After string // the id after which the page starts; "" for the first page
}

// Fetch is how many items a store reads for r: one more than the limit, so that
// the extra one tells whether another page follows.
func (r Request) Fetch() int { return r.Limit + 1 }

// Page is one page of a list.
type Page[T any] struct {
	Items []T
	// Next is the id after which the next page starts; "" when this is the last.
	Next string
}

// Of makes the page for r from the up to r.Fetch() items read in id order.
func Of[T any](r Request, items []T, id func(T) string) Page[T] {
	p := Page[T]{Items: items}
	if p.Items == nil {
		p.Items = []T{}
	}
	if len(items) > r.Limit {
		p.Items = items[:r.Limit]
		p.Next = id(items[r.Limit-1])
	}
	return p
}

const cursorPrefix = "c1:"

// Cursor returns the opaque cursor of the page that starts after id: the REST
// API's next_cursor and the RPC API's next_page_token alike.
func Cursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

// ParseCursor returns the id after which the page of cursor c starts, or an error
// when c was not issued by Cursor.
func ParseCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", err
	}
	after, ok := strings.CutPrefix(string(b), cursorPrefix)
	if !ok || !id.Valid(after) {
		return "", errors.New("not a cursor")
	}
	return after, nil
}
