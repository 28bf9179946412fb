package polltest_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/polltest"
)

// recorder is a testing.TB whose Fatalf records the message and ends the goroutine,
// as the real one does, so that a failing Until can be observed.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	polltest.Until(t, "third call", func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3 (once more after it held is one too many)", calls)
	}
}

func TestUntilWithinFailsWithWhatAndTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		polltest.UntilWithin(r, 100*time.Millisecond, "the door opens", func() error {
			calls++
			return fmt.Errorf("closed, check %d", calls)
		})
	}()
	<-done
	if r.msg == "" {
		t.Fatal("UntilWithin returned without failing for a condition that never held")
	}
	for _, want := range []string{"the door opens", fmt.Sprintf("closed, check %d", calls)} {
		if !strings.Contains(r.msg, want) {
			t.Errorf("failure %q does not say %q", r.msg, want)
		}
	}
	if calls < 2 {
		t.Errorf("cond called %d times in 100ms, want it polled", calls)
	}
}

func TestUntilChecksAtLeastOnceWithNoTimeLeft(t *testing.T) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		polltest.UntilWithin(r, 0, "already so", func() error { return nil })
	}()
	<-done
	if r.msg != "" {
		t.Fatalf("a condition holding at the first check failed: %s", r.msg)
	}
}

func TestHoldsTurnsAYesOrNoIntoAnError(t *testing.T) {
	if err := polltest.Holds(func() bool { return true })(); err != nil {
		t.Errorf("true condition: %v, want nil", err)
	}
	if err := polltest.Holds(func() bool { return false })(); err == nil {
		t.Error("false condition: nil, want an error")
	}
}

func TestUntilReturnsHowLongItWaited(t *testing.T) {
	start := time.Now()
	polled := 0
	took := polltest.Until(t, "the second check", func() error {
		if polled++; polled < 2 {
			return errors.New("first check")
		}
		return nil
	})
	if took <= 0 || took > time.Since(start) {
		t.Errorf("Until returned %v, want the time between its start and the condition holding (at most %v)", took, time.Since(start))
	}
}

func TestWaitReportsTheLastErrorWithoutATest(t *testing.T) {
	errClosed := errors.New("closed")
	calls := 0
	took, err := polltest.Wait(50*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("check %d: %w", calls, errClosed)
	})
	if !errors.Is(err, errClosed) {
		t.Fatalf("Wait returned %v, want cond's last error wrapped", err)
	}
	if want := fmt.Sprintf("check %d", calls); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q, the last check", err, want)
	}
	if took < 50*time.Millisecond {
		t.Errorf("Wait gave up after %v, before its 50ms", took)
	}
}

func TestWaitReturnsNilOnceTheConditionHolds(t *testing.T) {
	calls := 0
	if _, err := polltest.Wait(polltest.Deadline, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("Wait = %v after %d calls, want nil after 3", err, calls)
	}
}
