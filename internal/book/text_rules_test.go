package book_test

import (
	"slices"
	"testing"

	"folio/internal/book"
)

// invisibleTitles are titles that pass "required" yet show nothing: issue 8, finding
// 10 (names made only of bidi or zero-width characters were accepted).
var invisibleTitles = map[string]string{
	"zero-width space":       "\u200b",
	"zero-width joiners":     "\u200c\u200d\u2060",
	"bidi override":          "\u202e",
	"bidi isolates":          "\u2066\u2067\u2068\u2069",
	"bidi marks":             "\u200e\u200f\u061c",
	"byte order mark":        "\ufeff",
	"hangul filler":          "\u3164",
	"blank braille":          "\u2800",
	"tags":                   "\U000E0041",
	"mixed with spaces":      " \u200b \u202e\u00a0",
	"combining marks alone":  "\u0301",
	"soft hyphen and spaces": "\u00ad \u3000",
}

func TestTitleMustBeVisible(t *testing.T) {
	for name, title := range invisibleTitles {
		t.Run(name, func(t *testing.T) {
			_, err := input(func(in *book.Input) { in.Title = ptr(title) }).Validate(validateNow)
			if got := fieldsOf(t, err); !slices.Equal(got, []string{"title"}) {
				t.Errorf("title %+q: got error fields %v (%v), want [title]", title, got, err)
			}
		})
	}
	for _, title := range []string{"Dune", "1984", "紫式部日記", "\u200fנ\u200f", "a\u200d", "★"} {
		if _, err := input(func(in *book.Input) { in.Title = ptr(title) }).Validate(validateNow); err != nil {
			t.Errorf("title %+q: got %v, want it accepted", title, err)
		}
	}
}
