package book_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/platform/fault"
)

const authorA = booktest.AuthorA

func ptr[T any](v T) *T { return &v }

var show = booktest.Show[int]

// validateNow is the clock of the validation tests: "next year" is 2026.
var validateNow = time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)

// input returns a valid input changed by edit.
func input(edit func(in *book.Input)) book.Input {
	in := book.Input{Title: ptr("Dune"), AuthorID: ptr(authorA), Genre: ptr("science-fiction")}
	if edit != nil {
		edit(&in)
	}
	return in
}

// fieldsOf returns the fields an Invalid error names, or fails the test when err is
// another kind of error.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Invalid {
		t.Fatalf("got error %v, want an Invalid fault", err)
	}
	var names []string
	for _, f := range fe.Fields {
		if f.Message == "" {
			t.Errorf("field %s has no message", f.Field)
		}
		names = append(names, f.Field)
	}
	return names
}

func TestInputValidate(t *testing.T) {
	tests := []struct {
		name       string
		in         book.Input
		wantFields []string               // the fields named by the error; nil when valid
		check      func(book.Book) string // for valid inputs: "" or what is wrong
	}{
		// title
		{"valid", input(nil), nil, func(b book.Book) string {
			if b.Title != "Dune" || b.AuthorID != authorA || b.Genre != "science-fiction" || b.ISBN != nil || b.PublishedYear != nil {
				return fmt.Sprintf("got %+v", b)
			}
			return ""
		}},
		{"title missing", input(func(in *book.Input) { in.Title = nil }), []string{"title"}, nil},
		{"title empty", input(func(in *book.Input) { in.Title = ptr("") }), []string{"title"}, nil},
		{"title only spaces", input(func(in *book.Input) { in.Title = ptr(" \t\n ") }), []string{"title"}, nil},
		{"title trimmed", input(func(in *book.Input) { in.Title = ptr("  Dune \n") }), nil, wantTitle("Dune")},
		{"title 300 ascii", input(func(in *book.Input) { in.Title = ptr(strings.Repeat("a", 300)) }), nil, wantTitle(strings.Repeat("a", 300))},
		{"title 301 ascii", input(func(in *book.Input) { in.Title = ptr(strings.Repeat("a", 301)) }), []string{"title"}, nil},
		{"title 300 multibyte", input(func(in *book.Input) { in.Title = ptr(strings.Repeat("é", 300)) }), nil, wantTitle(strings.Repeat("é", 300))},
		{"title 300 four-byte runes", input(func(in *book.Input) { in.Title = ptr(strings.Repeat("📚", 300)) }), nil, wantTitle(strings.Repeat("📚", 300))},
		{"title 301 multibyte", input(func(in *book.Input) { in.Title = ptr(strings.Repeat("é", 301)) }), []string{"title"}, nil},
		{"title 300 after trimming", input(func(in *book.Input) { in.Title = ptr("  " + strings.Repeat("ß", 300) + "  ") }), nil, wantTitle(strings.Repeat("ß", 300))},
		{"title with NUL", input(func(in *book.Input) { in.Title = ptr("Du\x00ne") }), []string{"title"}, nil},

		// author_id
		{"author_id missing", input(func(in *book.Input) { in.AuthorID = nil }), []string{"author_id"}, nil},
		{"author_id empty", input(func(in *book.Input) { in.AuthorID = ptr("") }), []string{"author_id"}, nil},
		{"author_id not an id", input(func(in *book.Input) { in.AuthorID = ptr("abc") }), []string{"author_id"}, nil},
		{"author_id upper-case", input(func(in *book.Input) { in.AuthorID = ptr(strings.ToUpper(authorA)) }), []string{"author_id"}, nil},
		{"author_id without hyphens", input(func(in *book.Input) { in.AuthorID = ptr(strings.ReplaceAll(authorA, "-", "")) }), []string{"author_id"}, nil},
		{"author_id in braces", input(func(in *book.Input) { in.AuthorID = ptr("{" + authorA + "}") }), []string{"author_id"}, nil},
		{"author_id trimmed", input(func(in *book.Input) { in.AuthorID = ptr(" " + authorA + " ") }), nil, func(b book.Book) string {
			if b.AuthorID != authorA {
				return fmt.Sprintf("author_id: got %q, want %q", b.AuthorID, authorA)
			}
			return ""
		}},

		// genre
		{"genre missing", input(func(in *book.Input) { in.Genre = nil }), []string{"genre"}, nil},
		{"genre empty", input(func(in *book.Input) { in.Genre = ptr("") }), []string{"genre"}, nil},
		{"genre one letter", input(func(in *book.Input) { in.Genre = ptr("a") }), nil, wantGenre("a")},
		{"genre with digits", input(func(in *book.Input) { in.Genre = ptr("poetry-20th-c") }), nil, wantGenre("poetry-20th-c")},
		{"genre 40 chars", input(func(in *book.Input) { in.Genre = ptr("g" + strings.Repeat("x", 39)) }), nil, wantGenre("g" + strings.Repeat("x", 39))},
		{"genre 41 chars", input(func(in *book.Input) { in.Genre = ptr("g" + strings.Repeat("x", 40)) }), []string{"genre"}, nil},
		{"genre upper-case", input(func(in *book.Input) { in.Genre = ptr("Fantasy") }), []string{"genre"}, nil},
		{"genre leading digit", input(func(in *book.Input) { in.Genre = ptr("1984") }), []string{"genre"}, nil},
		{"genre leading hyphen", input(func(in *book.Input) { in.Genre = ptr("-poetry") }), []string{"genre"}, nil},
		{"genre underscore", input(func(in *book.Input) { in.Genre = ptr("science_fiction") }), []string{"genre"}, nil},
		{"genre inner space", input(func(in *book.Input) { in.Genre = ptr("science fiction") }), []string{"genre"}, nil},
		{"genre non-ascii", input(func(in *book.Input) { in.Genre = ptr("poésie") }), []string{"genre"}, nil},
		{"genre trimmed", input(func(in *book.Input) { in.Genre = ptr("  fantasy\t") }), nil, wantGenre("fantasy")},

		// isbn
		{"isbn absent", input(func(in *book.Input) { in.ISBN = nil }), nil, wantISBN("")},
		{"isbn empty means absent", input(func(in *book.Input) { in.ISBN = ptr("") }), nil, wantISBN("")},
		{"isbn blank means absent", input(func(in *book.Input) { in.ISBN = ptr("   ") }), nil, wantISBN("")},
		{"isbn-10", input(func(in *book.Input) { in.ISBN = ptr("0306406152") }), nil, wantISBN("9780306406157")},
		{"isbn-10 hyphenated", input(func(in *book.Input) { in.ISBN = ptr("0-306-40615-2") }), nil, wantISBN("9780306406157")},
		{"isbn-10 X check digit", input(func(in *book.Input) { in.ISBN = ptr("0-8044-2957-X") }), nil, wantISBN("9780804429573")},
		{"isbn-10 spaces", input(func(in *book.Input) { in.ISBN = ptr("99921 58 10 7") }), nil, wantISBN("9789992158104")},
		{"isbn-13 978", input(func(in *book.Input) { in.ISBN = ptr("978-3-16-148410-0") }), nil, wantISBN("9783161484100")},
		{"isbn-13 979", input(func(in *book.Input) { in.ISBN = ptr("979-10-90636-07-1") }), nil, wantISBN("9791090636071")},
		{"isbn-13 trimmed", input(func(in *book.Input) { in.ISBN = ptr(" 9783161484100 ") }), nil, wantISBN("9783161484100")},
		{"isbn-10 wrong check digit", input(func(in *book.Input) { in.ISBN = ptr("0-306-40615-3") }), []string{"isbn"}, nil},
		{"isbn-10 X not last", input(func(in *book.Input) { in.ISBN = ptr("0-306-4061X-2") }), []string{"isbn"}, nil},
		{"isbn-13 wrong check digit", input(func(in *book.Input) { in.ISBN = ptr("978-3-16-148410-1") }), []string{"isbn"}, nil},
		{"isbn-13 not 978 or 979", input(func(in *book.Input) { in.ISBN = ptr("9771234567898") }), []string{"isbn"}, nil},
		{"isbn 9 digits", input(func(in *book.Input) { in.ISBN = ptr("030640615") }), []string{"isbn"}, nil},
		{"isbn 11 digits", input(func(in *book.Input) { in.ISBN = ptr("03064061520") }), []string{"isbn"}, nil},
		{"isbn 12 digits", input(func(in *book.Input) { in.ISBN = ptr("978316148410") }), []string{"isbn"}, nil},
		{"isbn 14 digits", input(func(in *book.Input) { in.ISBN = ptr("97831614841000") }), []string{"isbn"}, nil},
		{"isbn letters", input(func(in *book.Input) { in.ISBN = ptr("978-3-16-14841A-0") }), []string{"isbn"}, nil},
		{"isbn hyphens only", input(func(in *book.Input) { in.ISBN = ptr("---") }), []string{"isbn"}, nil},

		// published_year
		{"year absent", input(func(in *book.Input) { in.PublishedYear = nil }), nil, nil},
		{"year -3000", input(func(in *book.Input) { in.PublishedYear = ptr(-3000) }), nil, wantYear(-3000)},
		{"year -3001", input(func(in *book.Input) { in.PublishedYear = ptr(-3001) }), []string{"published_year"}, nil},
		{"year 0", input(func(in *book.Input) { in.PublishedYear = ptr(0) }), nil, wantYear(0)},
		{"year this year", input(func(in *book.Input) { in.PublishedYear = ptr(2025) }), nil, wantYear(2025)},
		{"year next year", input(func(in *book.Input) { in.PublishedYear = ptr(2026) }), nil, wantYear(2026)},
		{"year next year + 1", input(func(in *book.Input) { in.PublishedYear = ptr(2027) }), []string{"published_year"}, nil},

		// several at once: every broken field is named
		{"everything broken", book.Input{Title: ptr(""), AuthorID: ptr("x"), Genre: ptr("X"), ISBN: ptr("123"), PublishedYear: ptr(99999)},
			[]string{"title", "author_id", "genre", "isbn", "published_year"}, nil},
		{"empty input", book.Input{}, []string{"title", "author_id", "genre"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.in.Validate(validateNow)
			if got := fieldsOf(t, err); strings.Join(got, ",") != strings.Join(tt.wantFields, ",") {
				t.Fatalf("got error fields %v (%v), want %v", got, err, tt.wantFields)
			}
			if err == nil && tt.check != nil {
				if msg := tt.check(b); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

func wantTitle(want string) func(book.Book) string {
	return func(b book.Book) string {
		if b.Title != want {
			return fmt.Sprintf("title: got %q, want %q", b.Title, want)
		}
		return ""
	}
}

func wantGenre(want string) func(book.Book) string {
	return func(b book.Book) string {
		if b.Genre != want {
			return fmt.Sprintf("genre: got %q, want %q", b.Genre, want)
		}
		return ""
	}
}

// wantISBN checks the normalised ISBN; "" means none.
func wantISBN(want string) func(book.Book) string {
	return func(b book.Book) string {
		got := ""
		if b.ISBN != nil {
			got = *b.ISBN
			if got == "" {
				return "isbn: got a pointer to \"\", want nil for an absent isbn"
			}
		}
		if got != want {
			return fmt.Sprintf("isbn: got %q, want %q", got, want)
		}
		return ""
	}
}

func wantYear(want int) func(book.Book) string {
	return func(b book.Book) string {
		if b.PublishedYear == nil || *b.PublishedYear != want {
			return fmt.Sprintf("published_year: got %s, want %d", show(b.PublishedYear), want)
		}
		return ""
	}
}

func TestNormalizeISBN(t *testing.T) {
	tests := []struct {
		in, want string // want "" means rejected
	}{
		{"0-306-40615-2", "9780306406157"},
		{"0306406152", "9780306406157"},
		{"978-0-306-40615-7", "9780306406157"},
		{"978-3-16-148410-0", "9783161484100"},
		{"9783161484100", "9783161484100"},
		{"978 3 16 148410 0", "9783161484100"},
		{"0-8044-2957-X", "9780804429573"},
		{"0-8044-2957-x", "9780804429573"},
		{"99921-58-10-7", "9789992158104"},
		{"979-10-90636-07-1", "9791090636071"},
		{"0-306-40615-3", ""},     // wrong check digit
		{"978-3-16-148410-9", ""}, // wrong check digit
		{"X-306-40615-2", ""},     // X only as the check digit
		{"9771234567898", ""},     // valid EAN-13, not an ISBN
		{"0-306-40615", ""},
		{"978-3-16-148410", ""},
		{"978-3-16-148410-00", ""},
		{"97831614841O0", ""}, // letter O for zero
		{"", ""},
		{"٠٣٠٦٤٠٦١٥٢", ""}, // Arabic-Indic digits
		{"0_306_40615_2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := book.NormalizeISBN(tt.in)
			switch {
			case tt.want == "" && err == nil:
				t.Errorf("got %q, want an error", got)
			case tt.want != "" && err != nil:
				t.Errorf("got error %v, want %q", err, tt.want)
			case got != tt.want:
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// validISBN13 reports whether s is 13 digits starting 978 or 979 with a right check digit,
// computed here independently of the code under test.
func validISBN13(s string) bool {
	if len(s) != 13 || (!strings.HasPrefix(s, "978") && !strings.HasPrefix(s, "979")) {
		return false
	}
	sum := 0
	for i, c := range s {
		if c < '0' || c > '9' {
			return false
		}
		w := 1
		if i%2 == 1 {
			w = 3
		}
		sum += w * int(c-'0')
	}
	return sum%10 == 0
}

func FuzzNormalizeISBN(f *testing.F) {
	for _, s := range []string{"0-306-40615-2", "978-3-16-148410-0", "0-8044-2957-X", "979-10-90636-07-1",
		"9771234567898", "0306406153", "", "---", "97831614841000", "0-306-4061X-2", "é01234567"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := book.NormalizeISBN(s)
		if err != nil {
			if got != "" {
				t.Errorf("NormalizeISBN(%q) failed but returned %q", s, got)
			}
			return
		}
		if !validISBN13(got) {
			t.Fatalf("NormalizeISBN(%q) = %q, want 13 digits starting 978/979 with a valid check digit", s, got)
		}
		again, err := book.NormalizeISBN(got)
		if err != nil || again != got {
			t.Errorf("NormalizeISBN(%q) = %q, %v; want %q, nil", got, again, err, got)
		}
	})
}
