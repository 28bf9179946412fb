package loadbench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"folio/internal/platform/httpserver"
)

// TestStartReportingReadsTheChildsAddress: a child on any port is found where it
// reports it listens, and answers there.
func TestStartReportingReadsTheChildsAddress(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, addrs, err := startReporting(context.Background(), t.TempDir(), "ceiling", exe, nil, []string{CeilingEnv + "=" + anyPort})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.cancel(); <-p.done }()
	resp, err := http.Get("http://" + addrs.HTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != ceilingBody {
		t.Errorf("got %q, want the ceiling's answer", b)
	}
}

// TestStartReportingPortTaken: a child told a port someone else holds exits, and
// startReporting says the port was taken, which is what makes startPeers try
// another.
func TestStartReportingPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = startReporting(context.Background(), t.TempDir(), "ceiling", exe, nil, []string{CeilingEnv + "=" + ln.Addr().String()})
	if !errors.Is(err, errPortTaken) {
		t.Errorf("got %v, want errPortTaken", err)
	}
}

// TestStartPeersRetries: when the second program's port was taken, both start
// again, the first told the second's new port.
func TestStartPeersRetries(t *testing.T) {
	var told, bound []string
	var stopped int
	fake := func() *proc {
		p := &proc{done: make(chan struct{})}
		p.cancel = func() { stopped++; close(p.done) }
		return p
	}
	p1, a1, p2, a2, err := startPeers(context.Background(),
		func(attempt int, secondURL string) (*proc, httpserver.Addrs, error) {
			told = append(told, secondURL)
			return fake(), httpserver.Addrs{HTTP: "127.0.0.1:1000"}, nil
		},
		func(attempt int, addr, firstURL string) (*proc, httpserver.Addrs, error) {
			bound = append(bound, addr)
			if firstURL != "http://127.0.0.1:1000" {
				t.Errorf("second told %s, want the first's reported address", firstURL)
			}
			if attempt < 3 {
				return nil, httpserver.Addrs{}, errPortTaken
			}
			return fake(), httpserver.Addrs{HTTP: addr}, nil
		})
	if err != nil || p1 == nil || p2 == nil {
		t.Fatalf("got %v, want both started", err)
	}
	if len(told) != 3 || len(bound) != 3 || stopped != 2 {
		t.Fatalf("first started %d times, second %d, first stopped %d: want 3, 3, 2", len(told), len(bound), stopped)
	}
	for i := range told {
		if told[i] != "http://"+bound[i] {
			t.Errorf("attempt %d: first told %s, second bound %s", i+1, told[i], bound[i])
		}
	}
	if a1.HTTP != "127.0.0.1:1000" || a2.HTTP != bound[2] {
		t.Errorf("got %+v and %+v, want the last attempt's addresses", a1, a2)
	}
}

// TestStartPeersGivesUp: another error than a taken port, or too many taken
// ports, is returned with the first program stopped.
func TestStartPeersGivesUp(t *testing.T) {
	for name, fail := range map[string]error{
		"other error":       errors.New("no database"),
		"port always taken": errPortTaken,
	} {
		var started, stopped int
		_, _, _, _, err := startPeers(context.Background(),
			func(int, string) (*proc, httpserver.Addrs, error) {
				started++
				p := &proc{done: make(chan struct{})}
				p.cancel = func() { stopped++; close(p.done) }
				return p, httpserver.Addrs{HTTP: "127.0.0.1:1000"}, nil
			},
			func(int, string, string) (*proc, httpserver.Addrs, error) { return nil, httpserver.Addrs{}, fail })
		if !errors.Is(err, fail) || started != stopped {
			t.Errorf("%s: got %v with %d started and %d stopped, want the error and all stopped", name, err, started, stopped)
		}
		if fail == errPortTaken && started != maxPortAttempts {
			t.Errorf("%s: %d attempts, want %d", name, started, maxPortAttempts)
		}
	}
}

// TestStartNATSOnAnyPort: the benchmark's NATS child takes any port (not NATS's
// default 4222, which port 0 would mean to it) and reports it.
func TestStartNATSOnAnyPort(t *testing.T) {
	b, err := startNATS(context.Background(), t.TempDir(), "nats")
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	addr := strings.TrimPrefix(b.url, "nats://")
	if _, port, _ := net.SplitHostPort(addr); port == "4222" || port == "0" {
		t.Errorf("NATS at %s, want a port the system picked", b.url)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Errorf("got %q, %v; want the NATS server's INFO", line, err)
	}
}
