package auth_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"folio/internal/auth"
	"folio/internal/platform/fault"
)

// memStore is an auth.Store in memory, enough for the rules of the service; the
// SQL store runs its own suite in package sqlstore.
type memStore struct {
	mu      sync.Mutex
	users   map[string]auth.User
	keys    []auth.SigningKey
	revoked []auth.Revocation
}

func newMemStore() *memStore { return &memStore{users: map[string]auth.User{}} }

func (m *memStore) CreateUser(_ context.Context, u auth.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.users {
		if o.Email == u.Email {
			return fault.New(fault.Conflict, "an account with this email exists")
		}
	}
	m.users[u.ID] = u
	return nil
}

func (m *memStore) User(_ context.Context, id string) (auth.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.users[id]; ok {
		return u, nil
	}
	return auth.User{}, fault.New(fault.NotFound, "no account has this id")
}

func (m *memStore) UserByEmail(_ context.Context, email string) (auth.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.users {
		if u.Email == email {
			return u, nil
		}
	}
	return auth.User{}, fault.New(fault.NotFound, "no account has this email")
}

func (m *memStore) UpdateRoles(_ context.Context, u auth.User, revoke bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.users[u.ID]
	switch {
	case !ok:
		return fault.New(fault.NotFound, "no account has this id")
	case old.Version != u.Version-1:
		return auth.ErrStale
	}
	m.users[u.ID] = u
	if revoke {
		m.revoked = append(m.revoked, auth.Revocation{ID: u.ID, RevokedBefore: u.RevokedBefore})
	}
	return nil
}

func (m *memStore) SigningKeys(context.Context) ([]auth.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.keys), nil
}

func (m *memStore) SealSigningKeys(context.Context) (int, error) { return 0, nil }

func (m *memStore) RotateSigningKey(_ context.Context, k auth.SigningKey, cutoff time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := auth.ActiveKey(m.keys); a != nil && a.CreatedAt.After(cutoff) {
		return nil
	}
	for i := range m.keys {
		if m.keys[i].RetiredAt == nil {
			m.keys[i].RetiredAt = &k.CreatedAt
		}
	}
	m.keys = append(m.keys, k)
	return nil
}

// cheap are argon2id parameters that keep tests fast; the real ones are tested apart.
var cheap = auth.Params{Time: 1, Memory: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// newService returns a started service over a memStore.
func newService(t *testing.T, change ...func(*auth.Options)) (*auth.Service, *memStore) {
	t.Helper()
	store := newMemStore()
	o := auth.Options{Hashing: cheap, Log: slog.New(slog.DiscardHandler)}
	for _, f := range change {
		f(&o)
	}
	svc, err := auth.NewService(store, o)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	if err := svc.Rotate(context.Background()); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return svc, store
}

func credentials(email, password string) auth.Credentials {
	return auth.Credentials{Email: &email, Password: &password}
}

func TestEnsureAdmin(t *testing.T) {
	svc, store := newService(t)
	ctx := context.Background()
	for i, want := range []bool{true, false} {
		created, err := svc.EnsureAdmin(ctx, " Root@Example.com", "root password 123")
		if err != nil || created != want {
			t.Fatalf("EnsureAdmin #%d: got %v, %v, want %v", i+1, created, err, want)
		}
	}
	u, err := store.UserByEmail(ctx, "root@example.com")
	if err != nil || !slices.Equal(u.Roles, []string{"admin"}) {
		t.Errorf("got %+v, %v, want an admin", u, err)
	}
	// An email someone registered first never becomes an admin.
	if _, err := svc.Register(ctx, credentials("taken@example.com", "twelve chars")); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if created, err := svc.EnsureAdmin(ctx, "taken@example.com", "root password 123"); created || err != nil {
		t.Errorf("EnsureAdmin of a registered email: got %v, %v, want false, nil", created, err)
	}
	if u, _ := store.UserByEmail(ctx, "taken@example.com"); !slices.Equal(u.Roles, []string{"reader"}) {
		t.Errorf("got roles %v, want [reader]", u.Roles)
	}
	if _, err := svc.EnsureAdmin(ctx, "root2@example.com", "short"); err == nil {
		t.Error("EnsureAdmin with a short password: got nil, want an error")
	}
}

// TestRefusalsAreFaultKinds: the service says what went wrong in fault kinds, which
// the HTTP API answers without knowing the domain's errors.
func TestRefusalsAreFaultKinds(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	ada, err := svc.Register(ctx, credentials("ada@example.com", "twelve chars"))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if _, err := svc.Token(ctx, credentials("ada@example.com", "wrong password")); fault.KindOf(err) != fault.Unauthorized {
		t.Errorf("Token with a wrong password: got %v, want Unauthorized", err)
	}
	if _, err := svc.Token(ctx, credentials("nobody@example.com", "twelve chars")); fault.KindOf(err) != fault.Unauthorized {
		t.Errorf("Token of an unknown email: got %v, want Unauthorized", err)
	}
	for _, header := range []string{"", "Basic YTpi", "Bearer ", "Bearer not.a.token"} {
		if _, err := svc.Authenticate(ctx, header); fault.KindOf(err) != fault.Unauthorized {
			t.Errorf("Authenticate(%q): got %v, want Unauthorized", header, err)
		}
	}
	tok, err := svc.Token(ctx, credentials("ada@example.com", "twelve chars"))
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	caller, err := svc.Authenticate(ctx, "Bearer "+tok.AccessToken)
	if err != nil || caller.ID != ada.ID {
		t.Fatalf("Authenticate: got %+v, %v, want ada", caller, err)
	}
	roles := []string{"admin"}
	_, err = svc.SetRoles(ctx, caller, ada.ID, auth.RolesInput{Roles: &roles}, func(int) error { return nil })
	if fault.KindOf(err) != fault.Forbidden {
		t.Errorf("SetRoles by a reader: got %v, want Forbidden", err)
	}
}

// TestBusyHashingIsOverloaded: a request that finds every hashing slot taken for the
// whole wait fails as Overloaded, saying to retry after about the wait.
func TestBusyHashingIsOverloaded(t *testing.T) {
	svc, _ := newService(t, func(o *auth.Options) { o.HashSlots, o.HashWait = 1, 10*time.Millisecond })
	ctx, release, err := svc.HoldHashSlot(context.Background())
	if err != nil {
		t.Fatalf("HoldHashSlot: %v", err)
	}
	defer release()
	_, err = svc.Register(context.Background(), credentials("ada@example.com", "twelve chars"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Overloaded || fe.RetryAfter != 10*time.Millisecond {
		t.Errorf("Register while the only slot is held: got %v, want Overloaded with RetryAfter 10ms", err)
	}
	// The request that holds the slot hashes under it without taking another.
	if _, err := svc.Register(ctx, credentials("bob@example.com", "twelve chars")); err != nil {
		t.Errorf("Register under the held slot: %v", err)
	}
}

// TestRoleChangeRecordsRevocation: a change of roles revokes the account's earlier
// tokens through the store; setting the same roles revokes nothing.
func TestRoleChangeRecordsRevocation(t *testing.T) {
	svc, store := newService(t)
	ctx := context.Background()
	if _, err := svc.EnsureAdmin(ctx, "root@example.com", "root password 123"); err != nil {
		t.Fatal(err)
	}
	ada, err := svc.Register(ctx, credentials("ada@example.com", "twelve chars"))
	if err != nil {
		t.Fatal(err)
	}
	admin := auth.Caller{ID: "root", Roles: []string{auth.RoleAdmin}}
	anyVersion := func(int) error { return nil }
	editor := []string{"editor"}
	u, err := svc.SetRoles(ctx, admin, ada.ID, auth.RolesInput{Roles: &editor}, anyVersion)
	if err != nil || u.Version != 2 || u.RevokedBefore == 0 {
		t.Fatalf("SetRoles: got %+v, %v, want version 2 with revoked_before set", u, err)
	}
	if _, err := svc.SetRoles(ctx, admin, ada.ID, auth.RolesInput{Roles: &editor}, anyVersion); err != nil {
		t.Fatal(err)
	}
	if len(store.revoked) != 1 || store.revoked[0] != (auth.Revocation{ID: ada.ID, RevokedBefore: u.RevokedBefore}) {
		t.Errorf("got revocations %+v, want one of %s at %d", store.revoked, ada.ID, u.RevokedBefore)
	}
}
