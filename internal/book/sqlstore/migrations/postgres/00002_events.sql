-- +goose Up
-- An author deleted at the author service stays in known_authors as a tombstone, so
-- that neither a late author.created nor a confirmation cached before the delete can
-- make it known again: author ids are never reused.
ALTER TABLE known_authors ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE known_authors DROP COLUMN deleted;
