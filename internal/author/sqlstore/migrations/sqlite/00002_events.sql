-- +goose Up
-- The author service's view of books, kept from book events: book_count is the
-- number of live rows of an author. version lets a newer event win whatever order
-- events arrive in; a deleted row stays as a tombstone, because book ids are never
-- reused and a late book.updated must not bring the book back. author_id is NULL
-- only for a book whose delete arrived before anything else about it.
CREATE TABLE author_books (
    book_id   TEXT PRIMARY KEY,
    author_id TEXT,
    version   INTEGER NOT NULL,
    deleted   BOOLEAN NOT NULL
) WITHOUT ROWID;
CREATE INDEX author_books_live ON author_books (author_id) WHERE NOT deleted;

-- +goose Down
DROP TABLE author_books;
