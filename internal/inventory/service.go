package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// Store keeps the stock and the reservations. Implementations return fault errors:
// ErrNotFound for a book with no stock, ErrDeleted for a deleted book, ErrStale when
// the item changed since it was read.
type Store interface {
	// Get returns the stock of the book. Errors: ErrNotFound, ErrDeleted.
	Get(ctx context.Context, bookID string) (Item, error)
	// List returns up to page.Fetch() items of books not deleted with ids after
	// page.After, by book id.
	List(ctx context.Context, page paging.Request) ([]Item, error)
	// Create inserts it. Errors: ErrStale when the book has a row (stock, or the
	// tombstone of a delete) already.
	Create(ctx context.Context, it Item) error
	// Update writes the price and quantity of it if the stored item is still at
	// version it.Version-1 and holds no more copies than it.Quantity. Errors:
	// ErrNotFound, ErrDeleted, ErrStale, a Conflict (BelowReserved). It returns
	// the item as stored, with the copies reserved at the time of the write.
	Update(ctx context.Context, it Item) (Item, error)
	// ExpireDue frees up to limit reservations whose ExpiresAt is not after now,
	// each in a transaction of its own with its reply (ReleasedReply, reason
	// ReasonExpired), and returns them. A reservation another instance freed
	// meanwhile is skipped.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]Reservation, error)
}

// Metrics hears of the reservations' outcomes, by result: reserved, rejected,
// released, expired, committed, commit_failed, restocked.
type Metrics interface {
	Counted(result string)
}

// NoMetrics hears nothing.
type NoMetrics struct{}

// Counted implements Metrics.
func (NoMetrics) Counted(string) {}

// Service applies the rules of the inventory service to its store.
type Service struct {
	store   Store
	metrics Metrics
	now     func() time.Time
}

// NewService returns a Service over store that counts expirations in m (nil: not
// counted) and reads the time from now (nil: time.Now).
func NewService(store Store, m Metrics, now func() time.Time) *Service {
	if m == nil {
		m = NoMetrics{}
	}
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, metrics: m, now: now}
}

func (s *Service) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Get returns the stock of the book. Errors: NotFound, also for a deleted book.
func (s *Service) Get(ctx context.Context, bookID string) (Item, error) {
	if !id.Valid(bookID) {
		return Item{}, ErrNotFound
	}
	it, err := s.store.Get(ctx, bookID)
	if errors.Is(err, ErrDeleted) {
		return Item{}, ErrNotFound
	}
	return it, err
}

// List returns the page of items that page asks for, by book id.
func (s *Service) List(ctx context.Context, page paging.Request) (paging.Page[Item], error) {
	items, err := s.store.List(ctx, page)
	if err != nil {
		return paging.Page[Item]{}, err
	}
	return paging.Of(page, items, func(it Item) string { return it.BookID }), nil
}

// Precondition is what a write asks of the item's current state.
type Precondition struct {
	// Check vets the current version (If-Match); nil when the request names none.
	Check func(version int) error
	// Named reports whether the request names a version (If-Match is present).
	Named bool
	// Absent asks that the item not exist yet (If-None-Match: *).
	Absent bool
}

// Put sets the price and quantity of the book's stock, creating it (version 1)
// when the book has none: created says which. A change of existing stock must name
// its version. Errors: NotFound (not a book id), Invalid, PreconditionFailed,
// ErrPreconditionRequired, Conflict (a deleted book, a quantity below the copies
// reserved).
func (s *Service) Put(ctx context.Context, bookID string, in Input, pre Precondition) (it Item, created bool, err error) {
	if !id.Valid(bookID) {
		return Item{}, false, ErrNotFound
	}
	price, quantity, err := in.validate()
	if err != nil {
		return Item{}, false, err
	}
	for {
		cur, err := s.store.Get(ctx, bookID)
		switch {
		case errors.Is(err, ErrNotFound):
			if pre.Named {
				// If-Match names a version of something that does not exist.
				return Item{}, false, fault.New(fault.PreconditionFailed, "the book has no stock, which If-Match names a version of")
			}
			it = Item{BookID: bookID, Price: price, Quantity: quantity, Available: quantity, Version: 1, UpdatedAt: s.timestamp()}
			err = s.store.Create(ctx, it)
			if errors.Is(err, ErrStale) {
				continue
			}
			return it, err == nil, err
		case err != nil:
			return Item{}, false, err
		}
		if pre.Absent {
			return Item{}, false, fault.New(fault.PreconditionFailed, "the book has stock already (version %d), and If-None-Match is *", cur.Version)
		}
		if !pre.Named {
			return Item{}, false, ErrPreconditionRequired
		}
		if err := pre.Check(cur.Version); err != nil {
			return Item{}, false, err
		}
		if quantity < cur.Reserved {
			return Item{}, false, BelowReserved(cur.Reserved)
		}
		it = Item{BookID: bookID, Price: price, Quantity: quantity, Version: cur.Version + 1, UpdatedAt: s.timestamp()}
		it, err = s.store.Update(ctx, it)
		if errors.Is(err, ErrStale) {
			continue
		}
		return it, false, err
	}
}

// sweepBatch is how many reservations one ExpireDue frees.
const sweepBatch = 100

// Sweep frees every reservation past its expiry, and sends for each the reply
// inventory.released with reason expired; it returns how many it freed. Several
// instances may sweep at once: each reservation is freed by one.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	total := 0
	for {
		freed, err := s.store.ExpireDue(ctx, now, sweepBatch)
		total += len(freed)
		for range freed {
			s.metrics.Counted("expired")
		}
		if err != nil {
			return total, fmt.Errorf("sweep reservations: %w", err)
		}
		if len(freed) < sweepBatch {
			return total, nil
		}
	}
}
