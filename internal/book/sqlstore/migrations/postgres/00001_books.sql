-- +goose Up
CREATE TABLE books (
    id             UUID PRIMARY KEY,
    title          TEXT NOT NULL,
    author_id      UUID NOT NULL,
    genre          TEXT NOT NULL,
    isbn           TEXT UNIQUE,
    published_year INTEGER,
    version        INTEGER NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX books_genre_id ON books (genre, id);
CREATE INDEX books_author_id_id ON books (author_id, id);

-- Authors the author service has confirmed to exist.
CREATE TABLE known_authors (
    id           UUID PRIMARY KEY,
    confirmed_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE known_authors;
DROP TABLE books;
