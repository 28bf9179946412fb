-- +goose Up
-- One payment per order: the commands of the order saga are idempotent by order.
-- No card number or cvc is kept, only the brand, the last four digits and a token.
CREATE TABLE payments (
    id              UUID PRIMARY KEY,
    order_id        UUID NOT NULL UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('authorised', 'captured', 'voided', 'refunded', 'declined')),
    amount          BIGINT NOT NULL CHECK (amount >= 0),
    currency        TEXT NOT NULL,
    card_brand      TEXT,
    card_last4      TEXT,
    card_token      UUID,
    decline_reason  TEXT NOT NULL DEFAULT '',
    capture_refused BOOLEAN NOT NULL DEFAULT FALSE,
    version         INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

-- The ledger: what was authorised, captured, released and refunded. The sums of
-- captures and refunds are computed from it. A payment is authorised, captured,
-- voided and refunded at most once each, in full: the unique key keeps a
-- duplicate command from ever capturing or refunding twice.
CREATE TABLE payment_entries (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id UUID NOT NULL REFERENCES payments (id),
    kind       TEXT NOT NULL CHECK (kind IN ('authorise', 'capture', 'void', 'refund')),
    amount     BIGINT NOT NULL CHECK (amount >= 0),
    at         TIMESTAMPTZ NOT NULL,
    UNIQUE (payment_id, kind)
);

-- +goose Down
DROP TABLE payment_entries;
DROP TABLE payments;
