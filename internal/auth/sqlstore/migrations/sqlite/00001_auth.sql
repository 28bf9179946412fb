-- +goose Up
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    version       INTEGER NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
) WITHOUT ROWID;

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_key BLOB NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    retired_at  TIMESTAMP
) WITHOUT ROWID;

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE users;
