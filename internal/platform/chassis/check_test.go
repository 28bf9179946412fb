package chassis_test

import (
	"strings"
	"testing"
	"time"

	"folio/internal/platform/chassis"
	"folio/internal/platform/config"
)

// TestCheck: the defaults that depend on the program are filled in, and a bad
// shared setting is refused by Check, before run opens anything.
func TestCheck(t *testing.T) {
	load := func(t *testing.T, env map[string]string) (chassis.ServiceConfig, error) {
		t.Helper()
		var cfg chassis.ServiceConfig
		if err := config.Load(&cfg, func(k string) string { return env[k] }); err != nil {
			t.Fatalf("Load: %v", err)
		}
		return cfg, cfg.Check("book", ":8081")
	}
	cfg, err := load(t, map[string]string{"FOLIO_DATA_DIR": "/var/lib/folio"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:8081" || cfg.DatabaseURL != "sqlite:/var/lib/folio/book.db" || cfg.BrokerStaleAfter != 30*time.Second {
		t.Errorf("defaults: %q, %q, %s", cfg.HTTPAddr, cfg.DatabaseURL, cfg.BrokerStaleAfter)
	}
	cfg, err = load(t, map[string]string{"FOLIO_HTTP_ADDR": "0.0.0.0:9000", "FOLIO_DATABASE_URL": "postgres://db/folio"})
	if err != nil || cfg.HTTPAddr != "0.0.0.0:9000" || cfg.DatabaseURL != "postgres://db/folio" {
		t.Errorf("settings given: %q, %q, %v", cfg.HTTPAddr, cfg.DatabaseURL, err)
	}

	for _, tc := range []struct{ name, value, want string }{
		{"FOLIO_TRUSTED_PROXIES", "10.0.0.0/33", "FOLIO_TRUSTED_PROXIES"},
		{"FOLIO_BROKER_STALE_AFTER", "0s", "FOLIO_BROKER_STALE_AFTER"},
		{"FOLIO_SHUTDOWN_TIMEOUT", "0s", "FOLIO_SHUTDOWN_TIMEOUT"},
		{"FOLIO_DISCOVERY", "consul", "FOLIO_DISCOVERY"},
		{"FOLIO_BROKER", "pulsar", "FOLIO_BROKER"},
		{"FOLIO_EVENTS_PREFIX", "folio.events", "prefix"},
		{"FOLIO_EVENTS_MAX_AGE", "1s", "FOLIO_EVENTS_MAX_AGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, map[string]string{tc.name: tc.value})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s=%s: Check = %v, want an error naming %s", tc.name, tc.value, err, tc.want)
			}
		})
	}
}
