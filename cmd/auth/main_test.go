package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/secrets"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"auth", "extra"}, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_ADMIN_EMAIL", "root@example.com"},   // without a password
		{"FOLIO_ADMIN_PASSWORD", "a long password"}, // without an email
		{"FOLIO_TOKEN_TTL", "0s"},
		{"FOLIO_KEY_ROTATION", "1s"},
		{"FOLIO_HASH_SLOTS", "-1"},
		{"FOLIO_HASH_WAIT", "0s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "auth", tc.name, tc.value)
		})
	}
	t.Run("FOLIO_TOKEN_TTL=soon", func(t *testing.T) {
		vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_TOKEN_TTL": "soon"}
		if err := run(context.Background(), []string{"auth"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
			t.Error("got nil, want an error")
		}
	})
	t.Run("admin password too short", func(t *testing.T) {
		vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0",
			"FOLIO_ADMIN_EMAIL": "root@example.com", "FOLIO_ADMIN_PASSWORD": "short"}
		if err := run(context.Background(), []string{"auth"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
			t.Error("got nil, want an error")
		}
	})
}

// TestRunRejectsBadSettingBeforeOpeningAnything: a bad setting ends run before it
// creates the database or the secrets key in the data directory, so that a typo
// leaves nothing behind to clean up.
func TestRunRejectsBadSettingBeforeOpeningAnything(t *testing.T) {
	for _, tc := range []struct{ name, value, email string }{
		{"FOLIO_TOKEN_TTL", "0s", ""},
		{"FOLIO_KEY_ROTATION", "1s", ""},
		{"FOLIO_TRUSTED_PROXIES", "not a network", ""},
		{"FOLIO_BROKER_STALE_AFTER", "0s", ""},
		{"FOLIO_ADMIN_PASSWORD", "short", "root@example.com"},
		{"FOLIO_ADMIN_EMAIL", "not an email", ""},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			vars := map[string]string{tc.name: tc.value}
			switch {
			case tc.email != "":
				vars["FOLIO_ADMIN_EMAIL"] = tc.email
			case tc.name == "FOLIO_ADMIN_EMAIL":
				vars["FOLIO_ADMIN_PASSWORD"] = "a long enough password"
			}
			chassistest.WantRefusedBeforeOpening(t, run, "auth", vars, tc.name)
		})
	}
}

func post(t *testing.T, url, body string, header ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp, v
}

func TestRunServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"FOLIO_DATA_DIR": dir, "FOLIO_HTTP_ADDR": "127.0.0.1:0",
		"FOLIO_ADMIN_EMAIL": "Root@Example.com", "FOLIO_ADMIN_PASSWORD": "the root password", "FOLIO_TOKEN_TTL": "5m"}
	first := chassistest.Start(t, run, []string{"auth"}, vars)
	base := first.URL
	if strings.Contains(first.Logs.String(), "the root password") {
		t.Error("the admin password appears in the logs")
	}

	resp, tok := post(t, base+"/auth/token", `{"email":"root@example.com","password":"the root password"}`)
	if resp.StatusCode != http.StatusOK || tok["token_type"] != "Bearer" || tok["expires_in"] != float64(300) {
		t.Fatalf("admin login: got %d %v, want 200 with a Bearer token for 300 s", resp.StatusCode, tok)
	}
	resp, ada := post(t, base+"/auth/register", `{"email":"ada@example.com","password":"twelve chars"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: got %d %v, want 201", resp.StatusCode, ada)
	}
	_, adaTok := post(t, base+"/auth/token", `{"email":"ada@example.com","password":"twelve chars"}`)
	req, _ := http.NewRequest("PUT", base+"/auth/users/"+ada["id"].(string)+"/roles", strings.NewReader(`{"roles":["editor"]}`))
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	req.Header.Set("Content-Type", "application/json")
	if resp, u := do(t, req); resp.StatusCode != http.StatusOK || !slices.Equal(u["roles"].([]any), []any{"editor"}) {
		t.Errorf("roles change by the admin: got %d %v, want 200 with [editor]", resp.StatusCode, u)
	}
	// The role change revoked ada's earlier token.
	req, _ = http.NewRequest("GET", base+"/auth/users/"+ada["id"].(string), nil)
	req.Header.Set("Authorization", "Bearer "+adaTok["access_token"].(string))
	if resp, _ := do(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET with a token from before the role change: got %d, want 401", resp.StatusCode)
	}
	// The signing keys are sealed with a key beside the data, readable by the owner
	// only, since no FOLIO_SECRETS_KEY(_FILE) was given.
	if fi, err := os.Stat(filepath.Join(dir, "secrets.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets.key: got %v, %v, want a 0600 file", fi, err)
	}
	if !strings.Contains(first.Logs.String(), "beside the data") {
		t.Error("no warning that the secrets key lies beside the data")
	}
	for path, want := range map[string]int{"/readyz": 200, "/.well-known/jwks.json": 200, "/openapi.json": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	req, _ = http.NewRequest("GET", base+"/.well-known/jwks.json", nil)
	_, jwks := do(t, req)
	first.Stop()

	// A restart keeps the signing key and does not make the admin again.
	restarted := chassistest.Start(t, run, []string{"auth"}, vars)
	base = restarted.URL
	req, _ = http.NewRequest("GET", base+"/.well-known/jwks.json", nil)
	if _, again := do(t, req); !jsonEqual(jwks, again) {
		t.Errorf("after a restart got JWKS %v, want %v", again, jwks)
	}
	if strings.Contains(restarted.Logs.String(), "created the first admin") {
		t.Error("the restart made the admin again")
	}
	if resp, _ := post(t, base+"/auth/token", `{"email":"root@example.com","password":"the root password"}`); resp.StatusCode != 200 {
		t.Errorf("admin login after a restart: got %d, want 200", resp.StatusCode)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestSecretsKeyFile: with FOLIO_SECRETS_KEY_FILE the key comes from that file and
// none is made beside the data; a start with another key refuses to run rather than
// serve without its signing keys.
func TestSecretsKeyFile(t *testing.T) {
	dir, keys := t.TempDir(), t.TempDir()
	keyFile := filepath.Join(keys, "kek")
	if err := os.WriteFile(keyFile, []byte(secrets.GenerateKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"FOLIO_DATA_DIR": dir, "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_SECRETS_KEY_FILE": keyFile}
	chassistest.Start(t, run, []string{"auth"}, vars).Stop()
	if _, err := os.Stat(filepath.Join(dir, "secrets.key")); !os.IsNotExist(err) {
		t.Errorf("a key was made beside the data although FOLIO_SECRETS_KEY_FILE was set: %v", err)
	}
	vars["FOLIO_SECRETS_KEY_FILE"] = ""
	vars["FOLIO_SECRETS_KEY"] = secrets.GenerateKey()
	err := run(context.Background(), []string{"auth"}, chassistest.Env(vars), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "unseal") {
		t.Errorf("a start with another secrets key: got %v, want an error saying the keys do not unseal", err)
	}
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "auth") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready (chassis.Healthcheck) instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"auth", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("auth --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
