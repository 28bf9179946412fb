package httpapi

import (
	"context"
	"net/http"
	"slices"

	"folio/internal/order"
	"folio/internal/platform/authn"
	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// caller is who the verified token of ctx speaks for, and whether as an admin.
// Routes lets no anonymous request through; an identity missing here is a wiring
// fault, refused as unauthenticated rather than served as nobody.
func caller(ctx context.Context) (subject string, admin bool, err error) {
	id, ok := authn.FromContext(ctx)
	if !ok || id.Subject == "" {
		return "", false, fault.New(fault.Unauthorized, "a signed-in user's token is required")
	}
	return id.Subject, slices.Contains(id.Roles, authn.RoleAdmin), nil
}

// placeBody is an order as a client places it.
type placeBody struct {
	Items []struct {
		BookID   string `json:"book_id"`
		Quantity int    `json:"quantity"`
	} `json:"items"`
	Payment struct {
		Card struct {
			Number string `json:"number"`
			Expiry string `json:"expiry"`
			CVC    string `json:"cvc"`
		} `json:"card"`
	} `json:"payment"`
}

// handleOrderPlace serves POST /orders.
func handleOrderPlace(svc *order.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		user, _, err := caller(r.Context())
		if err != nil {
			return err
		}
		var body placeBody
		if err := rest.Decode(r, &body); err != nil {
			return err
		}
		in := order.Input{Card: order.CardInput{Number: body.Payment.Card.Number, Expiry: body.Payment.Card.Expiry, CVC: body.Payment.Card.CVC}}
		for _, it := range body.Items {
			in.Items = append(in.Items, order.ItemInput{BookID: it.BookID, Quantity: it.Quantity})
		}
		o, err := svc.Place(idempotency.WithAnswer(r.Context(), answerPlaced), user, in)
		if err != nil {
			return err
		}
		answerPlaced(w, o)
		return nil
	}
}

// answerPlaced is the answer to POST /orders, which an Idempotency-Key stores in
// the transaction that places the order.
func answerPlaced(w http.ResponseWriter, o order.Order) {
	w.Header().Set("Location", "/orders/"+o.ID)
	_ = rest.WriteJSON(w, http.StatusAccepted, o)
}

// handleOrderGet serves GET /orders/{id}.
func handleOrderGet(svc *order.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		user, admin, err := caller(r.Context())
		if err != nil {
			return err
		}
		o, err := svc.Get(r.Context(), user, admin, r.PathValue("id"))
		if err != nil {
			return err
		}
		_ = rest.WriteJSON(w, http.StatusOK, o)
		return nil
	}
}

// handleOrderList serves GET /orders: the caller's own orders, oldest first.
func handleOrderList(svc *order.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		user, _, err := caller(r.Context())
		if err != nil {
			return err
		}
		page, err := rest.ParsePage(r)
		if err != nil {
			return err
		}
		orders, err := svc.List(r.Context(), user, page)
		if err != nil {
			return err
		}
		_ = rest.WriteJSON(w, http.StatusOK, rest.PageOf(orders))
		return nil
	}
}

// handleOrderCancel serves POST /orders/{id}/cancel.
func handleOrderCancel(svc *order.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		user, _, err := caller(r.Context())
		if err != nil {
			return err
		}
		o, err := svc.Cancel(r.Context(), user, r.PathValue("id"))
		if err != nil {
			return err
		}
		_ = rest.WriteJSON(w, http.StatusAccepted, o)
		return nil
	}
}
