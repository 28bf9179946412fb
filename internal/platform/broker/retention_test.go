package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/config"
)

func TestStreamLimitsFromTheEnvironment(t *testing.T) {
	load := func(vars map[string]string) (Config, error) {
		var cfg Config
		err := config.Load(&cfg, func(k string) string { return vars[k] })
		return cfg, err
	}
	cfg, err := load(nil)
	if err != nil || cfg.MaxAge.Set || cfg.MaxBytes.Set {
		t.Fatalf("nothing set: %+v %+v, %v; want both unset", cfg.MaxAge, cfg.MaxBytes, err)
	}
	if age, size := cfg.streamLimits(); age != DefaultMaxAge || size != DefaultMaxBytes {
		t.Errorf("limits of a new stream with none configured: %s %d, want %s %d", age, size, DefaultMaxAge, int64(DefaultMaxBytes))
	}
	for _, c := range []struct {
		age, size string
		wantAge   time.Duration
		wantBytes int64
		limitAge  time.Duration
		limitSize int64
	}{
		{"72h", "512MiB", 72 * time.Hour, 512 << 20, 72 * time.Hour, 512 << 20},
		{"0", "0", 0, 0, 0, -1}, // no limits
		{"30m", "1073741824", 30 * time.Minute, 1 << 30, 30 * time.Minute, 1 << 30},
		{"1h", " 2 GiB ", time.Hour, 2 << 30, time.Hour, 2 << 30},
		{"1h", "3KiB", time.Hour, 3 << 10, time.Hour, 3 << 10},
	} {
		cfg, err := load(map[string]string{"FOLIO_EVENTS_MAX_AGE": c.age, "FOLIO_EVENTS_MAX_BYTES": c.size})
		if err != nil || cfg.MaxAge != (StreamAge{c.wantAge, true}) || cfg.MaxBytes != (StreamBytes{c.wantBytes, true}) {
			t.Errorf("%q %q: %+v %+v, %v", c.age, c.size, cfg.MaxAge, cfg.MaxBytes, err)
			continue
		}
		if age, size := cfg.streamLimits(); age != c.limitAge || size != c.limitSize {
			t.Errorf("%q %q: stream limits %s %d, want %s %d", c.age, c.size, age, size, c.limitAge, c.limitSize)
		}
	}
	for _, bad := range []map[string]string{
		{"FOLIO_EVENTS_MAX_AGE": "a week"},
		{"FOLIO_EVENTS_MAX_BYTES": "1GB"},
		{"FOLIO_EVENTS_MAX_BYTES": "-1"},
		{"FOLIO_EVENTS_MAX_BYTES": "99999999999TiB"},
	} {
		if cfg, err := load(bad); err == nil {
			t.Errorf("%v accepted: %+v %+v", bad, cfg.MaxAge, cfg.MaxBytes)
		}
	}
	// Open refuses what the server would, before connecting.
	for _, c := range []Config{
		{Kind: "nats", Stream: "S", Prefix: "p", MaxAge: StreamAge{time.Minute, true}},
		{Kind: "nats", Stream: "S", Prefix: "p", MaxAge: StreamAge{-time.Hour, true}},
		{Kind: "nats", Stream: "S", Prefix: "p", MaxBytes: StreamBytes{-5, true}},
	} {
		if _, err := Open(t.Context(), c, nil, nil); err == nil || !strings.Contains(err.Error(), "FOLIO_EVENTS_MAX_") {
			t.Errorf("Open with %+v %+v: %v, want a refusal naming the variable", c.MaxAge, c.MaxBytes, err)
		}
	}
	if s := (StreamBytes{1 << 30, true}).String(); s != "1GiB" {
		t.Errorf("1 GiB shown as %q", s)
	}
}

// logBuffer is a log the broker's connection goroutines write to while a test
// reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

// streamConfig reads the test stream's settings and state from the server.
func streamConfig(t *testing.T, e *env) *jetstream.StreamInfo {
	t.Helper()
	js, done := natsJS(t, e)
	defer done()
	st, err := js.Stream(t.Context(), e.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo()
}

// openWith opens a Broker on the test's stream with cfg's limits, logging to log.
func (e *env) openWith(t *testing.T, age StreamAge, size StreamBytes, log *logBuffer) *Broker {
	t.Helper()
	cfg := e.cfg
	cfg.MaxAge, cfg.MaxBytes = age, size
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	b, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(log, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// A stream Folio creates is bounded, by default or as configured, and discards
// its oldest events to stay within its size.
func TestNATSStreamIsBounded(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		if e.a.kind != "nats" {
			t.Skip("JetStream only: RabbitMQ's queues are emptied by their consumers")
		}
		t.Run("defaults", func(t *testing.T) {
			e := newEnv(t, e.a, e.url)
			publish(t, e.open(t), Message{Subject: e.subject("book.created"), ID: "d1"})
			info := streamConfig(t, e)
			if c := info.Config; c.MaxAge != DefaultMaxAge || c.MaxBytes != DefaultMaxBytes || c.Discard != jetstream.DiscardOld {
				t.Errorf("new stream: max age %s, max bytes %d, discard %s; want %s, %d, old", c.MaxAge, c.MaxBytes, c.Discard, DefaultMaxAge, int64(DefaultMaxBytes))
			}
			var log logBuffer
			e.openWith(t, StreamAge{}, StreamBytes{}, &log) // a second instance starting finds it as it made it
			if strings.Contains(log.String(), "limits") {
				t.Errorf("a second start logged about limits:\n%s", log.String())
			}
		})
		t.Run("configured", func(t *testing.T) {
			e := newEnv(t, e.a, e.url)
			const limit = 64 << 10
			b := e.openWith(t, StreamAge{3 * time.Hour, true}, StreamBytes{limit, true}, &logBuffer{})
			body := bytes.Repeat([]byte("x"), 1024)
			const n = 200 // about three times the limit
			ms := make([]Message, n)
			for i := range ms {
				ms[i] = Message{Subject: e.subject("book.created"), ID: fmt.Sprintf("c%03d", i), Body: body}
			}
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			if acked, err := b.PublishBatch(ctx, ms); err != nil || acked != n {
				t.Fatalf("PublishBatch = %d, %v; want %d, nil", acked, err, n)
			}
			info := streamConfig(t, e)
			if c := info.Config; c.MaxAge != 3*time.Hour || c.MaxBytes != limit || c.Discard != jetstream.DiscardOld {
				t.Errorf("max age %s, max bytes %d, discard %s; want 3h, %d, old", c.MaxAge, c.MaxBytes, c.Discard, limit)
			}
			s := info.State
			if s.Bytes > limit || s.FirstSeq <= 1 || s.LastSeq != n || s.Msgs == 0 || s.Msgs >= n {
				t.Errorf("stream holds %d messages (%d to %d), %d bytes; want the newest within %d bytes", s.Msgs, s.FirstSeq, s.LastSeq, s.Bytes, limit)
			}
		})
	})
}

// An operator may change the stream's limits; services starting keep them, unless
// a limit is configured explicitly: then that one is applied, and only that one.
func TestNATSConfiguredLimitsOverrideAnExistingStream(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		if e.a.kind != "nats" {
			t.Skip("JetStream only")
		}
		js, done := natsJS(t, e)
		defer done()
		operators := jetstream.StreamConfig{Name: e.cfg.Stream, Subjects: []string{e.subject(">")}, Storage: jetstream.FileStorage,
			MaxAge: time.Hour, MaxBytes: 10 << 20, Discard: jetstream.DiscardNew}
		if _, err := js.CreateStream(t.Context(), operators); err != nil {
			t.Fatal(err)
		}
		check := func(what string, age time.Duration, size int64) {
			t.Helper()
			c := streamConfig(t, e).Config
			if c.MaxAge != age || c.MaxBytes != size || c.Discard != jetstream.DiscardNew || c.Duplicates != natsDuplicateWindow {
				t.Errorf("%s: max age %s, max bytes %d, discard %s, duplicates %s; want %s, %d, the operator's new, %s",
					what, c.MaxAge, c.MaxBytes, c.Discard, c.Duplicates, age, size, natsDuplicateWindow)
			}
		}
		var log logBuffer
		publish(t, e.openWith(t, StreamAge{}, StreamBytes{}, &log), Message{Subject: e.subject("book.created"), ID: "k1"})
		check("nothing configured", time.Hour, 10<<20)

		log.Reset()
		publish(t, e.openWith(t, StreamAge{3 * time.Hour, true}, StreamBytes{}, &log), Message{Subject: e.subject("book.created"), ID: "k2"})
		check("an age configured", 3*time.Hour, 10<<20)
		if !strings.Contains(log.String(), "level=INFO msg=\"event stream limits changed as configured\"") {
			t.Errorf("raising the age limit was not logged as information:\n%s", log.String())
		}

		log.Reset()
		publish(t, e.openWith(t, StreamAge{}, StreamBytes{1 << 20, true}, &log), Message{Subject: e.subject("book.created"), ID: "k3"})
		check("a lower size configured", 3*time.Hour, 1<<20)
		if !strings.Contains(log.String(), "level=WARN msg=\"event stream limits changed as configured\"") {
			t.Errorf("lowering the size limit was not logged as a warning:\n%s", log.String())
		}

		log.Reset()
		e.openWith(t, StreamAge{3 * time.Hour, true}, StreamBytes{1 << 20, true}, &log)
		check("the same configured again", 3*time.Hour, 1<<20)
		if strings.Contains(log.String(), "limits") {
			t.Errorf("limits the stream has already were logged as changed:\n%s", log.String())
		}
		if info := streamConfig(t, e); info.State.Msgs != 3 {
			t.Errorf("the stream holds %d messages, want 3", info.State.Msgs)
		}
	})
}

// A stream without any limit (made by an earlier version, or by hand) is kept, and
// its growing for ever is worth a warning.
func TestNATSWarnsOfAnUnboundedStream(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		if e.a.kind != "nats" {
			t.Skip("JetStream only")
		}
		js, done := natsJS(t, e)
		defer done()
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: e.cfg.Stream, Subjects: []string{e.subject(">")},
			Storage: jetstream.FileStorage, Description: "folio events", Duplicates: natsDuplicateWindow}); err != nil {
			t.Fatal(err)
		}
		var log logBuffer
		e.openWith(t, StreamAge{}, StreamBytes{}, &log)
		if c := streamConfig(t, e).Config; c.MaxAge != 0 || c.MaxBytes != -1 {
			t.Errorf("the stream's limits changed to %s %d without being configured", c.MaxAge, c.MaxBytes)
		}
		if !strings.Contains(log.String(), "grows for ever") {
			t.Errorf("no warning of a stream without limits:\n%s", log.String())
		}
	})
}
