package demo

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The limits of the public API contract (api-contract.md) that the catalogue must meet.
const (
	maxName  = 200
	maxBio   = 5000
	maxTitle = 300
	minYear  = -3000
)

var (
	genreSlug = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)
	keySlug   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

func TestCatalogueMeetsTheContract(t *testing.T) {
	authors, err := Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	thisYear := time.Now().Year()
	checkText := func(what, s string, limit int, required bool) {
		t.Helper()
		switch n := utf8.RuneCountInString(s); {
		case required && n == 0:
			t.Errorf("%s is empty", what)
		case n > limit:
			t.Errorf("%s is %d characters, over the limit of %d", what, n, limit)
		}
		if strings.TrimSpace(s) != s || strings.ContainsRune(s, 0) || !utf8.ValidString(s) {
			t.Errorf("%s %q has surrounding spaces, a NUL or bad UTF-8", what, s)
		}
	}

	keys := map[string]bool{}
	genres := map[string]int{}
	books := 0
	for _, a := range authors {
		who := fmt.Sprintf("author %q", a.Key)
		if !keySlug.MatchString(a.Key) || keys[a.Key] {
			t.Errorf("%s: key must be a unique lower-case slug", who)
		}
		keys[a.Key] = true
		checkText(who+" name", a.Name, maxName, true)
		checkText(who+" bio", a.Bio, maxBio, false)
		if a.BirthYear != nil && (*a.BirthYear < minYear || *a.BirthYear > thisYear) {
			t.Errorf("%s: birth_year %d is outside %d..%d", who, *a.BirthYear, minYear, thisYear)
		}
		if len(a.Books) == 0 {
			t.Errorf("%s has no books", who)
		}
		// The longest idempotency key the load makes must fit the contract's 200 chars.
		if key := fmt.Sprintf("demo-book-%s-%d", a.Key, len(a.Books)); len(key) > 200 {
			t.Errorf("%s: idempotency key %q is over 200 characters", who, key)
		}
		for i, b := range a.Books {
			what := fmt.Sprintf("%s book %d", who, i+1)
			checkText(what+" title", b.Title, maxTitle, true)
			if !genreSlug.MatchString(b.Genre) {
				t.Errorf("%s: genre %q is not a valid slug", what, b.Genre)
			}
			genres[b.Genre]++
			if y := b.PublishedYear; y != nil {
				if *y < minYear || *y > thisYear+1 {
					t.Errorf("%s: published_year %d is outside %d..%d", what, *y, minYear, thisYear+1)
				}
				if a.BirthYear != nil && *y < *a.BirthYear {
					t.Errorf("%s: published in %d, before its author was born (%d)", what, *y, *a.BirthYear)
				}
			}
			books++
		}
	}
	if len(authors) < 50 {
		t.Errorf("got %d authors, want at least 50", len(authors))
	}
	if books < 300 {
		t.Errorf("got %d books, want at least 300", books)
	}
	if len(genres) < 12 {
		t.Errorf("got %d genres, want at least 12", len(genres))
	}
	// The example the README and folio up show must find something.
	for _, g := range []string{"science-fiction", "poetry"} {
		if genres[g] == 0 {
			t.Errorf("no book of genre %q, which the docs use as an example", g)
		}
	}
	t.Logf("%d authors, %d books, %d genres", len(authors), books, len(genres))
}

func TestCatalogueReturnsAFreshCopy(t *testing.T) {
	a, err := Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	a[0].Name = "changed"
	b, err := Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	if b[0].Name == "changed" {
		t.Error("a change to what Catalogue returned showed in the next call")
	}
}
