package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"folio/internal/platform/polltest"
	"folio/internal/platform/problem"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestDiskFullAndFreed runs the book service with its database on a small tmpfs
// and fills the disk for real. Book POSTs then get 503 storage-unavailable
// problem+json with Retry-After, never a 500 or the driver's words; GETs keep
// working and /readyz stays 200 (decision 20). Once the filler is deleted POSTs
// succeed again without a restart, the file passes integrity_check and every
// acknowledged book is there. Needs root to mount (see sqldbtest.Tmpfs).
func TestDiskFullAndFreed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	dir := sqldbtest.Tmpfs(t, 8<<20)
	dbPath := filepath.Join(dir, "book.db")
	author, book := startPair(t, nil, []string{"FOLIO_DATABASE_URL=sqlite:" + dbPath})
	sys := &system{book: book, author: author}
	authorID := createAuthor(t, sys, "Ursula K. Le Guin")

	var acked []string
	post := func(i int) response {
		return call(t, "POST", book.URL()+"/books", map[string]any{
			"title": fmt.Sprintf("Book %d %s", i, strings.Repeat("x", 250)), "author_id": authorID, "genre": "fantasy",
		}, "Authorization", editorAuth(t))
	}
	refused := 0
	// check accepts a 201 (noting the book) or a clean 503, and fails on anything else.
	check := func(r response) {
		t.Helper()
		switch r.status {
		case http.StatusCreated:
			acked = append(acked, r.json(t)["id"].(string))
		case http.StatusServiceUnavailable:
			refused++
			expect(t, r, http.StatusServiceUnavailable)
			if typ := problemType(t, r); typ != problem.TypeStorageUnavailable {
				t.Fatalf("503 of type %q, want %q: %s", typ, problem.TypeStorageUnavailable, r.body)
			}
			if ra := r.header.Get("Retry-After"); ra != fmt.Sprint(int(sqldb.StorageFullRetryAfter.Seconds())) {
				t.Fatalf("Retry-After %q, want %v", ra, sqldb.StorageFullRetryAfter)
			}
			if strings.Contains(string(r.body), "(13)") || strings.Contains(string(r.body), dir) {
				t.Fatalf("the answer leaks the driver's error: %s", r.body)
			}
		default:
			t.Fatalf("POST /books on a full disk: %d %s, want 201 or 503", r.status, r.body)
		}
	}

	for i := range 20 {
		r := post(i)
		expect(t, r, http.StatusCreated)
		check(r)
	}
	filler := sqldbtest.Fill(t, dir)
	// The WAL reuses the space a checkpoint gave back, so some POSTs may still fit:
	// post until the disk refuses, then some more.
	i := 20
	for ; refused == 0; i++ {
		if i > 20_000 {
			t.Fatalf("%d POSTs on a full disk and none was refused", i)
		}
		check(post(i))
	}
	for end := i + 30; i < end; i++ {
		check(post(i))
	}
	if refused < 30 {
		t.Fatalf("only %d of the last 30 POSTs on a full disk were refused", refused)
	}
	t.Logf("on a full disk: %d POSTs answered 503 with Retry-After, none 500; %d books acknowledged in all", refused, len(acked))

	expect(t, call(t, "GET", book.URL()+"/books/"+acked[0], nil), http.StatusOK)
	expect(t, call(t, "GET", book.URL()+"/books?limit=5", nil), http.StatusOK)
	if err := ready(book.URL()); err != nil {
		t.Fatalf("/readyz on a full disk: %v; reads still work, so the instance stays ready", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, "POST /books succeeds again once the space is back", func() error {
		r := post(i)
		i++
		check(r)
		if r.status != http.StatusCreated {
			return fmt.Errorf("status %d", r.status)
		}
		return nil
	})
	for end := i + 20; i < end; i++ {
		r := post(i)
		expect(t, r, http.StatusCreated)
		check(r)
	}

	for _, id := range acked {
		expect(t, call(t, "GET", book.URL()+"/books/"+id, nil), http.StatusOK)
	}
	book.kill()
	db, err := sqldb.Open(context.Background(), "sqlite:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var integrity string
	if err := db.QueryRowContext(context.Background(), `PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check: %q, %v", integrity, err)
	}
	var stored int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM books`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(acked) {
		t.Fatalf("%d books stored, %d acknowledged", stored, len(acked))
	}
}
