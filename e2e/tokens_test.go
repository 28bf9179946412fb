package e2e

import (
	"strings"
	"sync"
	"testing"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
)

// issuers holds each test's token issuer, so that all the programs of one test, and
// its subtests, accept the same tokens.
var issuers sync.Map // test name → *authntest.Issuer

// testIssuer returns the token issuer of t, or of the test t is a subtest of, making
// one for t when there is none. startService gives every program it starts the
// issuer's JWKS (FOLIO_JWKS_URL), unless the test names another.
func testIssuer(t *testing.T) *authntest.Issuer {
	t.Helper()
	for name := t.Name(); ; {
		if iss, ok := issuers.Load(name); ok {
			return iss.(*authntest.Issuer)
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			break
		}
		name = name[:i]
	}
	iss := authntest.New(t)
	issuers.Store(t.Name(), iss)
	t.Cleanup(func() { issuers.Delete(t.Name()) })
	return iss
}

// editorAuth is an Authorization header value with an editor's token from t's
// issuer: what a client that may write books and authors sends.
func editorAuth(t *testing.T) string {
	t.Helper()
	return bearer(testIssuer(t).Token("e2e-editor", authn.RoleEditor))
}

// adminAuth is an Authorization header value with an admin's token from t's issuer.
func adminAuth(t *testing.T) string {
	t.Helper()
	return bearer(testIssuer(t).Token("e2e-admin", authn.RoleAdmin))
}
