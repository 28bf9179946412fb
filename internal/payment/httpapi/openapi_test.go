package httpapi_test

import (
	"testing"

	"folio/internal/payment"
	"folio/internal/payment/httpapi"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/id"
	"folio/internal/platform/rest/openapicheck"
)

// TestOpenAPIDocument checks that the payment service's OpenAPI document is valid
// and that every answer of the service, errors included, matches what it says.
func TestOpenAPIDocument(t *testing.T) {
	doc := openapicheck.Load(t, httpapi.OpenAPI, "http://example.com")
	s := newServer(t)
	paths := []string{
		"/payments/" + s.pay(t, "4242424242424242", payment.CommandCapture, payment.CommandRefund),
		"/payments/" + s.pay(t, "5555555555554444"),
		"/payments/" + s.pay(t, "4000000000000002"),
		"/payments/" + s.pay(t, "4242424242424241"),
		"/payments/" + s.pay(t, "", payment.CommandVoid), // a tombstone
	}
	unknown := id.New()
	s.pay(t, "4242424242424242") // another order's
	for _, cl := range []struct {
		path   string
		header []string
		want   int
	}{
		{paths[0], nil, 200},
		{paths[1], nil, 200},
		{paths[2], nil, 200},
		{paths[3], nil, 200},
		{paths[4], nil, 200},
		{paths[0], []string{"If-None-Match", `"3"`}, 304},
		{paths[0], []string{"Authorization", ""}, 401},
		{paths[0], []string{"Authorization", authntest.Bearer(s.iss.Token("e", "editor"))}, 403},
		{"/payments/" + unknown, nil, 404},
		{"/payments/nope", nil, 404},
		{"/healthz", nil, 200},
		{"/readyz", nil, 200},
		{"/openapi.json", nil, 200},
	} {
		rec := s.do("GET", cl.path, cl.header...)
		if rec.Code != cl.want {
			t.Errorf("GET %s: got status %d, want %d: %.300s", cl.path, rec.Code, cl.want, rec.Body)
			continue
		}
		doc.CheckRecorded(t, "GET", cl.path, rec)
	}
}

// TestOpenAPIMatchesRoutes checks that openapi.json documents exactly the routes the
// service serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	openapicheck.MatchesRoutes(t, httpapi.OpenAPI, newServer(t).mux, "/payments", 1)
}
