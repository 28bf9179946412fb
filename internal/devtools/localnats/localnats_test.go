package localnats

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestStartKeepsStreamsAcrossRestarts checks that the server takes JetStream writes
// and that they are still there after a restart on the same directory.
func TestStartKeepsStreamsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	publish := func(s *Server) {
		nc, err := nats.Connect(s.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "t.x", []byte("kept")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Start("127.0.0.1", -1, dir) // -1: any free port
	if err != nil {
		t.Fatal(err)
	}
	publish(s)
	s.Shutdown()

	s, err = Start("127.0.0.1", -1, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "kept" {
		t.Fatalf("message after restart = %q, want kept", msg.Data)
	}
}

// TestNoMonitoringPort: the server opens no HTTP monitoring port, whose endpoints
// (connections, configuration) answer anyone who can reach them.
func TestNoMonitoringPort(t *testing.T) {
	s, err := Start("127.0.0.1", -1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if addr := s.ns.MonitorAddr(); addr != nil {
		t.Errorf("the server monitors on %s; want no monitoring port", addr)
	}
}
