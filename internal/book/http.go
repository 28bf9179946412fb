package book

import (
	"log/slog"
	"net/http"

	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// writeBook sends one book with its ETag.
func writeBook(w http.ResponseWriter, status int, b Book) {
	w.Header().Set("ETag", rest.ETag(b.Version))
	_ = rest.WriteJSON(w, status, b)
}

// handleBookList serves GET /books.
func handleBookList(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := rest.ParsePage(r)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		q := r.URL.Query()
		books, err := svc.List(r.Context(), Filter{Genre: q.Get("genre"), AuthorID: q.Get("author_id")}, page)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		_ = rest.WriteJSON(w, http.StatusOK, rest.NewPage(books, page.Limit, func(b Book) string { return b.ID }))
	}
}

// handleBookCreate serves POST /books.
func handleBookCreate(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in Input
		if err := rest.Decode(r, &in); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		b, err := svc.Create(idempotency.WithAnswer(r.Context(), answerCreated), in)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		answerCreated(w, b)
	}
}

// answerCreated is the answer to POST /books, which an Idempotency-Key stores in the
// create's transaction.
func answerCreated(w http.ResponseWriter, b Book) {
	w.Header().Set("Location", "/books/"+b.ID)
	writeBook(w, http.StatusCreated, b)
}

// handleBookGet serves GET /books/{id}.
func handleBookGet(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := svc.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		if rest.NotModified(r, b.Version) {
			w.Header().Set("ETag", rest.ETag(b.Version))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeBook(w, http.StatusOK, b)
	}
}

// handleBookReplace serves PUT /books/{id}.
func handleBookReplace(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in Input
		if err := rest.Decode(r, &in); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		b, err := svc.Replace(r.Context(), r.PathValue("id"), in, rest.IfMatch(r).Check)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		writeBook(w, http.StatusOK, b)
	}
}

// handleBookPatch serves PATCH /books/{id} with an RFC 7396 merge patch.
func handleBookPatch(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		patch, err := rest.ReadBody(r)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		b, err := svc.Patch(r.Context(), r.PathValue("id"), patch, rest.IfMatch(r).Check)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		writeBook(w, http.StatusOK, b)
	}
}

// handleBookDelete serves DELETE /books/{id}.
func handleBookDelete(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Delete(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
