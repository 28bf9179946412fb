// Package contracts tests scripts/contract-gates, the CI step that fails a change
// breaking a published contract (the services' OpenAPI documents, the protobuf
// contracts under proto/). Each case commits a change in a clone of the repository
// and runs the real script, with the real buf and oasdiff, against the commit before.
package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	gate         = "scripts/contract-gates"
	bookDocument = "internal/book/httpapi/openapi.json"
	bookProto    = "proto/folio/book/v1/book.proto"
)

// verdict is one check's line of the gate's output.
type verdict struct{ status, why string }

// TestContractGatesReplayChanges replays, in a clone, a breaking change to each kind
// of contract (the gate must fail and name it), compatible changes (it must pass),
// and breaking changes that move to a new major version (it must pass). One gate
// run per case: each costs buf's lint, generate and breaking passes.
func TestContractGatesReplayChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and runs buf and oasdiff; skipped with -short")
	}
	root := repoRoot(t)
	bin := toolsBin(t, root)

	t.Run("breaking changes fail the gate", func(t *testing.T) {
		clone, base := cloneAt(t, root)
		editDocument(t, clone, bookDocument, func(doc map[string]any) {
			// A required field of a response goes: clients reading it break.
			page := dig(t, doc, "components", "schemas", "BookPage")
			delete(dig(t, page, "properties"), "next_cursor")
			page["required"] = []any{"items"}
		})
		// A field renumbered: every message on the wire reads differently.
		editFile(t, clone, bookProto, "string title = 2;", "string title = 12;")
		commit(t, clone, bin, "break the book contracts")

		out, err := runGate(t, clone, bin, "FOLIO_CONTRACT_BASE="+base)
		if err == nil {
			t.Fatalf("the gate passed breaking changes:\n%s", out)
		}
		got := verdicts(out)
		wantStatus(t, got, bookDocument, "FAIL", "breaking changes without a new major version", out)
		wantStatus(t, got, "buf breaking", "FAIL", "folio.book.v1 is still published and broke", out)
		if !strings.Contains(out, "next_cursor") || !strings.Contains(out, `"title"`) {
			t.Errorf("the gate's details name neither the removed property nor the renumbered field:\n%s", out)
		}
		// Only the broken contracts fail: the generated code was regenerated and the
		// other documents did not change.
		for check, v := range got {
			if v.status == "FAIL" && check != bookDocument && check != "buf breaking" {
				t.Errorf("%s failed too (%s):\n%s", check, v.why, out)
			}
		}
	})

	t.Run("compatible changes pass the gate", func(t *testing.T) {
		clone, base := cloneAt(t, root)
		editDocument(t, clone, bookDocument, func(doc map[string]any) {
			// A new path and a new optional query parameter break no client.
			paths := dig(t, doc, "paths")
			paths["/books/{id}/cover"] = map[string]any{"get": map[string]any{
				"operationId": "getBookCover",
				"parameters":  []any{map[string]any{"$ref": "#/components/parameters/ID"}},
				"responses":   map[string]any{"200": map[string]any{"description": "The cover"}},
			}}
			list := dig(t, paths, "/books", "get")
			list["parameters"] = append(list["parameters"].([]any),
				map[string]any{"name": "title", "in": "query", "schema": map[string]any{"type": "string"}})
		})
		// A new field on a new number: old readers skip it.
		editFile(t, clone, bookProto, "string title = 2;", "string title = 2;\n  string subtitle = 20;")
		commit(t, clone, bin, "compatible additions to the book contracts")

		out, err := runGate(t, clone, bin, "FOLIO_CONTRACT_BASE="+base)
		if err != nil {
			t.Fatalf("the gate failed compatible changes (%v):\n%s", err, out)
		}
		got := verdicts(out)
		wantStatus(t, got, bookDocument, "PASS", "no breaking change", out)
		wantStatus(t, got, "buf breaking", "PASS", "no breaking change", out)
		wantStatus(t, got, "generated code at HEAD", "PASS", "", out)
	})

	t.Run("breaking changes with a new major version pass the gate", func(t *testing.T) {
		clone, base := cloneAt(t, root)
		editDocument(t, clone, bookDocument, func(doc map[string]any) {
			delete(dig(t, doc, "paths", "/books/{id}"), "delete")
			dig(t, doc, "info")["version"] = "2.0.0"
		})
		// folio.book.v1 replaced by folio.book.v2, its generated code moved with it.
		moveProtoToV2(t, clone)
		commit(t, clone, bin, "book contracts 2.0")
		// The base found as the newest release tag this time, not given.
		git(t, clone, "tag", "v1.1.0", base)

		out, err := runGate(t, clone, bin)
		if err != nil {
			t.Fatalf("the gate failed breaking changes that moved to a new major version (%v):\n%s", err, out)
		}
		if want := "base " + base[:7] + ": release tag v1.1.0"; !strings.Contains(out, want) {
			t.Errorf("the gate did not take the release tag v1.1.0 as its base (want %q):\n%s", want, out)
		}
		got := verdicts(out)
		wantStatus(t, got, bookDocument, "PASS", "the major version moved", out)
		wantStatus(t, got, "buf breaking", "PASS", "folio.book.v1 moved to folio.book.v2", out)
	})
}

// repoRoot is the top of the repository the test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("the contract gates work on a git checkout: git rev-parse: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// toolsBin is where buf and its plugins are built once for every run, the
// directory scripts/buf uses unless FOLIO_TOOLS_BIN says otherwise.
func toolsBin(t *testing.T, root string) string {
	t.Helper()
	bin := os.Getenv("FOLIO_TOOLS_BIN")
	if bin == "" {
		out, err := exec.Command("go", "env", "GOCACHE").Output()
		if err != nil {
			t.Fatalf("go env GOCACHE: %v", err)
		}
		bin = filepath.Join(strings.TrimSpace(string(out)), "folio-tools")
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "buf"), "--version")
	cmd.Env = append(os.Environ(), "FOLIO_TOOLS_BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build buf: %v\n%s", err, out)
	}
	return bin
}

// cloneAt clones the repository's HEAD (what is committed, not the working tree)
// and returns the clone and its HEAD commit, the base of the change to come. The
// gate under test is the checkout's own script: committed in the clone when it
// differs from HEAD's, so that the clone is clean.
func cloneAt(t *testing.T, root string) (dir, base string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "folio")
	if out, err := exec.Command("git", "clone", "-q", root, dir).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	script, err := os.ReadFile(filepath.Join(root, gate))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, gate), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if git(t, dir, "status", "--porcelain") != "" {
		git(t, dir, "add", gate)
		git(t, dir, "commit", "-q", "-m", "the contract gates under test")
	}
	return dir, strings.TrimSpace(git(t, dir, "rev-parse", "HEAD"))
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=contract gates test",
		"-c", "user.email=contracts@folio.invalid", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// commit regenerates the Go code from the clone's proto/, as a developer would,
// and commits everything, so that the generated-code checks pass and only the
// contract checks judge the change.
func commit(t *testing.T, dir, bin, msg string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "scripts", "buf"), "generate")
	cmd.Env = append(os.Environ(), "FOLIO_TOOLS_BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/buf generate: %v\n%s", err, out)
	}
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", msg)
}

// runGate runs the clone's scripts/contract-gates with env added.
func runGate(t *testing.T, dir, bin string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, gate))
	cmd.Dir = t.TempDir() // the script finds its repository itself
	cmd.Env = append(append(os.Environ(), "FOLIO_CONTRACT_BASE=", "FOLIO_TOOLS_BIN="+bin), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("scripts/contract-gates (%v):\n%s", err, out.String())
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run the gate: %v\n%s", err, out.String())
	}
	return out.String(), err
}

var verdictLine = regexp.MustCompile(`(?m)^(PASS|FAIL|SKIP) ([^:]+): (.*)$`)

// verdicts are the gate's check lines by check.
func verdicts(out string) map[string]verdict {
	got := map[string]verdict{}
	for _, m := range verdictLine.FindAllStringSubmatch(out, -1) {
		got[m[2]] = verdict{status: m[1], why: m[3]}
	}
	return got
}

func wantStatus(t *testing.T, got map[string]verdict, check, status, why, out string) {
	t.Helper()
	v, ok := got[check]
	switch {
	case !ok:
		t.Errorf("no line for %s in the gate's output:\n%s", check, out)
	case v.status != status || !strings.Contains(v.why, why):
		t.Errorf("%s: %s %q, want %s with %q; output:\n%s", check, v.status, v.why, status, why, out)
	}
}

// editDocument rewrites an OpenAPI document of the clone through edit.
func editDocument(t *testing.T, dir, path string, edit func(map[string]any)) {
	t.Helper()
	file := filepath.Join(dir, path)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	edit(doc)
	if b, err = json.MarshalIndent(doc, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// dig follows keys down a decoded JSON document; a missing key fails t, since the
// change it was to carry would not be made.
func dig(t *testing.T, v map[string]any, keys ...string) map[string]any {
	t.Helper()
	for _, k := range keys {
		next, ok := v[k].(map[string]any)
		if !ok {
			t.Fatalf("the document has no object at %q (of %q): the test's change no longer applies", k, keys)
		}
		v = next
	}
	return v
}

// editFile replaces the one occurrence of old in a file of the clone.
func editFile(t *testing.T, dir, path, old, new string) {
	t.Helper()
	file := filepath.Join(dir, path)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), old); n != 1 {
		t.Fatalf("%s has %q %d times, want once: the test's change no longer applies", path, old, n)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

var goPackage = regexp.MustCompile(`(?m)^option go_package = "folio/([^";]+)(;\w+)?";`)

// moveProtoToV2 replaces folio.book.v1 by folio.book.v2 in the clone: the file
// moves to its package's directory, its Go package beside the old one's, and the
// old generated code goes.
func moveProtoToV2(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, bookProto))
	if err != nil {
		t.Fatal(err)
	}
	m := goPackage.FindStringSubmatch(string(b))
	if m == nil || !strings.HasSuffix(m[1], "v1") {
		t.Fatalf("%s: no go_package option ending in v1", bookProto)
	}
	oldGo := m[1]
	newGo := strings.TrimSuffix(oldGo, "v1") + "v2"
	src := strings.Replace(string(b), "package folio.book.v1;", "package folio.book.v2;", 1)
	src = strings.Replace(src, m[0], `option go_package = "folio/`+newGo+";"+filepath.Base(newGo)+`";`, 1)
	v2 := filepath.Join(dir, "proto", "folio", "book", "v2", "book.proto")
	if err := os.MkdirAll(filepath.Dir(v2), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v2, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{filepath.Dir(filepath.Join(dir, bookProto)), filepath.Join(dir, oldGo)} {
		if err := os.RemoveAll(gone); err != nil {
			t.Fatal(err)
		}
	}
}
