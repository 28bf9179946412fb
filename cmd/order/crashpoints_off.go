//go:build !foliocrash

package main

import "folio/internal/order/events"

// withCrashPoints returns saga as it is: crash points exist only in builds with
// the tag foliocrash (crashpoints.go), made by the e2e fault tests.
func withCrashPoints(saga events.Saga, _ func(string) string) events.Saga { return saga }
