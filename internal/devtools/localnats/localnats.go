// Package localnats is the NATS server that `folio up` runs for events and discovery
// (in a child process of its own, `folio nats serve`), and that `folio bench` and the
// end-to-end tests run for theirs.
package localnats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/logger"
	"github.com/nats-io/nats-server/v2/server"

	"folio/internal/platform/broker/natsconn"
)

// User is one credential the server accepts: an nkey's public key and what its
// holder may publish and subscribe to.
type User struct {
	Name        string // for logs and errors
	Nkey        string // public key, "U…"
	Permissions natsconn.Permissions
	// Unrestricted gives the user every subject, Permissions aside: the
	// operator's own credential.
	Unrestricted bool
}

// Server is a running embedded NATS server: JetStream on, its storage in a
// directory of the caller's, every write synced to disk before it is acknowledged,
// and, given users, only they may connect, each with its permissions.
type Server struct {
	ns *server.Server
}

// Start runs a NATS server with JetStream on host:port, storing streams under dir.
// With users, only they may connect; without, anyone may (benchmarks, tests).
//
// JetStream by default acknowledges a publish before it reaches the disk and syncs
// every two minutes, so a power loss can lose acknowledged events; SyncAlways makes
// each acknowledged write durable, which is what the outbox relies on when it marks
// an event sent.
func Start(host string, port int, dir string, users ...User) (*Server, error) {
	return StartWith(Options{Host: host, Port: port, Dir: dir, Users: users})
}

// Options are what StartWith takes.
type Options struct {
	// Host and Port are where clients connect; port -1 is any free port.
	Host string
	Port int
	// Dir is where JetStream stores streams.
	Dir   string
	Users []User
	// Log writes the server's notices, warnings and errors to stderr, for a process
	// that is nothing but the server; a fatal error (its port taken) then ends the
	// process with status 1. Without it the server writes nothing.
	Log bool
}

// StartWith is Start with every option.
func StartWith(o Options) (*Server, error) {
	host, port, dir, users := o.Host, o.Port, o.Dir, o.Users
	opts := &server.Options{
		ServerName:             "folio-local",
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               dir,
		SyncAlways:             true,
		NoSigs:                 true,
		NoLog:                  !o.Log,
		DisableJetStreamBanner: true,
		// No monitoring port: 0 is none, where -1 would open one, unauthenticated,
		// on a random port.
		HTTPPort: 0,
	}
	for _, u := range users {
		if u.Nkey == "" {
			return nil, fmt.Errorf("nats: user %s has no nkey", u.Name)
		}
		nu := &server.NkeyUser{Nkey: u.Nkey}
		if !u.Unrestricted {
			if len(u.Permissions.Publish) == 0 || len(u.Permissions.Subscribe) == 0 {
				// An empty allow list means "everything" to the server.
				return nil, fmt.Errorf("nats: user %s has empty permissions", u.Name)
			}
			nu.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: u.Permissions.Publish, Deny: u.Permissions.PublishDeny},
				Subscribe: &server.SubjectPermission{Allow: u.Permissions.Subscribe},
			}
		}
		opts.Nkeys = append(opts.Nkeys, nu)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if o.Log {
		ns.SetLoggerV2(quietLogger{logger.NewStdLogger(false, false, false, false, false)}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats: the embedded server did not get ready within 10 s")
	}
	return &Server{ns: ns}, nil
}

// URL is where clients connect.
func (s *Server) URL() string {
	addr := s.ns.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// Shutdown stops the server and waits until it has.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// Serve runs the server of Start on addr ("host:port"), storing under dir, until
// ctx ends: for a child process that is nothing but the broker.
func Serve(ctx context.Context, addr, dir string, users ...User) error {
	return ServeWith(ctx, addr, Options{Dir: dir, Users: users})
}

// ServeWith is Serve with every option; addr overrides o.Host and o.Port.
func ServeWith(ctx context.Context, addr string, o Options) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("nats: port %q: %w", portStr, err)
	}
	o.Host, o.Port = host, port
	s, err := StartWith(o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	s.Shutdown()
	return nil
}

// quietLogger is the server's standard logger without its notices (a banner of
// twenty lines on every start): warnings and errors are what a reader of folio up's
// output needs.
type quietLogger struct{ *logger.Logger }

func (quietLogger) Noticef(string, ...any) {}
