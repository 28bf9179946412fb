package rest

import (
	"net/http"
	"testing"
)

// discardWriter is a ResponseWriter that keeps headers and drops the body, so
// that the benchmark counts WriteJSON's own work and not a recorder's.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkWriteJSON measures answering one small resource. It reports numbers
// only:
//
//	go test -run '^$' -bench WriteJSON -benchmem ./internal/platform/rest/
func BenchmarkWriteJSON(b *testing.B) {
	v := struct {
		ID      string `json:"id"`
		Title   string `json:"title"`
		Version int    `json:"version"`
	}{"01JD6ZQ2W3Z8M9V4T5X6Y7A8B9", "The Dispossessed", 3}
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{h: make(http.Header, 4)}
		if err := WriteJSON(w, http.StatusOK, v); err != nil {
			b.Fatal(err)
		}
	}
}
