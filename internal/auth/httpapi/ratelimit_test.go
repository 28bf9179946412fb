package httpapi

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiterBoundedMemory(t *testing.T) {
	l := newLimiter(Limit{Every: time.Second, Burst: 2})
	l.max = 100
	now := time.Now()
	for i := range 1000 {
		if r, _ := l.reserve("k"+strconv.Itoa(i), now); r == nil {
			t.Fatalf("first attempt of key %d refused", i)
		}
		if n := l.size(); n > l.max {
			t.Fatalf("after %d keys the limiter holds %d buckets, want at most %d", i+1, n, l.max)
		}
	}
	// Buckets that refilled are dropped first; they hold no information.
	later := now.Add(time.Minute)
	l.reserve("b", later)
	l.reserve("b", later)
	if r, d := l.reserve("b", later); r != nil || d <= 0 {
		t.Fatalf("third attempt within a second: got %v, %s, want a refusal with a wait", r, d)
	}
	for i := range l.max / 2 {
		l.reserve("new"+strconv.Itoa(i), later)
	}
	if n := l.size(); n != l.max/2+1 {
		t.Errorf("the limiter holds %d buckets, want %d: the new ones and b", n, l.max/2+1)
	}
	if r, _ := l.reserve("b", later); r != nil {
		t.Error("b's spent bucket was dropped while full ones were kept")
	}
}

func TestLoginLimiterTakesFromBothOrNeither(t *testing.T) {
	l := &loginLimiter{email: newLimiter(Limit{Every: time.Hour, Burst: 1}), ip: newLimiter(Limit{Every: time.Hour, Burst: 2})}
	now := time.Now()
	if ok, _ := l.allow("a@example.com", "ip", now); !ok {
		t.Fatal("first attempt refused")
	}
	// The email is spent: the refusal must not spend the address's second attempt.
	if ok, wait := l.allow("a@example.com", "ip", now); ok || wait < time.Second {
		t.Fatalf("got %v, %s, want a refusal with a wait of at least 1 s", ok, wait)
	}
	if ok, _ := l.allow("b@example.com", "ip", now); !ok {
		t.Error("the address's second attempt was spent by a refused one")
	}
	if ok, _ := l.allow("c@example.com", "ip", now); ok {
		t.Error("the address's third attempt was allowed")
	}
}
