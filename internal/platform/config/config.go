// Package config loads a service's typed configuration from environment variables,
// with defaults in the struct tags, and renders it for one start-up log line with
// secrets masked.
package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Load fills cfg (a pointer to a struct with `env` and `envDefault` tags) from getenv.
// getenv is passed in rather than read from the process so that tests can start a
// whole service in-process with an environment of their own.
func Load(cfg any, getenv func(string) string) error {
	params, err := env.GetFieldParams(cfg)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	vars := make(map[string]string, len(params))
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			vars[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(cfg, env.Options{Environment: vars}); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Attrs returns one log attribute per configuration variable. Fields tagged
// `mask:"true"` are hidden, and passwords inside URLs are redacted.
func Attrs(cfg any) []any {
	return attrs(reflect.Indirect(reflect.ValueOf(cfg)), map[string]bool{})
}

// attrs appends v's settings to out; seen holds the variables already listed, since
// several parts of a configuration read the same one (the broker and discovery
// both read FOLIO_NATS_URL and its credentials) and it is logged once.
func attrs(v reflect.Value, seen map[string]bool) []any {
	t := v.Type()
	var out []any
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key == "" {
			if f.Type.Kind() == reflect.Struct {
				out = append(out, attrs(v.Field(i), seen)...)
			}
			continue
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		val := fmt.Sprint(v.Field(i).Interface())
		switch {
		case f.Tag.Get("mask") == "true" && val != "":
			val = "***"
		case v.Field(i).Kind() == reflect.Slice:
			items := make([]string, v.Field(i).Len())
			for j := range items {
				items[j] = redactURLs(fmt.Sprint(v.Field(i).Index(j).Interface()))
			}
			val = "[" + strings.Join(items, " ") + "]"
		default:
			val = redactURLs(val)
		}
		out = append(out, slog.String(key, val))
	}
	return out
}

// redactURLs redacts each URL of a comma-separated list (FOLIO_NATS_URL takes one
// per server), which as one URL would parse with the later ones' user info in its
// path.
func redactURLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if strings.Contains(p, "://") {
			parts[i] = redactURL(p)
		}
	}
	return strings.Join(parts, ",")
}

// redactURL hides the secrets in a URL: its whole user info (url.URL.Redacted would
// keep the user, and in nats://token@host the user is the secret), and a password
// query parameter (which pgx reads too). A URL that does not parse (a password holding
// '#' or a stray '%' is enough) is shown without anything before its last '@'.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		scheme, rest, _ := strings.Cut(s, "://")
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			return scheme + "://" + rest[i+1:]
		}
		return s
	}
	u.User = nil
	if q, err := url.ParseQuery(u.RawQuery); err != nil || q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
