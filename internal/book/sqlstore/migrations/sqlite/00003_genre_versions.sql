-- +goose Up
-- A version per genre, raised in the transaction of every write that creates,
-- changes or deletes a book of the genre, or moves one into or out of it: a listing
-- narrowed to the genre stays the same for as long as the version does, which makes
-- it the listing's ETag, checked without reading a book. A raised version is the
-- larger of the last one plus one and the time of the write in microseconds, so
-- that a database created again does not hand out a version a client still holds
-- for other books.
CREATE TABLE genre_versions (
    genre   TEXT PRIMARY KEY,
    version BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO genre_versions (genre, version) SELECT DISTINCT genre, CAST(strftime('%s', 'now') AS INTEGER) * 1000000 FROM books;

-- +goose Down
DROP TABLE genre_versions;
