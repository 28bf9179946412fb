package natsconn

import (
	"fmt"
	"slices"
	"strings"
)

// Names are the broker names the permissions are written for: the event subject
// prefix, the JetStream stream and the discovery bucket (their configured values,
// by default folio, FOLIO_EVENTS and folio_discovery).
type Names struct {
	Prefix string
	Stream string
	Bucket string
}

// DefaultNames are the defaults of FOLIO_EVENTS_PREFIX, FOLIO_EVENTS_STREAM and
// FOLIO_DISCOVERY_BUCKET.
var DefaultNames = Names{Prefix: "folio", Stream: "FOLIO_EVENTS", Bucket: "folio_discovery"}

// Permissions are the subjects a NATS user may publish and subscribe to (allow
// lists: everything else is denied), and the exceptions to Publish.
type Permissions struct {
	Publish     []string
	PublishDeny []string
	Subscribe   []string
}

// program is what one Folio program does on the broker, from which its
// permissions follow.
type program struct {
	// publishes are the event subjects (after the prefix) its outbox publishes.
	publishes []string
	// registers: it puts itself in the discovery registry, <bucket>.<name>.*.
	registers bool
	// consumers are its durable consumers and the subjects they take (after the
	// prefix); each may also dead-letter to <prefix>.deadletter.<consumer>.
	consumers map[string][]string
	// follows are the subjects (after the prefix) it follows with broker.Follow.
	follows []string
}

// revoked is the account revocation every token verifier follows.
const revoked = "account.revoked"

// programs is the permission table: the one place that says what each program
// may do on the broker. The durable names are those of the services' event
// packages (book/events, author/events, notify/events, order/events,
// inventory/events, payment/events), whose
// TestTheBrokerPermitsTheConsumer holds them equal.
var programs = map[string]program{
	"auth": {publishes: []string{"account.>"}, registers: true, follows: []string{revoked}},
	"author": {publishes: []string{"author.>"}, registers: true, follows: []string{revoked},
		consumers: map[string][]string{"author-books": {"book.created", "book.updated", "book.deleted"}}},
	"book": {publishes: []string{"book.>"}, registers: true, follows: []string{revoked},
		consumers: map[string][]string{"book-authors": {"author.created", "author.updated", "author.deleted"}}},
	"notify": {publishes: []string{"notify.>"}, registers: true, follows: []string{revoked},
		consumers: map[string][]string{"notify": {"book.>", "author.>", "order.*"}}},
	// The order saga (docs/orders.md): the order service sends commands under
	// order.stock.> and order.payment.>, and its state events as order.<state>;
	// inventory and payment each take only the commands addressed to them.
	"order": {publishes: []string{"order.>"}, registers: true, follows: []string{revoked},
		consumers: map[string][]string{"order-replies": {"inventory.>", "payment.>"}}},
	"inventory": {publishes: []string{"inventory.>"}, registers: true, follows: []string{revoked},
		consumers: map[string][]string{"inventory-orders": {"order.stock.>"}, "inventory-books": {"book.deleted"}}},
	"payment": {publishes: []string{"payment.>"}, registers: true, follows: []string{revoked},
		consumers: map[string][]string{"payment-orders": {"order.payment.>"}}},
	// The gateway only reads the registry and follows revocations.
	"gateway": {follows: []string{revoked}},
}

// Programs lists the programs with a credential of their own, sorted.
func Programs() []string {
	var names []string
	for name := range programs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// For returns the permissions of program under n. Errors: an unknown program.
func For(name string, n Names) (Permissions, error) {
	p, ok := programs[name]
	if !ok {
		return Permissions{}, fmt.Errorf("nats: no permissions for program %q", name)
	}
	api := "$JS.API."
	kvStream := "KV_" + n.Bucket
	pub := []string{
		api + "INFO",
		// The events stream and the registry's bucket: each program creates
		// them if missing (idempotent), and reads their settings. Neither
		// delete nor purge is allowed to anyone.
		api + "STREAM.INFO." + n.Stream,
		api + "STREAM.CREATE." + n.Stream,
		api + "STREAM.INFO." + kvStream,
		api + "STREAM.CREATE." + kvStream,
		api + "STREAM.UPDATE." + kvStream,
		// Watching the registry: ordered consumers on the bucket, filtered on
		// its keys, answering the server's flow control, deleted when the
		// watch stops. (Deleting another program's watch only makes it start
		// again: the registry is public to every program.)
		api + "CONSUMER.CREATE." + kvStream + ".*.$KV." + n.Bucket + ".>",
		api + "CONSUMER.DELETE." + kvStream + ".*",
		"$JS.FC." + kvStream + ".>",
	}
	for _, subject := range p.publishes {
		pub = append(pub, n.Prefix+"."+subject)
	}
	if p.registers {
		pub = append(pub, "$KV."+n.Bucket+"."+name+".>")
	}
	for _, durable := range sortedKeys(p.consumers) {
		pub = append(pub,
			// The create subject without a filter serves several filters; with
			// one, the server checks it against the one named in the subject.
			api+"CONSUMER.CREATE."+n.Stream+"."+durable,
			api+"CONSUMER.CREATE."+n.Stream+"."+durable+".>",
			api+"CONSUMER.DURABLE.CREATE."+n.Stream+"."+durable,
			api+"CONSUMER.INFO."+n.Stream+"."+durable,
			api+"CONSUMER.MSG.NEXT."+n.Stream+"."+durable,
			"$JS.ACK."+n.Stream+"."+durable+".>",
			n.Prefix+".deadletter."+durable,
		)
	}
	for _, subject := range p.follows {
		// Followers are ephemeral push consumers with server-chosen names,
		// created one per filter through the subject that names the filter.
		pub = append(pub, api+"CONSUMER.CREATE."+n.Stream+".*."+n.Prefix+"."+subject)
	}
	// The follow pattern names no consumer: without these exceptions it would
	// let a program redefine another's durable consumer (its filter, say).
	var deny []string
	for _, other := range Programs() {
		if other == name {
			continue
		}
		for _, durable := range sortedKeys(programs[other].consumers) {
			deny = append(deny, api+"CONSUMER.CREATE."+n.Stream+"."+durable, api+"CONSUMER.CREATE."+n.Stream+"."+durable+".>")
		}
	}
	return Permissions{
		Publish:     pub,
		PublishDeny: deny,
		// Every delivery, acknowledgement and API answer comes to the
		// program's inboxes; no event subject is read directly.
		Subscribe: []string{"_INBOX.>"},
	}, nil
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ServerConfig renders an authorization block for nats-server.conf giving each
// program in keys (program -> nkey public key) its permissions under n, for
// operators who run their own NATS.
func ServerConfig(n Names, keys map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, name := range Programs() {
		key, ok := keys[name]
		if !ok {
			continue
		}
		p, err := For(name, n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %s\n      permissions: {\n", name, key)
		fmt.Fprintf(&b, "        publish: { allow: %s", quoteList(p.Publish))
		if len(p.PublishDeny) > 0 {
			fmt.Fprintf(&b, ", deny: %s", quoteList(p.PublishDeny))
		}
		b.WriteString(" }\n")
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(p.Subscribe))
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
