-- +goose Up
CREATE TABLE authors (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    bio        TEXT,
    birth_year INTEGER,
    version    INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE authors;
