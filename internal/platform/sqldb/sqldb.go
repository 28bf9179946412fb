// Package sqldb opens a service's own database, SQLite (the default, pure Go) or
// PostgreSQL (pgx), and applies the service's embedded versioned migrations.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/prometheus/client_golang/prometheus"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"folio/internal/platform/tracing"
)

// Dialect names the SQL engine behind a DB.
type Dialect string

// The engines Folio runs on.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a service's database handle and the engine it speaks to. Its Query, QueryRow
// and Exec methods prepare each distinct statement once and reuse it: parsing SQL
// was about half the cost of reading one book by id on SQLite.
type DB struct {
	*sql.DB
	Dialect Dialect
	stmts   sync.Map // query text → *sql.Stmt
	group   groupCommit
}

// prepared returns the statement for query, preparing it on first use.
func (db *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := db.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := db.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// QueryContext runs a query with a prepared statement.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (rows *sql.Rows, err error) {
	ctx, span := db.startStatement(ctx, query)
	defer func() { tracing.End(span, err) }()
	st, err := db.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs a query expected to return at most one row with a prepared
// statement. A statement that fails to prepare reports its error from Scan.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx, span := db.startStatement(ctx, query)
	defer tracing.End(span, nil)
	st, err := db.prepared(ctx, query)
	if err != nil {
		return db.DB.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// ExecContext runs a statement with a prepared statement.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	ctx, span := db.startStatement(ctx, query)
	defer func() { tracing.End(span, err) }()
	st, err := db.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// RegisterMetrics registers the database's metrics (group commit's writes per
// sync, on SQLite) in reg.
func (db *DB) RegisterMetrics(reg prometheus.Registerer) error {
	if db.Dialect != SQLite {
		return nil
	}
	if err := reg.Register(db.group.size); err != nil {
		return fmt.Errorf("sqldb metrics: %w", err)
	}
	return nil
}

// Close closes the prepared statements and the database.
func (db *DB) Close() error {
	db.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return db.DB.Close()
}

// Open connects to dsn: a postgres:// or postgresql:// URL for PostgreSQL, or
// sqlite:PATH (or a plain file path) for SQLite, whose directory is created if needed.
func Open(ctx context.Context, dsn string) (*DB, error) {
	var db *DB
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		sdb, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		sdb.SetMaxOpenConns(20)
		sdb.SetMaxIdleConns(20)
		sdb.SetConnMaxIdleTime(5 * time.Minute)
		db = &DB{DB: sdb, Dialect: Postgres}
	default:
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:")
		if path == "" {
			return nil, errors.New("open sqlite: empty path")
		}
		if err := private(path); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		// WAL lets readers run beside the one writer; synchronous(FULL) makes a commit
		// durable before it is acknowledged; _txlock=immediate takes the write lock at
		// BEGIN, so two writers wait for each other instead of failing to upgrade.
		// temp_store(MEMORY) keeps the savepoints' sub-journals (group commit runs
		// every write in one) out of temporary files: a write system call per page.
		q := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(FULL)", "foreign_keys(ON)", "temp_store(MEMORY)"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
		connector, err := sqlite.NewConnector("file:" + path + "?" + q.Encode())
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		sdb := sql.OpenDB(stmtCachingConnector{connector})
		sdb.SetMaxOpenConns(8)
		sdb.SetMaxIdleConns(8)
		db = &DB{DB: sdb, Dialect: SQLite}
	}
	db.group.size = newGroupSize()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", db.Dialect, err)
	}
	return db, nil
}

// private makes the SQLite file at path readable by its owner alone before the
// driver opens it: a new directory is 0700, and the database is 0600, created so if
// missing (SQLite gives its -wal and -shm files the database's mode) and narrowed if
// an earlier version left it, or its -wal and -shm, readable by others. A database
// holds password hashes, sealed keys and webhook secrets. An existing directory keeps
// its mode: it may be a directory of the operator's that holds more than Folio's.
func private(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, info.Mode().Perm()&0o700); err != nil {
				return err
			}
		}
	}
	return nil
}

// Migrate applies the migrations in migrations/<dialect>/ of fsys that the database
// does not have yet. Instances starting together may call it at once on one
// database: on PostgreSQL the advisory lock migrateLockID makes them take turns;
// on SQLite an instance that loses the race to another retries (see migrate).
func (db *DB) Migrate(ctx context.Context, fsys fs.FS) error {
	return db.migrate(ctx, fsys, migrateLockID)
}

// migrateLockID is the PostgreSQL advisory lock Migrate holds while it migrates a
// service's own tables. Advisory locks are per database, and each service has its
// own; it differs from the locks of the platform's MigrateOwn callers (outbox,
// inbox, idempotency), whose migrations follow the service's.
const migrateLockID int64 = 0x666f6c696f6d69 // "foliomi"

// MigrateOwn is Migrate for a platform package that keeps tables of its own in a
// service's database (the outbox, the inbox): versionTable records its migrations
// apart from the service's, and on PostgreSQL the advisory lock lockID keeps
// instances starting together from migrating it at once without waiting on the
// service's own migrations.
func (db *DB) MigrateOwn(ctx context.Context, fsys fs.FS, versionTable string, lockID int64) error {
	if err := db.migrate(ctx, fsys, lockID, goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true)); err != nil {
		return fmt.Errorf("%s: %w", versionTable, err)
	}
	return nil
}

// migrate applies fsys's migrations for db's engine under the PostgreSQL advisory
// lock lockID.
//
// SQLite has no such lock, and goose reads which migrations a database has before
// it applies the first one it lacks: two instances starting together both apply
// it, each in a transaction of its own, and the second fails (table already
// exists) and rolls back. The loser then tries again, as long as the database's
// version moved on since its last try: the winner applied what the loser failed
// on. Each try either succeeds or finds the version higher, so this ends; a
// migration that fails on its own fails again with no progress and is returned.
// Every SQLite migration of Folio's runs in a transaction, so a failed one leaves
// nothing behind.
func (db *DB) migrate(ctx context.Context, fsys fs.FS, lockID int64, opts ...goose.ProviderOption) error {
	sub, err := fs.Sub(fsys, "migrations/"+string(db.Dialect))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	dialect := goose.DialectSQLite3
	if db.Dialect == Postgres {
		dialect = goose.DialectPostgres
		// goose tries the lock every second, for five minutes at most: long
		// enough for another instance's migrations, short enough to notice one
		// that hangs holding it.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(1, 300))
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.DB, sub, opts...)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if db.Dialect != SQLite {
		if _, err := p.Up(ctx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return nil
	}
	version, err := p.GetDBVersion(ctx) // creates the version table if missing
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for {
		_, err := p.Up(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		now, verr := p.GetDBVersion(ctx)
		if verr != nil || now <= version {
			return fmt.Errorf("migrate: %w", err)
		}
		version = now
	}
}

// InTx runs fn in a transaction, committing when fn returns nil. fn must do all
// its work through tx.
//
// On SQLite, calls that arrive while a transaction is committing share the next
// one (group commit): each runs in a savepoint of its own, so a failing fn undoes
// only its own work, but they commit, and sync the disk, once. SQLite has one
// writer at a time and syncs on every commit; without this, concurrent writers
// queue on the write lock (sleeping in its busy handler) and each pays a sync.
// fn runs on another goroutine then; a panic in it is raised again in the caller.
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	ctx, span := db.startSpan(ctx, "transaction")
	defer func() { tracing.End(span, err) }()
	if db.Dialect == SQLite {
		return db.group.run(db, ctx, fn)
	}
	return db.inOwnTx(ctx, fn)
}

func (db *DB) inOwnTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback() // or the connection stays in the transaction
			panic(v)
		}
	}()
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// errSQLiteConn means the SQLite driver's connections no longer offer what
// database/sql uses of them (an upgrade of the driver changed them).
var errSQLiteConn = errors.New("open sqlite: the driver's connection lacks a method database/sql uses")

// IsUniqueViolation reports whether err is a unique-constraint failure on either engine.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
