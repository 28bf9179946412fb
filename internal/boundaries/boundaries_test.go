// Package boundaries checks the import rules that keep Folio's services independent:
// a service never imports another service's package, and the platform imports no
// service at all.
package boundaries

import (
	"os/exec"
	"strings"
	"testing"
)

// services are the packages that belong to one service each; a client package
// belongs to the service that calls it.
var services = map[string][]string{
	"book":    {"folio/internal/book", "folio/cmd/book", "folio/internal/authorclient"},
	"author":  {"folio/internal/author", "folio/cmd/author", "folio/internal/bookclient"},
	"auth":    {"folio/internal/auth", "folio/cmd/auth"},
	"gateway": {"folio/internal/gateway", "folio/cmd/gateway"},
}

// own is each service's own code, which no other service may import.
var own = map[string]string{
	"book":    "folio/internal/book",
	"author":  "folio/internal/author",
	"auth":    "folio/internal/auth",
	"gateway": "folio/internal/gateway",
}

func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "folio/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		deps[fields[0]] = fields[1:]
	}
	if len(deps) < 5 {
		t.Fatalf("go list found only %d packages; the check would prove nothing", len(deps))
	}
	owner := func(pkg string) string {
		for svc, pkgs := range services {
			for _, p := range pkgs {
				if pkg == p || strings.HasPrefix(pkg, p+"/") {
					return svc
				}
			}
		}
		return ""
	}
	for pkg, ds := range deps {
		from := owner(pkg)
		for _, d := range ds {
			for svc, code := range own {
				if d != code && !strings.HasPrefix(d, code+"/") {
					continue
				}
				switch {
				case strings.HasPrefix(pkg, "folio/internal/platform/"):
					t.Errorf("platform package %s imports service package %s", pkg, d)
				case from != "" && from != svc:
					t.Errorf("%s (of the %s service) imports %s (of the %s service); use its HTTP API or events", pkg, from, d, svc)
				}
			}
		}
	}
}
