package id

import "testing"

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{New(), true},
		{"0190a8a2-7b3c-7def-8123-456789abcdef", true},
		{"0190A8A2-7B3C-7DEF-8123-456789ABCDEF", false}, // upper case names the same UUID twice
		{"{0190a8a2-7b3c-7def-8123-456789abcdef}", false},
		{"0190a8a27b3c7def8123456789abcdef", false},
		{"", false},
		{"../etc/passwd", false},
		{"00000000-0000-0000-0000-000000000000", true},
		{"urn:uuid:0190a8a2-7b3c-7def-8123-456789abcdef", false},
		{"0190a8a2-7b3c-7def-8123-456789abcdef0", false},
		{"0190a8a2-7b3c-7def-8123-456789abcde", false},
		{"0190a8a2-7b3c-7def-8123-456789abcdeg", false},
		{"0190a8a2+7b3c-7def-8123-456789abcdef", false},
		{" 190a8a2-7b3c-7def-8123-456789abcdef", false},
	} {
		if got := Valid(tc.in); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNewIsTimeOrdered(t *testing.T) {
	prev := New()
	for range 1000 {
		next := New()
		if next <= prev {
			t.Fatalf("%s came after %s", next, prev)
		}
		prev = next
	}
}
