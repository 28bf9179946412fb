package rest_test

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
	"folio/internal/platform/rest"
)

func TestParsePage(t *testing.T) {
	newID := id.New()
	tests := []struct {
		query     string
		want      paging.Request
		wantField string // the field a Malformed error names; "" when valid
	}{
		{"", paging.Request{Limit: 20}, ""},
		{"limit=1", paging.Request{Limit: 1}, ""},
		{"limit=100", paging.Request{Limit: 100}, ""},
		{"limit=42&other=x", paging.Request{Limit: 42}, ""},
		{"cursor=" + rest.Cursor(newID), paging.Request{Limit: 20, After: newID}, ""},
		{"limit=5&cursor=" + rest.Cursor(newID), paging.Request{Limit: 5, After: newID}, ""},
		{"limit=0", paging.Request{}, "limit"},
		{"limit=101", paging.Request{}, "limit"},
		{"limit=-1", paging.Request{}, "limit"},
		{"limit=abc", paging.Request{}, "limit"},
		{"limit=", paging.Request{}, "limit"},
		{"limit", paging.Request{}, "limit"},
		{"limit=2.5", paging.Request{}, "limit"},
		{"limit=99999999999999999999", paging.Request{}, "limit"},
		{"cursor=", paging.Request{}, "cursor"},
		{"cursor=abc", paging.Request{}, "cursor"},
		{"cursor=" + newID, paging.Request{}, "cursor"},
		{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte("c1:"+strings.ToUpper(newID))), paging.Request{}, "cursor"},
		{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte("c0:"+newID)), paging.Request{}, "cursor"},
		{"cursor=" + rest.Cursor(newID) + "%3D", paging.Request{}, "cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := rest.ParsePage(httptest.NewRequest(http.MethodGet, "/things?"+tt.query, nil))
			if tt.wantField == "" {
				if err != nil || got != tt.want {
					t.Errorf("got %+v, %v; want %+v, nil", got, err, tt.want)
				}
				return
			}
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Malformed {
				t.Fatalf("got %v, want a Malformed error", err)
			}
			if len(fe.Fields) != 1 || fe.Fields[0].Field != tt.wantField {
				t.Errorf("got fields %v, want one naming %s", fe.Fields, tt.wantField)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for range 100 {
		want := id.New()
		c := rest.Cursor(want)
		if strings.Contains(c, want) || strings.ContainsAny(c, "+/=") {
			t.Fatalf("cursor %q shows the id or is not URL-safe", c)
		}
		p, err := rest.ParsePage(httptest.NewRequest(http.MethodGet, "/things?cursor="+c, nil))
		if err != nil || p.After != want {
			t.Fatalf("cursor of %s: got %q, %v; want the id back", want, p.After, err)
		}
	}
}

// TestPageOf: the next cursor, when a page has one, points after the last item
// shown; a page without more has none, and never a null list.
func TestPageOf(t *testing.T) {
	last := id.New()
	for _, tt := range []struct {
		name       string
		page       paging.Page[string]
		wantCursor bool
	}{
		{"nil items, last page", paging.Page[string]{}, false},
		{"a last page", paging.Page[string]{Items: []string{last}}, false},
		{"a page with more", paging.Page[string]{Items: []string{last}, Next: last}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := rest.PageOf(tt.page)
			if p.Items == nil {
				t.Fatal("items are nil; a JSON list must be [] not null")
			}
			if (p.NextCursor != nil) != tt.wantCursor {
				t.Fatalf("got cursor %v, want one: %v", p.NextCursor, tt.wantCursor)
			}
			if p.NextCursor != nil {
				got, err := rest.ParsePage(httptest.NewRequest(http.MethodGet, "/?cursor="+*p.NextCursor, nil))
				if err != nil || got.After != last {
					t.Errorf("next cursor points after %q (%v), want %q", got.After, err, last)
				}
			}
		})
	}
}

func TestNotModified(t *testing.T) {
	tests := []struct {
		ifNoneMatch string
		want        bool
	}{
		{"", false},
		{`"3"`, true},
		{`W/"3"`, true}, // If-None-Match compares weakly
		{`"1", "3"`, true},
		{`"1","3"`, true},
		{` "1" , W/"3" `, true},
		{`*`, true},
		{`"1", "2"`, false},
		{`"33"`, false},
		{`3`, false},
		{`"3`, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.ifNoneMatch != "" {
			r.Header.Set("If-None-Match", tt.ifNoneMatch)
		}
		if got := rest.NotModified(r, 3); got != tt.want {
			t.Errorf("If-None-Match %q at version 3: got %v, want %v", tt.ifNoneMatch, got, tt.want)
		}
	}
}

func TestIfMatch(t *testing.T) {
	tests := []struct {
		ifMatch string
		present bool
		ok      bool
	}{
		{"", false, true},
		{"  ", false, true},
		{`"3"`, true, true},
		{`*`, true, true},
		{`"1", "3"`, true, true},
		{`"1","3"`, true, true},
		{` "3" `, true, true},
		{`W/"3"`, true, false}, // weak tags never match If-Match
		{`"1", W/"3"`, true, false},
		{`"2"`, true, false},
		{`"33"`, true, false},
		{`3`, true, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPut, "/", nil)
		if tt.ifMatch != "" {
			r.Header.Set("If-Match", tt.ifMatch)
		}
		p := rest.IfMatch(r)
		if p.Present() != tt.present {
			t.Errorf("If-Match %q: Present got %v, want %v", tt.ifMatch, p.Present(), tt.present)
		}
		err := p.Check(3)
		if tt.ok && err != nil {
			t.Errorf("If-Match %q at version 3: got %v, want nil", tt.ifMatch, err)
		}
		if !tt.ok && fault.KindOf(err) != fault.PreconditionFailed {
			t.Errorf("If-Match %q at version 3: got %v, want PreconditionFailed", tt.ifMatch, err)
		}
	}
	if got := rest.ETag(12); got != `"12"` {
		t.Errorf(`ETag(12): got %s, want "12"`, got)
	}
}

type thing struct {
	Name  *string  `json:"name"`
	Count *int     `json:"count"`
	Tags  []string `json:"tags"`
	Inner *struct {
		On bool `json:"on"`
	} `json:"inner"`
}

func TestDecodeBytes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantKind  fault.Kind // Internal means no error
		wantField string
	}{
		{"valid", `{"name":"x","count":1,"tags":["a"],"inner":{"on":true}}`, fault.Internal, ""},
		{"empty object", `{}`, fault.Internal, ""},
		{"trailing whitespace", "{}\n\t ", fault.Internal, ""},
		{"empty", ``, fault.Malformed, ""},
		{"whitespace", " \n", fault.Malformed, ""},
		{"syntax error", `{"name":}`, fault.Malformed, ""},
		{"truncated", `{"name":"x"`, fault.Malformed, ""},
		{"unknown field", `{"nope":1}`, fault.Malformed, "nope"},
		{"wrong type string", `{"name":1}`, fault.Malformed, "name"},
		{"wrong type number", `{"count":"1"}`, fault.Malformed, "count"},
		{"fraction for an integer", `{"count":1.5}`, fault.Malformed, "count"},
		{"wrong type array", `{"tags":"a"}`, fault.Malformed, "tags"},
		{"wrong type nested", `{"inner":{"on":"yes"}}`, fault.Malformed, "inner.on"},
		{"array", `[]`, fault.Malformed, ""},
		{"string", `"x"`, fault.Malformed, ""},
		{"number", `1`, fault.Malformed, ""},
		{"null", `null`, fault.Malformed, ""},
		{"null with spaces", " null\n", fault.Malformed, ""},
		{"two values", `{}{}`, fault.Malformed, ""},
		{"trailing garbage", `{} x`, fault.Malformed, ""},
		{"trailing bracket", `{}]`, fault.Malformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst thing
			err := rest.DecodeBytes([]byte(tt.body), &dst)
			if tt.wantKind == fault.Internal {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != tt.wantKind {
				t.Fatalf("got %v, want a fault of kind %v", err, tt.wantKind)
			}
			var fields []string
			for _, f := range fe.Fields {
				fields = append(fields, f.Field)
			}
			if tt.wantField == "" && len(fields) != 0 || tt.wantField != "" && !slices.Equal(fields, []string{tt.wantField}) {
				t.Errorf("got fields %v, want %q", fields, tt.wantField)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"name":"`+strings.Repeat("x", 100)+`"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Body = http.MaxBytesReader(rec, r.Body, 50)
	var dst thing
	if err := rest.Decode(r, &dst); fault.KindOf(err) != fault.TooLarge {
		t.Errorf("got %v, want TooLarge", err)
	}

	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"name":"x"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Body = http.MaxBytesReader(rec, r.Body, 50)
	if err := rest.Decode(r, &dst); err != nil || *dst.Name != "x" {
		t.Errorf("got %v, want the body read", err)
	}
}

// TestContentType: a body that is not JSON is refused before it is read, since a
// browser sends text/plain, form and multipart bodies cross-site without asking.
func TestContentType(t *testing.T) {
	for _, tc := range []struct {
		method, contentType, body string
		want                      bool // accepted
	}{
		{"POST", "application/json", `{"name":"x"}`, true},
		{"POST", "application/json; charset=utf-8", `{"name":"x"}`, true},
		{"POST", "Application/JSON; charset=UTF-8", `{"name":"x"}`, true},
		{"PUT", "application/json", `{"name":"x"}`, true},
		{"PATCH", "application/merge-patch+json", `{"name":"x"}`, true},
		{"PATCH", "application/json", `{"name":"x"}`, true},
		{"POST", "", "", true}, // no body: nothing to refuse
		{"POST", "text/plain", `{"name":"x"}`, false},
		{"POST", "text/plain;charset=UTF-8", `{"name":"x"}`, false},
		{"POST", "application/x-www-form-urlencoded", `{"name":"x"}`, false},
		{"POST", "multipart/form-data; boundary=x", `{"name":"x"}`, false},
		{"POST", "", `{"name":"x"}`, false},
		{"POST", "application/merge-patch+json", `{"name":"x"}`, false},
		{"PUT", "application/merge-patch+json", `{"name":"x"}`, false},
		{"POST", "application/json; charset=iso-8859-1", `{"name":"x"}`, false},
		{"POST", "application/jsonx", `{"name":"x"}`, false},
		{"POST", "application/json;;", `{"name":"x"}`, false},
		{"POST", "application/vnd.api+json", `{"name":"x"}`, false},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		r := httptest.NewRequest(tc.method, "/", body)
		if tc.contentType != "" {
			r.Header.Set("Content-Type", tc.contentType)
		}
		_, err := rest.ReadBody(r)
		if tc.want && err != nil {
			t.Errorf("%s %q: got %v, want the body read", tc.method, tc.contentType, err)
		}
		if !tc.want && fault.KindOf(err) != fault.UnsupportedMedia {
			t.Errorf("%s %q: got %v, want UnsupportedMedia", tc.method, tc.contentType, err)
		}
	}
	// Chunked: the length is unknown (-1), and still the type is checked.
	r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "text/plain")
	if err := rest.Decode(r, &thing{}); fault.KindOf(err) != fault.UnsupportedMedia {
		t.Errorf("chunked text/plain: got %v, want UnsupportedMedia", err)
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := rest.WriteJSON(rec, http.StatusCreated, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusCreated || rec.Body.String() != `{"a":1}` ||
		rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Content-Length") != "7" {
		t.Errorf("got %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if err := rest.WriteJSON(httptest.NewRecorder(), http.StatusOK, func() {}); err == nil {
		t.Error("got nil writing a func, want an error")
	}
}

func TestDecodeBytesFieldNamesAreCaseSensitive(t *testing.T) {
	var dst struct {
		Title string `json:"title"`
	}
	if err := rest.DecodeBytes([]byte(`{"title":"x"}`), &dst); err != nil {
		t.Fatalf("exact name: got %v, want nil", err)
	}
	err := rest.DecodeBytes([]byte(`{"TITLE":"x"}`), &dst)
	if got := fault.KindOf(err); got != fault.Malformed {
		t.Fatalf("upper-case name: got kind %v (%v), want Malformed", got, err)
	}
}
