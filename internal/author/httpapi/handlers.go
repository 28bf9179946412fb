package httpapi

import (
	"context"
	"encoding/json"
	"net/http"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"folio/internal/author"
	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// writeAuthor sends one author with its ETag.
func writeAuthor(w http.ResponseWriter, status int, a author.Author) {
	w.Header().Set("ETag", rest.ETag(a.Version))
	_ = rest.WriteJSON(w, status, a)
}

// handleAuthorList serves GET /authors.
func handleAuthorList(svc *author.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := rest.ParsePage(r)
		if err != nil {
			return err
		}
		page, err := svc.List(r.Context(), req)
		if err != nil {
			return err
		}
		return rest.WriteJSON(w, http.StatusOK, rest.PageOf(page))
	}
}

// handleAuthorCreate serves POST /authors.
func handleAuthorCreate(svc *author.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in author.Input
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		a, err := svc.Create(idempotency.WithAnswer(r.Context(), answerCreated), in)
		if err != nil {
			return err
		}
		answerCreated(w, a)
		return nil
	}
}

// answerCreated is the answer to POST /authors, which an Idempotency-Key stores in
// the create's transaction.
func answerCreated(w http.ResponseWriter, a author.Author) {
	w.Header().Set("Location", "/authors/"+a.ID)
	writeAuthor(w, http.StatusCreated, a)
}

// handleAuthorGet serves GET /authors/{id}.
func handleAuthorGet(svc *author.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		a, err := svc.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		if rest.NotModified(r, a.Version) {
			w.Header().Set("ETag", rest.ETag(a.Version))
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		writeAuthor(w, http.StatusOK, a)
		return nil
	}
}

// handleAuthorReplace serves PUT /authors/{id}: every writable field is replaced,
// whatever the author holds now.
func handleAuthorReplace(svc *author.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in author.Input
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		a, err := svc.Update(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check,
			func(author.Author) (author.Input, error) { return in, nil })
		if err != nil {
			return err
		}
		writeAuthor(w, http.StatusOK, a)
		return nil
	}
}

// handleAuthorPatch serves PATCH /authors/{id} with an RFC 7396 merge patch, applied
// to the author as the update finds it (again, when it changed concurrently). A patch
// or a result that is not an author document is Malformed.
func handleAuthorPatch(svc *author.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		patch, err := rest.ReadBody(r)
		if err != nil {
			return err
		}
		a, err := svc.Update(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check,
			func(cur author.Author) (author.Input, error) {
				var in author.Input
				return in, rest.MergePatch(cur.Input(), patch, &in)
			})
		if err != nil {
			return err
		}
		writeAuthor(w, http.StatusOK, a)
		return nil
	}
}

// handleAuthorDelete serves DELETE /authors/{id}.
func handleAuthorDelete(svc *author.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := svc.Delete(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// handleAuthorBooksGet serves GET /authors/{id}/books: a page of the author's books,
// asked of the book service, whose cursors it passes through.
func handleAuthorBooksGet(svc *author.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		limit, err := rest.ParseLimit(q)
		if err != nil {
			return err
		}
		if q.Has("cursor") && q.Get("cursor") == "" {
			return errBadCursor
		}
		res, err := svc.Books(r.Context(), r.PathValue("id"), author.BooksQuery{Genre: q.Get("genre"), Limit: limit, Cursor: q.Get("cursor")})
		if err != nil {
			return err
		}
		return rest.WriteJSON(w, http.StatusOK, res)
	}
}

// handleGenreBooksGet serves GET /authors/books?genre=: the genre's books, asked of
// the book service, grouped by author. It keeps the encoded answers of the
// maxGenreAnswers genres most recently asked for, and asks the book service, with
// the kept answer's ETag, whether the genre's books changed
// (author.Service.GenreBooksSince): while neither they nor any author did, the kept
// bytes are the answer, and the call costs one 304 (decision 26). Requests for a
// genre that arrive while another request for it is being answered share that
// answer, so a popular genre under load costs little more than a single request. A request that joins a round already under way can miss a book
// committed in the milliseconds between that round's start and its own arrival; it
// never sees an answer from a round that had ended.
func handleGenreBooksGet(svc *author.Service) problem.Handler {
	var flights singleflight.Group
	answers, _ := lru.New[string, genreAnswer](maxGenreAnswers) // errs only on a size below 1
	return func(w http.ResponseWriter, r *http.Request) error {
		genre := r.URL.Query().Get("genre")
		answer := flights.DoChan(genre, func() (any, error) {
			// The shared work must not stop because the client that started it hung
			// up; the upstream budget inside GenreBooksSince still bounds it.
			ctx := context.WithoutCancel(r.Context())
			kept, ok := answers.Get(genre)
			res, stamp, unchanged, err := svc.GenreBooksSince(ctx, genre, kept.stamp)
			if err != nil {
				return nil, err
			}
			if ok && unchanged {
				return kept.body, nil
			}
			body, err := json.Marshal(res)
			if err != nil {
				return nil, err
			}
			answers.Add(genre, genreAnswer{stamp: stamp, body: body})
			return body, nil
		})
		select {
		case <-r.Context().Done():
			return nil // the client is gone; nobody reads an answer
		case a := <-answer:
			if a.Err != nil {
				return a.Err
			}
			rest.WriteEncoded(w, http.StatusOK, a.Val.([]byte))
			return nil
		}
	}
}

// maxGenreAnswers bounds the answers kept: genres are whatever slugs clients send,
// and each answer may hold up to a thousand books.
const maxGenreAnswers = 256

// genreAnswer is an encoded answer of GET /authors/books and what it was built from.
type genreAnswer struct {
	stamp author.GenreStamp
	body  []byte
}

var errBadCursor = &fault.Error{Kind: fault.Malformed, Message: "cursor was not issued by this service",
	Fields: []fault.FieldError{{Field: "cursor", Message: "was not issued by this service"}}}
