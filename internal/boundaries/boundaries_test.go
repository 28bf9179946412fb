// Package boundaries checks the import rules of Folio's layout (decision 23): a
// service never imports another service's packages, its domain package depends on
// no transport or storage, the platform imports no service, and the tooling of the
// folio command stays apart from both.
package boundaries

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// services are Folio's programs; each owns folio/internal/<name>/... and
// folio/cmd/<name>.
var services = []string{"auth", "author", "book", "gateway", "inventory", "notify", "order", "payment"}

// domains are the services with a domain package, folio/internal/<name>; the
// gateway is transport through and through.
var domains = []string{"auth", "author", "book", "inventory", "notify", "order", "payment"}

// notInDomain are what a domain package may not depend on, even indirectly: the
// transports and storage its adapters (httpapi, sqlstore, events, clients) speak.
var notInDomain = []string{
	"net/http", "database/sql",
	"folio/internal/platform/broker", "folio/internal/platform/sqldb",
	"folio/internal/platform/outbox", "folio/internal/platform/inbox",
	"folio/internal/platform/idempotency", "folio/internal/platform/rest",
	"folio/internal/platform/problem", "folio/internal/platform/httpserver",
	"folio/internal/platform/chassis", "folio/internal/platform/resilient",
}

const devtools = "folio/internal/devtools"

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string
}

// allImports are the packages p and its tests import directly.
func (p pkg) allImports() []string {
	return slices.Concat(p.Imports, p.TestImports, p.XTestImports)
}

func under(path, root string) bool { return path == root || strings.HasPrefix(path, root+"/") }

// owner is the service whose package path is, or "".
func owner(path string) string {
	for _, s := range services {
		if under(path, "folio/internal/"+s) || under(path, "folio/cmd/"+s) {
			return s
		}
	}
	return ""
}

func list(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports,Deps", "folio/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	for _, want := range []string{"folio/internal/book", "folio/internal/platform/chassis", "folio/cmd/folio"} {
		if _, ok := pkgs[want]; !ok {
			t.Fatalf("go list found no %s among %d packages; the checks would prove nothing", want, len(pkgs))
		}
	}
	return pkgs
}

func TestServicesUseEachOtherOnlyOverTheWire(t *testing.T) {
	for path, p := range list(t) {
		from := owner(path)
		for _, imp := range p.allImports() {
			to := owner(imp)
			switch {
			case to == "":
			case under(path, "folio/internal/platform"):
				t.Errorf("platform package %s imports %s, of the %s service", path, imp, to)
			case under(path, devtools):
				t.Errorf("%s, tooling, imports %s, of the %s service: use its HTTP API or events", path, imp, to)
			case from != "" && from != to:
				t.Errorf("%s (of the %s service) imports %s (of the %s service): use its HTTP API or events", path, from, imp, to)
			}
		}
	}
}

func TestDomainsDependOnNoTransportOrStorage(t *testing.T) {
	pkgs := list(t)
	for _, d := range domains {
		path := "folio/internal/" + d
		p, ok := pkgs[path]
		if !ok {
			t.Errorf("no domain package %s", path)
			continue
		}
		for _, dep := range p.Deps {
			if slices.Contains(notInDomain, dep) {
				t.Errorf("the %s domain depends on %s (go list -deps %s); that belongs in one of its adapters", d, dep, path)
			}
		}
	}
}

func TestToolingStaysApart(t *testing.T) {
	for path, p := range list(t) {
		if under(path, devtools) || under(path, "folio/cmd/folio") || path == "folio/e2e" {
			continue
		}
		for _, imp := range p.allImports() {
			if under(imp, devtools) {
				t.Errorf("%s imports %s: only the folio command and the end-to-end tests use the tooling", path, imp)
			}
		}
	}
}
