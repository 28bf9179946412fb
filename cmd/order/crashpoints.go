//go:build foliocrash

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"folio/internal/order"
	"folio/internal/order/events"
)

// withCrashPoints, in a build with the tag foliocrash (the e2e fault tests build
// one; releases never have it), kills the order service with SIGKILL right after
// a reply's change to one of the states in FOLIO_ORDER_CRASH_AFTER (comma
// separated) has committed: before the broker has the reply's acknowledgement and
// before the relay has sent the next command. Each state crashes once, marked by a
// file of its name in FOLIO_ORDER_CRASH_MARKERS, so that the restarted service
// goes on.
func withCrashPoints(saga events.Saga, getenv func(string) string) events.Saga {
	states := strings.Split(getenv("FOLIO_ORDER_CRASH_AFTER"), ",")
	markers := getenv("FOLIO_ORDER_CRASH_MARKERS")
	if markers == "" || len(states) == 0 {
		return saga
	}
	return crashingSaga{Saga: saga, states: states, markers: markers}
}

type crashingSaga struct {
	events.Saga
	states  []string
	markers string
}

func (c crashingSaga) Observe(ch order.Change) {
	c.Saga.Observe(ch)
	state := string(ch.Order.State)
	if !slices.Contains(c.states, state) {
		return
	}
	f, err := os.OpenFile(filepath.Join(c.markers, state), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return // crashed here once already
	}
	f.Close()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
