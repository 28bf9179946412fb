package httpapi

import (
	"encoding/json"
	"net/http"

	lru "github.com/hashicorp/golang-lru/v2"

	"folio/internal/book"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// writeBook sends one book with its ETag.
func writeBook(w http.ResponseWriter, status int, b book.Book) {
	w.Header().Set("ETag", rest.ETag(b.Version))
	_ = rest.WriteJSON(w, status, b)
}

// handleBookList serves GET /books. A listing narrowed to a genre carries an ETag
// and answers 304 to an If-None-Match that names it, without reading a book: the
// tag is the genre's version (book.Service.GenreVersion) and a digest of the
// query, so it changes whenever any book of the genre does, on every page. The
// encoded listings of the maxKeptListings queries narrowed to a genre most recently
// asked are kept with the version they were read at, and served again while the
// genre's version stays: one read of the version instead of the books, every
// replica checking the version all replicas raise.
func handleBookList(svc *book.Service) problem.Handler {
	kept, _ := lru.New[string, keptListing](maxKeptListings) // errs only on a size below 1
	return func(w http.ResponseWriter, r *http.Request) error {
		page, err := rest.ParsePage(r)
		if err != nil {
			return err
		}
		q := r.URL.Query()
		f := book.Filter{Genre: q.Get("genre"), AuthorID: q.Get("author_id")}
		if f.Genre == "" {
			books, err := svc.List(r.Context(), f, page)
			if err != nil {
				return err
			}
			return rest.WriteJSON(w, http.StatusOK, rest.PageOf(books))
		}
		// Read before the listing, so that the listing is at least as new as its tag.
		v, err := svc.GenreVersion(r.Context(), f.Genre)
		if err != nil {
			return err
		}
		key := book.ListingKey(f, page)
		tag := book.GenreListingTag(v, key)
		w.Header().Set("ETag", tag)
		if rest.NoneMatch(r, tag) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		if l, ok := kept.Get(key); ok && l.version == v {
			rest.WriteEncoded(w, http.StatusOK, l.body)
			return nil
		}
		books, err := svc.List(r.Context(), f, page)
		if err != nil {
			return err
		}
		body, err := json.Marshal(rest.PageOf(books))
		if err != nil {
			return err
		}
		kept.Add(key, keptListing{version: v, body: body})
		rest.WriteEncoded(w, http.StatusOK, body)
		return nil
	}
}

// maxKeptListings bounds the listings kept: up to 100 books each.
const maxKeptListings = 512

// keptListing is an encoded listing narrowed to a genre, read at the genre's version.
type keptListing struct {
	version int64
	body    []byte
}

// handleBookCreate serves POST /books.
func handleBookCreate(svc *book.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in book.Input
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		b, err := svc.Create(idempotency.WithAnswer(r.Context(), answerCreated), in)
		if err != nil {
			return err
		}
		answerCreated(w, b)
		return nil
	}
}

// answerCreated is the answer to POST /books, which an Idempotency-Key stores in the
// create's transaction.
func answerCreated(w http.ResponseWriter, b book.Book) {
	w.Header().Set("Location", "/books/"+b.ID)
	writeBook(w, http.StatusCreated, b)
}

// handleBookGet serves GET /books/{id}.
func handleBookGet(svc *book.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := svc.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		if rest.NotModified(r, b.Version) {
			w.Header().Set("ETag", rest.ETag(b.Version))
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		writeBook(w, http.StatusOK, b)
		return nil
	}
}

// handleBookReplace serves PUT /books/{id}.
func handleBookReplace(svc *book.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in book.Input
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		b, err := svc.Replace(r.Context(), r.PathValue("id"), in, rest.IfMatch(r).Check)
		if err != nil {
			return err
		}
		writeBook(w, http.StatusOK, b)
		return nil
	}
}

// handleBookPatch serves PATCH /books/{id} with an RFC 7396 merge patch. The patch
// applies to the book as the service holds it at each attempt of the update, so that
// a concurrent change is patched, not overwritten.
func handleBookPatch(svc *book.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		patch, err := rest.ReadBody(r)
		if err != nil {
			return err
		}
		b, err := svc.Update(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check, func(cur book.Book) (book.Input, error) {
			var in book.Input
			return in, rest.MergePatch(cur.Input(), patch, &in)
		})
		if err != nil {
			return err
		}
		writeBook(w, http.StatusOK, b)
		return nil
	}
}

// handleBookDelete serves DELETE /books/{id}.
func handleBookDelete(svc *book.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := svc.Delete(r.Context(), r.PathValue("id"), rest.IfMatch(r).Check); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
