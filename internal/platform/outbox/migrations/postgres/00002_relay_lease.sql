-- +goose Up
-- Nothing: on PostgreSQL the relays take turns through a transaction-scoped advisory
-- lock (relay.go), which the server releases when a holder's connection dies. The
-- version keeps both engines' outbox schemas numbered alike.
SELECT 1;

-- +goose Down
SELECT 1;
