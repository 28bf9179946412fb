// Package rest holds the HTTP conventions every Folio API shares: strict JSON
// decoding, JSON responses, ids, ETags and preconditions, and cursor paging.
package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"folio/internal/platform/fault"
	"folio/internal/platform/paging"
)

// Decode reads the request body as exactly one JSON value into dst, rejecting unknown
// fields, wrong types and a null body (Malformed, naming the field where it can) and
// bodies over the limit (TooLarge).
func Decode(r *http.Request, dst any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return DecodeBytes(body, dst)
}

// ReadBody reads the whole request body. Errors: UnsupportedMedia when the request
// has a body that is not JSON (CheckContentType), TooLarge past the chassis's body
// limit, Malformed when the body cannot be read.
func ReadBody(r *http.Request) ([]byte, error) {
	if err := CheckContentType(r); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fault.New(fault.TooLarge, "request bodies are limited to %d bytes", mbe.Limit)
		}
		return nil, fault.Wrap(fault.Malformed, err, "the request body could not be read")
	}
	return body, nil
}

// Media types of the request bodies Folio reads.
const (
	MediaJSON       = "application/json"
	MediaMergePatch = "application/merge-patch+json"
)

// CheckContentType returns UnsupportedMedia unless a request that has a body says it
// is application/json (parameters such as charset=utf-8 allowed), or, on PATCH,
// application/merge-patch+json. Any web page can make a browser send a cross-site
// POST of text/plain, form data or multipart without asking the server first (no
// CORS preflight); a JSON body cannot be sent that way, so refusing every other type
// keeps those requests from doing anything.
func CheckContentType(r *http.Request) error {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	// JSON is UTF-8 (RFC 8259); a body declared in another charset would be misread.
	utf8 := params["charset"] == "" || strings.EqualFold(params["charset"], "utf-8")
	switch {
	case err == nil && utf8 && mt == MediaJSON:
		return nil
	case err == nil && utf8 && mt == MediaMergePatch && r.Method == http.MethodPatch:
		return nil
	}
	want := MediaJSON
	if r.Method == http.MethodPatch {
		want = MediaMergePatch + " or " + MediaJSON
	}
	if ct == "" {
		return fault.New(fault.UnsupportedMedia, "the request body has no Content-Type; it must be %s", want)
	}
	if len(ct) > 100 {
		ct = ct[:100] + "…"
	}
	return fault.New(fault.UnsupportedMedia, "the request body must be %s in UTF-8, not %q", want, ct)
}

// MergePatch applies the RFC 7396 merge patch to current (a resource as a client
// writes it) and decodes the result into dst with DecodeBytes, so that a patched
// document passes the same checks as a PUT body. Errors: Malformed.
func MergePatch(current any, patch []byte, dst any) error {
	doc, err := json.Marshal(current)
	if err != nil {
		return fmt.Errorf("merge patch: %w", err)
	}
	merged, err := jsonpatch.MergePatch(doc, patch)
	if err != nil {
		return fault.Wrap(fault.Malformed, err, "the body is not a JSON merge patch object")
	}
	return DecodeBytes(merged, dst)
}

// DecodeBytes is Decode for a body already read.
func DecodeBytes(body []byte, dst any) error {
	if string(bytes.Trim(body, " \t\r\n")) == "null" {
		// json leaves dst untouched for null; a request body must be an object.
		return fault.New(fault.Malformed, "the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fault.New(fault.Malformed, "the request body must hold a single JSON value")
	}
	return checkFieldCase(body, dst)
}

// checkFieldCase rejects keys that match a field only when case is ignored, as
// encoding/json does: {"TITLE": …} names no field of the contract.
func checkFieldCase(body []byte, dst any) error {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		return nil // not an object; Decode already accepted it for a reason of its own
	}
	names := fieldNames(t)
	for k := range keys {
		if !names[k] {
			return &fault.Error{Kind: fault.Malformed, Message: fmt.Sprintf("unknown field %q", k),
				Fields: []fault.FieldError{{Field: k, Message: "is not a known field"}}}
		}
	}
	return nil
}

var fieldNameCache sync.Map // reflect.Type → map[string]bool

func fieldNames(t reflect.Type) map[string]bool {
	if names, ok := fieldNameCache.Load(t); ok {
		return names.(map[string]bool)
	}
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	fieldNameCache.Store(t, names)
	return names
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return fault.New(fault.Malformed, "the request body is empty; a JSON object is required")
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return fault.New(fault.Malformed, "the request body is not valid JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fault.New(fault.Malformed, "the request body must be a JSON object")
		}
		e := fault.New(fault.Malformed, "field %q must be of type %s", typ.Field, jsonType(typ.Type.String()))
		e.Fields = []fault.FieldError{{Field: typ.Field, Message: "must be of type " + jsonType(typ.Type.String())}}
		return e
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		e := fault.New(fault.Malformed, "unknown field %q", name)
		e.Fields = []fault.FieldError{{Field: name, Message: "is not a known field"}}
		return e
	default:
		return fault.Wrap(fault.Malformed, err, "the request body is not valid JSON for this resource")
	}
}

func jsonType(goType string) string {
	switch {
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "number"
	case strings.Contains(goType, "string"):
		return "string"
	case strings.Contains(goType, "bool"):
		return "boolean"
	case strings.HasPrefix(goType, "[]"):
		return "array"
	default:
		return "object"
	}
}

// WriteJSON sends v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	WriteEncoded(w, status, body)
	return nil
}

// WriteEncoded sends body, a JSON document already encoded, with the given status.
//
// The header keys are written in their canonical form and Content-Type's value
// is one shared slice, which spares every answer two canonicalizations and an
// allocation: a header's value slice is only ever replaced or appended to (which
// copies a full slice), never written in place.
func WriteEncoded(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var contentTypeJSON = []string{MediaJSON}[:1:1]

// ETag returns the entity tag of a resource at version.
func ETag(version int) string { return `"` + strconv.Itoa(version) + `"` }

// NotModified reports whether If-None-Match names the current version.
func NotModified(r *http.Request, version int) bool { return NoneMatch(r, ETag(version)) }

// NoneMatch reports whether the request's If-None-Match names etag (or is "*"), by
// weak comparison (RFC 9110, 13.1.2): a weak tag matches its strong twin.
func NoneMatch(r *http.Request, etag string) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, tag := range strings.Split(inm, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == want {
			return true
		}
	}
	return false
}

// Precondition is what an If-Match header asks of the resource's current version.
type Precondition struct {
	header string
}

// IfMatch reads the If-Match header of r.
func IfMatch(r *http.Request) Precondition { return Precondition{header: r.Header.Get("If-Match")} }

// Present reports whether the request set a condition.
func (p Precondition) Present() bool { return strings.TrimSpace(p.header) != "" }

// Check returns nil when the resource at version satisfies the condition, else a
// PreconditionFailed error. Weak tags never match, as RFC 9110 says for If-Match.
func (p Precondition) Check(version int) error {
	if !p.Present() {
		return nil
	}
	want := ETag(version)
	for _, tag := range strings.Split(p.header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || tag == want {
			return nil
		}
	}
	return fault.New(fault.PreconditionFailed, "the resource is at version %d, which If-Match does not name", version)
}

// Page is one page of a list.
type Page[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// ParsePage reads ?limit= (see ParseLimit) and ?cursor= (as issued by Cursor).
func ParsePage(r *http.Request) (paging.Request, error) {
	q := r.URL.Query()
	limit, err := ParseLimit(q)
	if err != nil {
		return paging.Request{}, err
	}
	p := paging.Request{Limit: limit}
	if c := q.Get("cursor"); c != "" || q.Has("cursor") {
		id, err := paging.ParseCursor(c)
		if err != nil {
			return p, &fault.Error{Kind: fault.Malformed, Message: "cursor was not issued by this service",
				Fields: []fault.FieldError{{Field: "cursor", Message: "was not issued by this service"}}}
		}
		p.After = id
	}
	return p, nil
}

// ParseLimit reads ?limit=: an integer from 1 to 100, 20 when absent. Errors: Malformed.
func ParseLimit(q url.Values) (int, error) {
	if !q.Has("limit") {
		return 20, nil
	}
	n, err := strconv.Atoi(q.Get("limit"))
	if err != nil || n < 1 || n > 100 {
		return 0, &fault.Error{Kind: fault.Malformed, Message: "limit must be an integer from 1 to 100",
			Fields: []fault.FieldError{{Field: "limit", Message: "must be an integer from 1 to 100"}}}
	}
	return n, nil
}

// Cursor returns the opaque cursor of the page that starts after id (paging.Cursor).
func Cursor(id string) string { return paging.Cursor(id) }

// PageOf is the JSON form of p, its Next as an opaque cursor.
func PageOf[T any](p paging.Page[T]) Page[T] {
	out := Page[T]{Items: p.Items}
	if out.Items == nil {
		out.Items = []T{}
	}
	if p.Next != "" {
		c := Cursor(p.Next)
		out.NextCursor = &c
	}
	return out
}
