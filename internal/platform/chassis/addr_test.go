package chassis

import "testing"

func TestDefaultMetricsAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8081":  "127.0.0.1:9081",
		"0.0.0.0:8080":    "127.0.0.1:9080",
		":8084":           "127.0.0.1:9084",
		"[::1]:8082":      "127.0.0.1:9082",
		"127.0.0.1:0":     "127.0.0.1:0",
		"127.0.0.1:65000": "127.0.0.1:0",
		"nonsense":        "127.0.0.1:0",
	} {
		if got := defaultMetricsAddr(in); got != want {
			t.Errorf("defaultMetricsAddr(%q): got %q, want %q", in, got, want)
		}
	}
}

func TestLoopbackDefault(t *testing.T) {
	for in, want := range map[string]string{
		":8081":          "127.0.0.1:8081",
		"0.0.0.0:8081":   "0.0.0.0:8081",
		"127.0.0.1:8081": "127.0.0.1:8081",
		"[::]:8081":      "[::]:8081",
	} {
		if got := loopbackDefault(in); got != want {
			t.Errorf("loopbackDefault(%q): got %q, want %q", in, got, want)
		}
	}
}
