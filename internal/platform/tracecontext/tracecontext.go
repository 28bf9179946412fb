// Package tracecontext carries a W3C traceparent through a context, so that the
// trace an HTTP request belongs to follows the events it causes.
package tracecontext

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
)

type key struct{}

// Header is the W3C Trace Context header that carries a traceparent.
const Header = "traceparent"

// With returns a copy of ctx carrying the traceparent tp.
func With(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, key{}, tp)
}

// From returns the traceparent carried by ctx, or "".
func From(ctx context.Context) string {
	tp, _ := ctx.Value(key{}).(string)
	return tp
}

// Parse validates a traceparent header (https://www.w3.org/TR/trace-context/) and
// returns it in the version-00 form Folio propagates. A header of a later version is
// accepted as long as its first four fields parse, as the recommendation asks, and
// is cut down to those fields.
func Parse(header string) (string, bool) {
	h := strings.TrimSpace(header)
	if len(h) < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return "", false
	}
	version, traceID, parentID, flags := h[0:2], h[3:35], h[36:52], h[53:55]
	if !isHex(version) || !isHex(traceID) || !isHex(parentID) || !isHex(flags) {
		return "", false
	}
	switch {
	case version == "ff", allZero(traceID), allZero(parentID):
		return "", false
	case version == "00" && len(h) != 55:
		return "", false
	case len(h) > 55 && h[55] != '-':
		return "", false
	}
	return h[:55], true
}

// New returns a fresh traceparent: version 00, a random trace id and parent id,
// and the sampled flag, for a request that arrived without one.
func New() string {
	for {
		var b [24]byte
		_, _ = rand.Read(b[:])
		traceID, parentID := hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
		// All-zero ids are invalid; vanishingly unlikely, but cheap to rule out.
		if !allZero(traceID) && !allZero(parentID) {
			return "00-" + traceID + "-" + parentID + "-01"
		}
	}
}

// isHex reports whether s is lowercase hexadecimal; the format forbids uppercase.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
