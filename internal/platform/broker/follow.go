package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Follow hands h every message on subjects (filters under the prefix) published
// from since on (from now on when since is zero), to this process alone: unlike
// Consume it is neither shared between a service's instances nor durable. It
// runs until ctx ends, riding out broker outages, and returns nil then. RabbitMQ
// cannot replay: there it sees only messages published after its queue is bound.
//
// h is called for one message at a time, in order for each filter. There is no
// redelivery: an error from h is logged and the message is passed over, since a
// follower only keeps state in memory that it can rebuild from since.
func (b *Broker) Follow(ctx context.Context, subjects []string, since time.Time, h func(context.Context, Message) error) error {
	if len(subjects) == 0 {
		return fmt.Errorf("broker: follow: no subjects")
	}
	for _, subj := range subjects {
		if !validFilter(subj) || !strings.HasPrefix(subj, b.prefix+".") {
			return fmt.Errorf("broker: follow: subject filter %q is not a valid filter under %q", subj, b.prefix+".")
		}
	}
	var one sync.Mutex
	return b.t.follow(ctx, subjects, since, func(ctx context.Context, m Message) {
		one.Lock()
		defer one.Unlock()
		if err := run(ctx, h, m); err != nil && ctx.Err() == nil {
			b.log.Warn("follower failed on a message, passing over it", "subject", m.Subject, "id", m.ID, "err", err)
		}
	})
}
