-- +goose Up
-- The secret is stored readable because every delivery is signed with it.
CREATE TABLE subscriptions (
    id         UUID PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- One row per event type a subscription asks for, so that an event finds its
-- subscribers with an index lookup. The position keeps the order the client gave.
CREATE TABLE subscription_events (
    subscription_id UUID NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, event_type)
);
CREATE INDEX subscription_events_type ON subscription_events (event_type, subscription_id);

-- Each event that has at least one delivery, with the exact bytes received, which
-- every delivery sends and signs.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    body        BYTEA NOT NULL,
    received_at BIGINT NOT NULL
);

-- Scheduling times are Unix milliseconds: they are compared in SQL, and integers
-- compare the same on both engines.
CREATE TABLE deliveries (
    id               UUID PRIMARY KEY,
    subscription_id  UUID NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES events (id),
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    last_error       TEXT,
    first_attempt_at BIGINT,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT,
    updated_at       BIGINT NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX deliveries_subscription_id ON deliveries (subscription_id, id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_event_id ON deliveries (event_id);

-- +goose Down
DROP TABLE deliveries;
DROP TABLE events;
DROP TABLE subscription_events;
DROP TABLE subscriptions;
