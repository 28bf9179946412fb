-- +goose Up
-- An order and where its saga stands. The saga's times are Unix microseconds, so
-- that the timer's due query compares numbers on every engine alike.
CREATE TABLE orders (
    id              UUID PRIMARY KEY,
    user_id         TEXT NOT NULL,
    state           TEXT NOT NULL,
    total_amount    BIGINT,
    total_currency  TEXT,
    card_brand      TEXT NOT NULL,
    card_last4      TEXT NOT NULL,
    reason          TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    version         INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    step_started_at BIGINT NOT NULL,
    next_attempt_at BIGINT,
    step_deadline   BIGINT,
    -- The compensation states still to go, comma-separated, and its final state.
    then_states     TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    -- The card sealed to the payment service, '' once the authorisation is answered.
    sealed_card     TEXT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX orders_user_id_id ON orders (user_id, id);
CREATE INDEX orders_next_attempt_at ON orders (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

CREATE TABLE order_items (
    order_id            UUID NOT NULL REFERENCES orders (id),
    position            INTEGER NOT NULL,
    book_id             UUID NOT NULL,
    quantity            INTEGER NOT NULL,
    unit_price_amount   BIGINT,
    unit_price_currency TEXT,
    PRIMARY KEY (order_id, position)
);

-- +goose Down
DROP TABLE order_items;
DROP TABLE orders;
