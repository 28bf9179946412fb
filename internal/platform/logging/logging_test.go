package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/logging"
)

// lines decodes JSON log lines.
func lines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func TestRequestIDInLines(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, "book", "json", "info")
	ctx := logging.WithRequestID(context.Background(), "req-42")

	log.InfoContext(ctx, "with id", "k", "v")
	log.With("extra", 1).WarnContext(ctx, "derived logger")
	log.WithGroup("g").ErrorContext(ctx, "grouped", "k", "v")
	log.Info("without context")
	log.InfoContext(context.Background(), "without id")
	log.DebugContext(ctx, "below the level")

	recs := lines(t, buf.String())
	if len(recs) != 5 {
		t.Fatalf("got %d lines, want 5 (debug filtered out):\n%s", len(recs), buf.String())
	}
	for i, rec := range recs {
		if rec["service"] != "book" {
			t.Errorf("line %d: got service %v, want book", i, rec["service"])
		}
	}
	for i, rec := range recs[:2] {
		if rec["request_id"] != "req-42" {
			t.Errorf("line %d (%v): got request_id %v, want req-42", i, rec["msg"], rec["request_id"])
		}
	}
	if g, _ := recs[2]["g"].(map[string]any); g == nil || (g["request_id"] != "req-42" && recs[2]["request_id"] != "req-42") {
		t.Errorf("grouped line %v: want the request id", recs[2])
	}
	for _, rec := range recs[3:] {
		if _, ok := rec["request_id"]; ok {
			t.Errorf("line %v: got a request_id, want none", rec["msg"])
		}
	}
	if got := logging.RequestID(ctx); got != "req-42" {
		t.Errorf("RequestID: got %q, want req-42", got)
	}
	if got := logging.RequestID(context.Background()); got != "" {
		t.Errorf("RequestID of a bare context: got %q, want \"\"", got)
	}
}

func TestFormatsAndLevels(t *testing.T) {
	tests := []struct {
		format, level string
		json          bool
		debug         bool
	}{
		{"json", "info", true, false},
		{"text", "info", false, false},
		{"TEXT", "debug", false, true},
		{"auto", "debug", true, true}, // a buffer is no terminal
		{"json", "warn", true, false},
		{"json", "nonsense", true, false}, // an unknown level means info
	}
	for _, tt := range tests {
		t.Run(tt.format+" "+tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			log := logging.New(&buf, "svc", tt.format, tt.level)
			ctx := logging.WithRequestID(context.Background(), "rid")
			log.DebugContext(ctx, "debug line")
			log.ErrorContext(ctx, "error line")
			out := buf.String()
			if got := strings.Contains(out, "debug line"); got != tt.debug {
				t.Errorf("debug logged: got %v, want %v", got, tt.debug)
			}
			if !strings.Contains(out, "error line") || !strings.Contains(out, "rid") {
				t.Errorf("got %q, want the error line with the request id", out)
			}
			if got := strings.HasPrefix(out, "{"); got != tt.json {
				t.Errorf("JSON: got %v, want %v: %q", got, tt.json, out)
			}
		})
	}
}

func TestTraceAndSpanIDsInLines(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, "book", "json", "info")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	sampledOut := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))

	log.InfoContext(ctx, "in a span")
	log.InfoContext(context.Background(), "outside any span")
	log.InfoContext(sampledOut, "in a span sampled out")

	recs := lines(t, buf.String())
	if recs[0]["trace_id"] != tid.String() || recs[0]["span_id"] != sid.String() {
		t.Errorf("line in a span: trace_id %v, span_id %v; want %s, %s", recs[0]["trace_id"], recs[0]["span_id"], tid, sid)
	}
	for _, rec := range recs[1:] {
		if _, ok := rec["trace_id"]; ok {
			t.Errorf("line %q has a trace id", rec["msg"])
		}
	}
}
