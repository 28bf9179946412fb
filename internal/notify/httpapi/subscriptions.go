package httpapi

import (
	"encoding/json"
	"net/http"

	"folio/internal/notify"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// handleSubscriptionList serves GET /subscriptions.
func handleSubscriptionList(svc *notify.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		page, err := rest.ParsePage(r)
		if err != nil {
			return err
		}
		subs, err := svc.List(r.Context(), page)
		if err != nil {
			return err
		}
		_ = rest.WriteJSON(w, http.StatusOK, rest.PageOf(subs))
		return nil
	}
}

// subscriptionBody is a subscription as a client writes it. Read-only fields are
// accepted and ignored, as everywhere in Folio; any other is refused.
type subscriptionBody struct {
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
	Secret *string   `json:"secret"`

	ID        json.RawMessage `json:"id,omitempty"`
	Version   json.RawMessage `json:"version,omitempty"`
	CreatedAt json.RawMessage `json:"created_at,omitempty"`
}

// handleSubscriptionCreate serves POST /subscriptions.
func handleSubscriptionCreate(svc *notify.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in subscriptionBody
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		sub, err := svc.Create(idempotency.WithAnswer(r.Context(), answerCreated),
			notify.Input{URL: in.URL, Events: in.Events, Secret: in.Secret})
		if err != nil {
			return err
		}
		answerCreated(w, sub)
		return nil
	}
}

// answerCreated is the answer to POST /subscriptions, which an Idempotency-Key
// stores in the create's transaction. The secret is write-only: never in it.
func answerCreated(w http.ResponseWriter, sub notify.Subscription) {
	w.Header().Set("Location", "/subscriptions/"+sub.ID)
	w.Header().Set("ETag", rest.ETag(sub.Version))
	_ = rest.WriteJSON(w, http.StatusCreated, sub)
}

// handleSubscriptionGet serves GET /subscriptions/{id}.
func handleSubscriptionGet(svc *notify.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		sub, err := svc.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		w.Header().Set("ETag", rest.ETag(sub.Version))
		if rest.NotModified(r, sub.Version) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		_ = rest.WriteJSON(w, http.StatusOK, sub)
		return nil
	}
}

// handleSubscriptionDelete serves DELETE /subscriptions/{id}.
func handleSubscriptionDelete(svc *notify.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := svc.Delete(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// handleDeliveryList serves GET /subscriptions/{id}/deliveries.
func handleDeliveryList(svc *notify.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		page, err := rest.ParsePage(r)
		if err != nil {
			return err
		}
		ds, err := svc.Deliveries(r.Context(), r.PathValue("id"), page)
		if err != nil {
			return err
		}
		_ = rest.WriteJSON(w, http.StatusOK, rest.PageOf(ds))
		return nil
	}
}
