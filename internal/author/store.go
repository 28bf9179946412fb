package author

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the author database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// SQLStore keeps authors in SQLite or PostgreSQL; its SQL is the same on both.
type SQLStore struct {
	db *sqldb.DB
}

var _ Store = (*SQLStore)(nil)

// NewSQLStore returns a store over db, which must be migrated with Migrations.
func NewSQLStore(db *sqldb.DB) *SQLStore { return &SQLStore{db: db} }

const authorColumns = `id, name, bio, birth_year, version, created_at, updated_at`

// getManyBatch is how many ids one GetMany query asks for, well below the bind
// parameter limits of both engines.
const getManyBatch = 500

func scanAuthor(row interface{ Scan(...any) error }) (Author, error) {
	var a Author
	var bio sql.NullString
	var year sql.NullInt64
	err := row.Scan(&a.ID, &a.Name, &bio, &year, &a.Version, &a.CreatedAt, &a.UpdatedAt)
	if bio.Valid {
		a.Bio = &bio.String
	}
	if year.Valid {
		y := int(year.Int64)
		a.BirthYear = &y
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, err
}

// Create inserts a. Errors: only unclassified ones (the database failed).
func (s *SQLStore) Create(ctx context.Context, a Author) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO authors (`+authorColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		a.ID, a.Name, a.Bio, a.BirthYear, a.Version, a.CreatedAt, a.UpdatedAt)
	if err != nil {
		return fmt.Errorf("create author: %w", err)
	}
	return nil
}

// Get returns the author with id. Errors: NotFound.
func (s *SQLStore) Get(ctx context.Context, id string) (Author, error) {
	a, err := scanAuthor(s.db.QueryRowContext(ctx, `SELECT `+authorColumns+` FROM authors WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Author{}, errNotFound
	}
	if err != nil {
		return Author{}, fmt.Errorf("get author %s: %w", id, err)
	}
	return a, nil
}

// GetMany returns the authors among ids that exist, keyed by id; ids of no author
// are left out. The ids must be valid ids (see rest.ValidID). Errors: only
// unclassified ones (the database failed).
func (s *SQLStore) GetMany(ctx context.Context, ids []string) (map[string]Author, error) {
	found := make(map[string]Author, len(ids))
	for batch := range slices.Chunk(ids, getManyBatch) {
		marks := make([]string, len(batch))
		args := make([]any, len(batch))
		for i, id := range batch {
			marks[i] = "$" + strconv.Itoa(i+1)
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, `SELECT `+authorColumns+` FROM authors WHERE id IN (`+strings.Join(marks, ", ")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("get authors: %w", err)
		}
		err = func() error {
			defer rows.Close()
			for rows.Next() {
				a, err := scanAuthor(rows)
				if err != nil {
					return err
				}
				found[a.ID] = a
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, fmt.Errorf("get authors: %w", err)
		}
	}
	return found, nil
}

// List returns up to limit authors after the id given, in id order. Errors: only
// unclassified ones (the database failed).
func (s *SQLStore) List(ctx context.Context, after string, limit int) ([]Author, error) {
	q := `SELECT ` + authorColumns + ` FROM authors ORDER BY id LIMIT $1`
	args := []any{limit}
	if after != "" {
		q = `SELECT ` + authorColumns + ` FROM authors WHERE id > $1 ORDER BY id LIMIT $2`
		args = []any{after, limit}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list authors: %w", err)
	}
	defer rows.Close()
	authors := make([]Author, 0, limit)
	for rows.Next() {
		a, err := scanAuthor(rows)
		if err != nil {
			return nil, fmt.Errorf("list authors: %w", err)
		}
		authors = append(authors, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list authors: %w", err)
	}
	return authors, nil
}

// Update writes a if the stored author is at a.Version-1. Errors: NotFound, ErrStale.
func (s *SQLStore) Update(ctx context.Context, a Author) error {
	res, err := s.db.ExecContext(ctx, `UPDATE authors SET name = $1, bio = $2, birth_year = $3, version = $4,
		updated_at = $5 WHERE id = $6 AND version = $7`,
		a.Name, a.Bio, a.BirthYear, a.Version, a.UpdatedAt, a.ID, a.Version-1)
	if err != nil {
		return fmt.Errorf("update author %s: %w", a.ID, err)
	}
	return s.checkWritten(ctx, res, a.ID)
}

// Delete removes the author if it is at version. Errors: NotFound, ErrStale.
func (s *SQLStore) Delete(ctx context.Context, id string, version int) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM authors WHERE id = $1 AND version = $2`, id, version)
	if err != nil {
		return fmt.Errorf("delete author %s: %w", id, err)
	}
	return s.checkWritten(ctx, res, id)
}

// checkWritten tells a missing author from one whose version moved on.
func (s *SQLStore) checkWritten(ctx context.Context, res sql.Result, id string) error {
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM authors WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("check author %s: %w", id, err)
	}
	return ErrStale
}
