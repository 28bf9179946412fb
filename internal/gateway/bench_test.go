package gateway

import (
	"io"
	"net/http"
	"testing"

	"folio/internal/platform/authn"
)

// BenchmarkGET compares a GET through the gateway (with a verified token and the
// rate limiter on) with the same GET sent straight to the upstream. It reports
// numbers only and asserts nothing about speed:
//
//	go test -run '^$' -bench GET ./internal/gateway/
func BenchmarkGET(b *testing.B) {
	var upstream string
	h := newHarness(b, func(c *Config) {
		c.RateLimit, c.RateBurst = 1e9, 1e9
		upstream = c.Instances[ServiceBook][0]
	})
	token := h.token("bench", []string{authn.RoleReader})
	b.Run("direct", func(b *testing.B) { benchGet(b, upstream+"/books/1", "") })
	b.Run("gateway", func(b *testing.B) { benchGet(b, h.url+"/books/1", token) })
}

func benchGet(b *testing.B, url, token string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
