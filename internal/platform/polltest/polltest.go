// Package polltest waits in tests for a condition to hold, polling it, so that no test
// bets on how long something takes on a loaded machine.
package polltest

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Deadline is how long Until waits: generous on purpose, because a test run on a
// loaded two-core machine (the whole suite, -race, a busy CI runner) is slower by
// orders of magnitude than on an idle laptop, and a condition that holds eventually
// must not fail the test merely because it held late. A condition that never holds
// still fails, only later.
const Deadline = 60 * time.Second

// The interval between checks grows from first to most: a condition that holds at
// once is seen at once, one that takes seconds does not cost a busy loop.
const (
	firstInterval = 10 * time.Millisecond
	mostInterval  = 50 * time.Millisecond
)

// Until calls cond until it returns nil, failing tb with what and cond's last error
// when it has not within Deadline, and returns how long it took (a figure some tests
// log). Like tb.Fatal, it must be called from the goroutine running the test.
func Until(tb testing.TB, what string, cond func() error) time.Duration {
	tb.Helper()
	return UntilWithin(tb, Deadline, what, cond)
}

// UntilWithin is Until with a deadline of the caller's: for a test that must see a
// condition within a bound it proves (say so where it is called), or one that needs
// longer than Deadline.
func UntilWithin(tb testing.TB, d time.Duration, what string, cond func() error) time.Duration {
	tb.Helper()
	took, err := Wait(d, cond)
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
	return took
}

// Wait calls cond until it returns nil or d has passed, and returns how long it
// waited and, when cond never held, an error with cond's last one. It touches no
// testing.TB, so that a goroutine of the test's other than its own (a load
// generator's worker, say) can wait the same way and hand the error back.
func Wait(d time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(d)
	interval := firstInterval
	for {
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		if !time.Now().Before(deadline) {
			took := time.Since(start)
			return took, fmt.Errorf("still not so after %v: %w", took.Round(time.Millisecond), err)
		}
		time.Sleep(min(interval, time.Until(deadline)))
		interval = min(interval*2, mostInterval)
	}
}

// errNotYet is what a Holds condition reports while it is false: the condition is a
// plain yes or no, with nothing more to say about how far it got.
var errNotYet = errors.New("condition false")

// Holds turns a yes-or-no condition into one Until takes. A condition that can say
// what it saw last (a status, a count) is better written returning that as its error.
func Holds(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}
}
