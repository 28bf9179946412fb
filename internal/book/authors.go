package book

import (
	"context"
	"log/slog"
)

// AuthorChecker is what AuthorDirectory asks about authors it has not confirmed yet:
// the author service.
type AuthorChecker interface {
	Exists(ctx context.Context, id string) (bool, error)
}

// AuthorDirectory answers Exists from the author ids kept in the book database (from
// author events, and from the author service's earlier answers) and asks the author
// service only about ids it has not seen. An id an author.deleted event named is
// unknown for good, without asking.
type AuthorDirectory struct {
	store  *SQLStore
	remote AuthorChecker
	log    *slog.Logger
}

var _ Authors = (*AuthorDirectory)(nil)

// NewAuthorDirectory returns a directory kept in store that falls back to remote.
func NewAuthorDirectory(store *SQLStore, remote AuthorChecker, log *slog.Logger) *AuthorDirectory {
	return &AuthorDirectory{store: store, remote: remote, log: log}
}

// Exists reports whether the author exists. Errors: Unavailable when the author
// service is needed and cannot answer.
func (d *AuthorDirectory) Exists(ctx context.Context, id string) (bool, error) {
	switch st, err := d.store.authorStatus(ctx, id); {
	case err != nil:
		return false, err
	case st == authorKnown:
		return true, nil
	case st == authorDeleted:
		return false, nil
	}
	ok, err := d.remote.Exists(ctx, id)
	if err != nil || !ok {
		return ok, err
	}
	if err := d.store.RememberAuthor(ctx, id); err != nil {
		// The answer stands; the next request for this author asks again.
		d.log.WarnContext(ctx, "remember author", "err", err)
	}
	return true, nil
}
