-- +goose Up
-- Unix seconds: the account's tokens issued (iat) before it are refused.
ALTER TABLE users ADD COLUMN tokens_revoked_before BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE users DROP COLUMN tokens_revoked_before;
