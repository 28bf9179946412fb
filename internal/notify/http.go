package notify

import (
	"log/slog"
	"net/http"

	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// handleList serves GET /subscriptions.
func handleList(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := rest.ParsePage(r)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		subs, err := svc.List(r.Context(), page)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		_ = rest.WriteJSON(w, http.StatusOK, rest.NewPage(subs, page.Limit, func(s Subscription) string { return s.ID }))
	}
}

// handleCreate serves POST /subscriptions.
func handleCreate(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in Input
		if err := rest.Decode(r, &in); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		sub, err := svc.Create(idempotency.WithAnswer(r.Context(), answerCreated), in)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		answerCreated(w, sub)
	}
}

// answerCreated is the answer to POST /subscriptions, which an Idempotency-Key
// stores in the create's transaction. The secret is write-only: never in it.
func answerCreated(w http.ResponseWriter, sub Subscription) {
	w.Header().Set("Location", "/subscriptions/"+sub.ID)
	w.Header().Set("ETag", rest.ETag(sub.Version))
	_ = rest.WriteJSON(w, http.StatusCreated, sub)
}

// handleGet serves GET /subscriptions/{id}.
func handleGet(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sub, err := svc.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		w.Header().Set("ETag", rest.ETag(sub.Version))
		if rest.NotModified(r, sub.Version) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_ = rest.WriteJSON(w, http.StatusOK, sub)
	}
}

// handleDelete serves DELETE /subscriptions/{id}.
func handleDelete(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Delete(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// handleDeliveries serves GET /subscriptions/{id}/deliveries.
func handleDeliveries(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := rest.ParsePage(r)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		ds, err := svc.Deliveries(r.Context(), r.PathValue("id"), page)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		_ = rest.WriteJSON(w, http.StatusOK, rest.NewPage(ds, page.Limit, func(d Delivery) string { return d.ID }))
	}
}
