package httpapi

import (
	"net/http"

	"folio/internal/payment"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// handlePaymentGet serves GET /payments/{order_id}: the order's payment with its
// ledger, and no card number, which the service never has in store.
func handlePaymentGet(svc *payment.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := svc.Get(r.Context(), r.PathValue("order_id"))
		if err != nil {
			return err
		}
		w.Header().Set("ETag", rest.ETag(p.Version))
		if rest.NotModified(r, p.Version) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		_ = rest.WriteJSON(w, http.StatusOK, p)
		return nil
	}
}
