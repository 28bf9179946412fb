package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"folio/internal/inventory"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// TypePreconditionRequired is the problem type of a change of existing stock that
// names no version: 428.
const TypePreconditionRequired = "/problems/precondition-required"

// writeItem sends one item with its ETag, the version of what editors set.
func writeItem(w http.ResponseWriter, status int, it inventory.Item) {
	w.Header().Set("ETag", rest.ETag(it.Version))
	_ = rest.WriteJSON(w, status, it)
}

// handleItemList serves GET /inventory.
func handleItemList(svc *inventory.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		page, err := rest.ParsePage(r)
		if err != nil {
			return err
		}
		items, err := svc.List(r.Context(), page)
		if err != nil {
			return err
		}
		return rest.WriteJSON(w, http.StatusOK, rest.PageOf(items))
	}
}

// handleItemGet serves GET /inventory/{book_id}. It never answers 304: the copies
// reserved move with every order without a new version, and the answer shows them.
func handleItemGet(svc *inventory.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		it, err := svc.Get(r.Context(), r.PathValue("book_id"))
		if err != nil {
			return err
		}
		writeItem(w, http.StatusOK, it)
		return nil
	}
}

// handleItemPut serves PUT /inventory/{book_id}: it creates the book's stock (no
// If-Match, or If-None-Match: *) or changes it (If-Match naming its version).
func handleItemPut(svc *inventory.Service) problem.Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in inventory.Input
		if err := rest.Decode(r, &in); err != nil {
			return err
		}
		ifMatch := rest.IfMatch(r)
		pre := inventory.Precondition{Check: ifMatch.Check, Named: ifMatch.Present(),
			Absent: strings.TrimSpace(r.Header.Get("If-None-Match")) == "*"}
		it, created, err := svc.Put(r.Context(), r.PathValue("book_id"), in, pre)
		if errors.Is(err, inventory.ErrPreconditionRequired) {
			problem.Write(w, r, problem.Problem{Type: TypePreconditionRequired, Status: http.StatusPreconditionRequired,
				Detail: "this book has stock: send If-Match with the ETag of the version you change"})
			return nil
		}
		if err != nil {
			return err
		}
		if created {
			w.Header().Set("Location", "/inventory/"+it.BookID)
			writeItem(w, http.StatusCreated, it)
			return nil
		}
		writeItem(w, http.StatusOK, it)
		return nil
	}
}
