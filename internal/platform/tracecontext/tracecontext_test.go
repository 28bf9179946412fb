package tracecontext

import (
	"context"
	"testing"
)

func TestParse(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		in   string
		want string
		ok   bool
	}{
		{valid, valid, true},
		{"  " + valid + " ", valid, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"", "", false},
		{valid + "-extra", "", false}, // version 00 has exactly four fields
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", "", false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", "", false},
	}
	for _, c := range cases {
		got, ok := Parse(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("Parse(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestNew(t *testing.T) {
	a, b := New(), New()
	if a == b {
		t.Fatalf("two New() calls returned the same %q", a)
	}
	for _, tp := range []string{a, b} {
		if got, ok := Parse(tp); !ok || got != tp || tp[:3] != "00-" || tp[53:] != "01" {
			t.Errorf("New() = %q, not a valid sampled version-00 traceparent", tp)
		}
	}
}

func TestContext(t *testing.T) {
	ctx := context.Background()
	if got := From(ctx); got != "" {
		t.Fatalf("From(empty) = %q", got)
	}
	tp := New()
	if got := From(With(ctx, tp)); got != tp {
		t.Fatalf("From(With(tp)) = %q, want %q", got, tp)
	}
}
