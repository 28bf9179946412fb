package paging

import (
	"slices"
	"testing"
)

func TestOf(t *testing.T) {
	self := func(s string) string { return s }
	for _, tc := range []struct {
		name      string
		limit     int
		items     []string
		wantItems []string
		wantNext  string
	}{
		{"empty", 2, nil, []string{}, ""},
		{"short", 2, []string{"a"}, []string{"a"}, ""},
		{"exactly the limit", 2, []string{"a", "b"}, []string{"a", "b"}, ""},
		{"one more than the limit", 2, []string{"a", "b", "c"}, []string{"a", "b"}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Of(Request{Limit: tc.limit}, tc.items, self)
			if !slices.Equal(p.Items, tc.wantItems) || p.Next != tc.wantNext {
				t.Errorf("Of(limit %d, %q) = %q next %q, want %q next %q", tc.limit, tc.items, p.Items, p.Next, tc.wantItems, tc.wantNext)
			}
			if p.Items == nil {
				t.Error("Items is nil; a JSON list must be [] not null")
			}
		})
	}
	if got := (Request{Limit: 20}).Fetch(); got != 21 {
		t.Errorf("Fetch() = %d, want 21", got)
	}
}
