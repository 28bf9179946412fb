package author

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	"golang.org/x/sync/singleflight"

	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// writeAuthor sends one author with its ETag.
func writeAuthor(w http.ResponseWriter, status int, a Author) {
	w.Header().Set("ETag", rest.ETag(a.Version))
	_ = rest.WriteJSON(w, status, a)
}

// handleAuthorList serves GET /authors.
func handleAuthorList(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := rest.ParsePage(r)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		authors, err := svc.List(r.Context(), page)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		_ = rest.WriteJSON(w, http.StatusOK, rest.NewPage(authors, page.Limit, func(a Author) string { return a.ID }))
	}
}

// handleAuthorCreate serves POST /authors.
func handleAuthorCreate(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in Input
		if err := rest.Decode(r, &in); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		a, err := svc.Create(idempotency.WithAnswer(r.Context(), answerCreated), in)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		answerCreated(w, a)
	}
}

// answerCreated is the answer to POST /authors, which an Idempotency-Key stores in
// the create's transaction.
func answerCreated(w http.ResponseWriter, a Author) {
	w.Header().Set("Location", "/authors/"+a.ID)
	writeAuthor(w, http.StatusCreated, a)
}

// handleAuthorGet serves GET /authors/{id}.
func handleAuthorGet(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := svc.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		if rest.NotModified(r, a.Version) {
			w.Header().Set("ETag", rest.ETag(a.Version))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeAuthor(w, http.StatusOK, a)
	}
}

// handleAuthorReplace serves PUT /authors/{id}.
func handleAuthorReplace(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in Input
		if err := rest.Decode(r, &in); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		a, err := svc.Replace(r.Context(), r.PathValue("id"), in, rest.IfMatch(r).Check)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		writeAuthor(w, http.StatusOK, a)
	}
}

// handleAuthorPatch serves PATCH /authors/{id} with an RFC 7396 merge patch.
func handleAuthorPatch(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		patch, err := rest.ReadBody(r)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		a, err := svc.Patch(r.Context(), r.PathValue("id"), patch, rest.IfMatch(r).Check)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		writeAuthor(w, http.StatusOK, a)
	}
}

// handleAuthorDelete serves DELETE /authors/{id}.
func handleAuthorDelete(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Delete(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check); err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// handleAuthorBooks serves GET /authors/{id}/books: a page of the author's books,
// asked of the book service, whose cursors it passes through.
func handleAuthorBooks(svc *Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, err := rest.ParseLimit(q)
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		if q.Has("cursor") && q.Get("cursor") == "" {
			problem.WriteError(w, r, log, errBadCursor)
			return
		}
		res, err := svc.Books(r.Context(), r.PathValue("id"), BooksQuery{Genre: q.Get("genre"), Limit: limit, Cursor: q.Get("cursor")})
		if err != nil {
			problem.WriteError(w, r, log, err)
			return
		}
		_ = rest.WriteJSON(w, http.StatusOK, res)
	}
}

// handleGenreBooks serves GET /authors/books?genre=: the genre's books, asked of the
// book service, grouped by author. Requests for a genre that arrive while another
// request for it is being answered share that answer: one round of calls to the book
// service and one encoding serve them all, so a popular genre under load costs
// little more than a single request. A request that joins a round already under way
// can miss a book committed in the milliseconds between that round's start and its
// own arrival; it never sees an answer from a round that had ended.
func handleGenreBooks(svc *Service, log *slog.Logger) http.HandlerFunc {
	var flights singleflight.Group
	return func(w http.ResponseWriter, r *http.Request) {
		genre := r.URL.Query().Get("genre")
		answer := flights.DoChan(genre, func() (any, error) {
			// The shared work must not stop because the client that started it hung
			// up; the upstream budget inside GenreBooks still bounds it.
			res, err := svc.GenreBooks(context.WithoutCancel(r.Context()), genre)
			if err != nil {
				return nil, err
			}
			return json.Marshal(res)
		})
		select {
		case <-r.Context().Done():
			return // the client is gone; nobody reads an answer
		case a := <-answer:
			if a.Err != nil {
				problem.WriteError(w, r, log, a.Err)
				return
			}
			rest.WriteEncoded(w, http.StatusOK, a.Val.([]byte))
		}
	}
}

var errBadCursor = &fault.Error{Kind: fault.Malformed, Message: "cursor was not issued by this service",
	Fields: []fault.FieldError{{Field: "cursor", Message: "was not issued by this service"}}}
