-- +goose Up
CREATE TABLE books (
    id             TEXT PRIMARY KEY,
    title          TEXT NOT NULL,
    author_id      TEXT NOT NULL,
    genre          TEXT NOT NULL,
    isbn           TEXT UNIQUE,
    published_year INTEGER,
    version        INTEGER NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX books_genre_id ON books (genre, id);
CREATE INDEX books_author_id_id ON books (author_id, id);

-- Authors the author service has confirmed to exist.
CREATE TABLE known_authors (
    id           TEXT PRIMARY KEY,
    confirmed_at TIMESTAMP NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE known_authors;
DROP TABLE books;
