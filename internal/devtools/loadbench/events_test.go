package loadbench

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}, {90, 90 * time.Millisecond}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	three := []time.Duration{1, 2, 3}
	if got := percentile(three, 50); got != 2 {
		t.Errorf("percentile(1,2,3, 50) = %v, want 2", got)
	}
	if got := percentile(three, 99); got != 3 {
		t.Errorf("percentile(1,2,3, 99) = %v, want 3", got)
	}
}

func TestMatchLatencies(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	sent := [][]time.Time{
		{at(0), at(10), at(20)}, // author 0: three 201s
		{at(5)},                 // author 1: one, counted before its 201 came
		{at(7), at(9)},          // author 2: the second never counted
	}
	applied := [][]time.Time{
		{at(30), at(30), at(45)},
		{at(4)},
		{at(50)},
	}
	lat, unmatched := matchLatencies(sent, applied)
	want := []time.Duration{0, 20 * time.Millisecond, 25 * time.Millisecond, 30 * time.Millisecond, 43 * time.Millisecond}
	if !slices.Equal(lat, want) || unmatched != 1 {
		t.Errorf("matchLatencies = %v, %d unmatched; want %v, 1", lat, unmatched, want)
	}
}

func TestRabbitQueues(t *testing.T) {
	qs := rabbitQueues("p")
	for _, want := range []string{"p.author-books", "p.deadletter.author-books", "p.author-books.retry.200ms",
		"p.author-books.retry.6400ms", "p.book-authors", "p.deadletter.book-authors"} {
		if !slices.Contains(qs, want) {
			t.Errorf("rabbitQueues(p) = %v, lacks %s", qs, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("amqp://guest:secret@127.0.0.1:5672/"); got != "amqp://guest:***@127.0.0.1:5672/" {
		t.Errorf("redactURL = %s", got)
	}
}
