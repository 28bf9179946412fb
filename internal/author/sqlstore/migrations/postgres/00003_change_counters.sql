-- +goose Up
-- Counters that every committed change to what GET /authors/books shows raises: an
-- author created, changed or deleted, a book event applied. Their sum tells the
-- author service's replicas, which share this database, whether an answer they
-- built is still current, with one cheap read. There are several, each change
-- raising the one its id picks, so that concurrent transactions on PostgreSQL seldom
-- wait for one another's row. They start at the time of the migration in
-- microseconds, so that a database created again does not repeat a sum.
CREATE TABLE change_counters (
    slot INTEGER PRIMARY KEY,
    n    BIGINT NOT NULL
);
INSERT INTO change_counters (slot, n)
    SELECT slot, (extract(epoch FROM now()) * 1000000)::BIGINT FROM generate_series(0, 15) AS slot;

-- +goose Down
DROP TABLE change_counters;
