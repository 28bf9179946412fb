package httpapi

import (
	"fmt"
	"testing"
)

// TestGenreAnswersAreBounded: answers are kept for at most max genres, whatever
// genres clients ask for, and a genre kept is replaced in place.
func TestGenreAnswersAreBounded(t *testing.T) {
	answers := newGenreAnswers(3)
	for i := range 10 {
		answers.put(fmt.Sprintf("genre-%d", i), genreAnswer{body: []byte("{}")})
	}
	if n := len(answers.m); n != 3 {
		t.Fatalf("kept %d answers, want 3", n)
	}
	for g := range answers.m {
		answers.put(g, genreAnswer{body: []byte(`{"again":true}`)})
		if n := len(answers.m); n != 3 {
			t.Fatalf("replacing a kept genre left %d answers, want 3", n)
		}
		if a, ok := answers.get(g); !ok || string(a.body) != `{"again":true}` {
			t.Fatalf("got %q, %v after replacing %s", a.body, ok, g)
		}
		break
	}
}
