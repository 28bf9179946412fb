-- +goose Up
-- The stock of each book. reserved counts the copies held by reservations; the
-- checks are the last guard of what the conditional updates already ensure: never
-- more held than on hand, never a negative count. A book the book service deleted
-- keeps (or gets) a row with deleted set: it is not for sale, for good.
CREATE TABLE stock (
    book_id        TEXT PRIMARY KEY,
    price_amount   INTEGER NOT NULL,
    price_currency TEXT NOT NULL,
    quantity       INTEGER NOT NULL CHECK (quantity >= 0),
    reserved       INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= quantity),
    version        INTEGER NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE
) WITHOUT ROWID;

-- One row per order: the reservation, and the record that the order's commands
-- were applied (a command applied again is answered from it). items is the JSON of
-- the reserved lines with their unit prices; expires_at is in Unix microseconds.
CREATE TABLE reservations (
    order_id       TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    items          TEXT NOT NULL,
    total_amount   INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    book_id        TEXT NOT NULL DEFAULT '',
    commit_failure TEXT NOT NULL DEFAULT '',
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX reservations_due ON reservations (state, expires_at);

-- +goose Down
DROP TABLE reservations;
DROP TABLE stock;
