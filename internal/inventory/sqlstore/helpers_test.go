package sqlstore_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"folio/internal/inventory"
)

// commandData is the data of a reserve command as the order service sends it.
func commandData(t testing.TB, orderID string, expires time.Time, lines ...inventory.Line) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"order_id": orderID, "items": lines, "expires_at": expires})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantReply fails t unless o's reply is of type typ and its data, as JSON, holds
// each of parts.
func wantReply(t testing.TB, o inventory.Outcome, typ string, parts ...string) {
	t.Helper()
	data, err := json.Marshal(o.Reply.Data)
	if err != nil {
		t.Fatal(err)
	}
	if o.Reply.Type != typ {
		t.Errorf("reply %s %s, want %s", o.Reply.Type, data, typ)
		return
	}
	for _, p := range parts {
		if !strings.Contains(string(data), p) {
			t.Errorf("reply %s %s lacks %s", o.Reply.Type, data, p)
		}
	}
}
