package sqldb

import (
	"context"
	"database/sql/driver"
	"strings"
)

// SQLite connections keep the statements they execute inside transactions
// prepared. database/sql re-prepares every Tx.ExecContext on the connection, and
// SQLite's parser was a quarter of the author service's CPU applying book events
// and an eighth of the book service's creating books (POST /books profiles): each write runs the
// same few statements (the row, the outbox or inbox row, the savepoints of group
// commit) on the same few connections. DB's own methods keep their *sql.Stmt; this
// covers the statements that callers run on a *sql.Tx.

// maxCachedStmts bounds the statements one connection keeps. Statements beyond it
// are prepared and finalized per call, as before: a service runs a few dozen
// distinct writes, so only a caller that builds its SQL per call reaches it.
const maxCachedStmts = 128

// stmtCachingConnector opens the SQLite driver's connections (sqlite.NewConnector)
// as connections that keep their statements.
type stmtCachingConnector struct {
	driver.Connector
}

func (c stmtCachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return newStmtCachingConn(conn)
}

// sqliteConn is what the SQLite driver's connection offers database/sql.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// stmtCachingConn is a connection of the SQLite driver that executes statements
// through the statements it prepared before. database/sql uses a connection from
// one goroutine at a time, so the map needs no lock.
type stmtCachingConn struct {
	sqliteConn
	stmts map[string]driver.Stmt
}

func newStmtCachingConn(conn driver.Conn) (driver.Conn, error) {
	sc, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, errSQLiteConn
	}
	return &stmtCachingConn{sqliteConn: sc, stmts: make(map[string]driver.Stmt)}, nil
}

// ExecContext runs query with the statement prepared for it on this connection.
// A statement that fails is reset by the driver and stays usable; one whose schema
// changed is prepared again by SQLite itself (sqlite3_prepare_v2).
func (c *stmtCachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	st, ok := c.stmts[query]
	if !ok {
		if !cacheable(query) || len(c.stmts) >= maxCachedStmts {
			return c.sqliteConn.ExecContext(ctx, query, args)
		}
		var err error
		if st, err = c.sqliteConn.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		c.stmts[query] = st
	}
	return st.(driver.StmtExecContext).ExecContext(ctx, args)
}

// cacheable reports whether query is one statement: a script (a migration, say)
// runs once and is left to the driver.
func cacheable(query string) bool {
	return !strings.Contains(strings.TrimRight(query, "; \t\n"), ";")
}

// Close finalizes the kept statements, then closes the connection.
func (c *stmtCachingConn) Close() error {
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
	return c.sqliteConn.Close()
}
