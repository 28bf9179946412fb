-- +goose Up
-- Which relay may publish this outbox: instances of a service sharing the SQLite
-- file each run a relay, and only the holder of an unexpired lease publishes.
CREATE TABLE outbox_relay_lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1), -- one row
    holder     TEXT    NOT NULL,                   -- the relay holding it, '' at first
    epoch      INTEGER NOT NULL,                   -- + 1 at every change of holder: the fencing token
    expires_at INTEGER NOT NULL                    -- Unix nanoseconds; another relay may take it from then on
);
INSERT INTO outbox_relay_lease (id, holder, epoch, expires_at) VALUES (1, '', 0, 0);

-- +goose Down
DROP TABLE outbox_relay_lease;
