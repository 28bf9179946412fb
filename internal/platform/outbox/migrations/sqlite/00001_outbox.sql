-- +goose Up
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- publishing order
    id         TEXT    NOT NULL UNIQUE,           -- event id (UUIDv7)
    event_type TEXT    NOT NULL,                  -- "book.created"
    aggregate  TEXT    NOT NULL,                  -- resource id
    body       TEXT    NOT NULL,                  -- JSON broker.Envelope
    headers    TEXT    NOT NULL,                  -- JSON object of message headers
    created_at INTEGER NOT NULL,                  -- Unix nanoseconds
    sent_at    INTEGER                            -- Unix nanoseconds; NULL until the broker acknowledged it
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- +goose Down
DROP TABLE outbox;
