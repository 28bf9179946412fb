-- +goose Up
CREATE TABLE authors (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    bio        TEXT,
    birth_year INTEGER,
    version    INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE authors;
