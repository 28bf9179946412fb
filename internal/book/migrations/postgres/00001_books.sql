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

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state        TEXT NOT NULL,
    status       INTEGER NOT NULL,
    headers      TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE known_authors;
DROP TABLE books;
