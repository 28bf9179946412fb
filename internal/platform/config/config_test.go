package config_test

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/config"
)

type Base struct {
	Addr      string        `env:"TEST_ADDR"`
	LogLevel  string        `env:"TEST_LOG_LEVEL" envDefault:"info"`
	AccessLog bool          `env:"TEST_ACCESS_LOG" envDefault:"true"`
	Delay     time.Duration `env:"TEST_DELAY" envDefault:"0s"`
}

type service struct {
	Base
	PeerURL     string        `env:"TEST_PEER_URL" envDefault:"http://127.0.0.1:8082"`
	DatabaseURL string        `env:"TEST_DATABASE_URL"`
	Timeout     time.Duration `env:"TEST_TIMEOUT" envDefault:"1s"`
	Workers     int           `env:"TEST_WORKERS" envDefault:"4"`
	Secret      string        `env:"TEST_SECRET" mask:"true"`
	Peers       []string      `env:"TEST_PEERS"`
	Untagged    string
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		var cfg service
		if err := config.Load(&cfg, env(nil)); err != nil {
			t.Fatal(err)
		}
		want := service{Base: Base{LogLevel: "info", AccessLog: true}, PeerURL: "http://127.0.0.1:8082",
			Timeout: time.Second, Workers: 4}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("got %+v, want %+v", cfg, want)
		}
	})

	t.Run("override", func(t *testing.T) {
		var cfg service
		err := config.Load(&cfg, env(map[string]string{
			"TEST_ADDR": ":9000", "TEST_LOG_LEVEL": "debug", "TEST_ACCESS_LOG": "false", "TEST_DELAY": "5s",
			"TEST_PEER_URL": "http://author:8082", "TEST_TIMEOUT": "250ms", "TEST_WORKERS": "16", "TEST_SECRET": "s3cret",
			"UNRELATED": "x",
		}))
		if err != nil {
			t.Fatal(err)
		}
		want := service{Base: Base{Addr: ":9000", LogLevel: "debug", AccessLog: false, Delay: 5 * time.Second},
			PeerURL: "http://author:8082", Timeout: 250 * time.Millisecond, Workers: 16, Secret: "s3cret"}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("got %+v, want %+v", cfg, want)
		}
	})

	t.Run("empty means unset", func(t *testing.T) {
		var cfg service
		if err := config.Load(&cfg, env(map[string]string{"TEST_TIMEOUT": "", "TEST_LOG_LEVEL": ""})); err != nil {
			t.Fatal(err)
		}
		if cfg.Timeout != time.Second || cfg.LogLevel != "info" {
			t.Errorf("got timeout %v, level %q; want the defaults 1s, info", cfg.Timeout, cfg.LogLevel)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct{ key, value string }{
			{"TEST_TIMEOUT", "soon"},
			{"TEST_TIMEOUT", "10"},
			{"TEST_DELAY", "1 hour"},
			{"TEST_WORKERS", "many"},
			{"TEST_ACCESS_LOG", "maybe"},
		} {
			var cfg service
			err := config.Load(&cfg, env(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Errorf("%s=%q: got nil, want an error", tt.key, tt.value)
				continue
			}
			if !strings.Contains(err.Error(), tt.value) {
				t.Errorf("%s=%q: got %q, want an error showing the value", tt.key, tt.value, err)
			}
		}
	})

	t.Run("not a struct pointer", func(t *testing.T) {
		var cfg service
		if err := config.Load(cfg, env(nil)); err == nil {
			t.Error("got nil for a struct value, want an error")
		}
	})
}

func TestAttrs(t *testing.T) {
	tests := []struct {
		name      string
		cfg       service
		key, want string
		hidden    string // must appear in no attribute
	}{
		{"mask tag", service{Secret: "s3cret"}, "TEST_SECRET", "***", "s3cret"},
		{"url password", service{DatabaseURL: "postgres://folio:hunter2@db:5432/folio?sslmode=disable"},
			"TEST_DATABASE_URL", "postgres://db:5432/folio?sslmode=disable", "hunter2"},
		{"url without password", service{DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres"},
			"TEST_DATABASE_URL", "postgres://127.0.0.1:5432/postgres", "postgres@"},
		{"url password in the query", service{DatabaseURL: "postgres://folio@db/folio?password=hunter2&sslmode=disable"},
			"TEST_DATABASE_URL", "postgres://db/folio?password=xxxxx&sslmode=disable", "hunter2"},
		{"url password in a query with a bad escape", service{DatabaseURL: "postgres://db/folio?sslmode=disable&password=hunter%zz"},
			"TEST_DATABASE_URL", "", "hunter"},
		{"unparsable url with a password", service{DatabaseURL: "postgres://folio:hun#ter2@db/folio"},
			"TEST_DATABASE_URL", "", "hun#ter2"},
		{"url password with a bad escape", service{DatabaseURL: "postgres://folio:hunter%zz@db/folio"},
			"TEST_DATABASE_URL", "", "hunter"},
		{"plain url", service{PeerURL: "http://author:8082"}, "TEST_PEER_URL", "http://author:8082", ""},
		// Issue 8, finding 10: url.Redacted kept the token of a NATS token URL.
		{"url with a token as its user", service{PeerURL: "nats://s3cr3tT0ken@nats:4222"}, "TEST_PEER_URL", "nats://nats:4222", "s3cr3tT0ken"},
		{"list of urls", service{PeerURL: "nats://u1:p1@a:4222,nats://t0k3n@b:4222, nats://c:4222"}, "TEST_PEER_URL",
			"nats://a:4222,nats://b:4222, nats://c:4222", "t0k3n"},
		{"slice of urls", service{Peers: []string{"http://u1:s3cr3t@a:1", "http://b:2"}}, "TEST_PEERS", "[http://a:1 http://b:2]", "s3cr3t"},
		{"sqlite path", service{DatabaseURL: "sqlite:data/book.db"}, "TEST_DATABASE_URL", "sqlite:data/book.db", ""},
		{"duration", service{Timeout: 1500 * time.Millisecond}, "TEST_TIMEOUT", "1.5s", ""},
		{"embedded struct", service{Base: Base{Addr: ":8081"}}, "TEST_ADDR", ":8081", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := config.Attrs(&tt.cfg)
			if len(attrs) != 10 {
				t.Errorf("got %d attributes, want one per variable (10)", len(attrs))
			}
			found := false
			for _, a := range attrs {
				attr := a.(slog.Attr)
				if attr.Key == "" || attr.Key == "Untagged" {
					t.Errorf("got attribute %v, want only tagged fields", attr)
				}
				v := attr.Value.String()
				if tt.hidden != "" && strings.Contains(v, tt.hidden) {
					t.Errorf("%s = %q shows %q", attr.Key, v, tt.hidden)
				}
				if attr.Key == tt.key {
					found = true
					if tt.want != "" && v != tt.want {
						t.Errorf("%s: got %q, want %q", tt.key, v, tt.want)
					}
				}
			}
			if !found {
				t.Errorf("no attribute %s", tt.key)
			}
		})
	}
	if a := config.Attrs(service{Secret: "x"}); len(a) != 10 {
		t.Errorf("a struct value: got %d attributes, want 10", len(a))
	}
}

// A variable that two parts of a configuration read (the broker and discovery both
// read FOLIO_NATS_URL) is logged once.
func TestAttrsListEachVariableOnce(t *testing.T) {
	type part struct {
		URL string `env:"TEST_SHARED_URL"`
	}
	type twice struct {
		Broker    part
		Discovery part
		Own       string `env:"TEST_OWN"`
	}
	var keys []string
	for _, a := range config.Attrs(twice{Broker: part{"nats://a:4222"}, Discovery: part{"nats://a:4222"}, Own: "x"}) {
		keys = append(keys, a.(slog.Attr).Key)
	}
	if got, want := strings.Join(keys, ","), "TEST_SHARED_URL,TEST_OWN"; got != want {
		t.Errorf("got attributes %s, want %s", got, want)
	}
}
