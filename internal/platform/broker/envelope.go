package broker

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ParseEnvelope reads the envelope of an event and checks that it has what every
// event has: an id, a type and data. The data is left for the consumer to read.
func ParseEnvelope(body []byte) (Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return env, fmt.Errorf("malformed envelope: %w", err)
	}
	switch {
	case env.ID == "":
		return env, errors.New("malformed envelope: no event id")
	case env.Type == "":
		return env, errors.New("malformed envelope: no type")
	case len(env.Data) == 0 || string(env.Data) == "null":
		return env, errors.New("malformed envelope: no data")
	}
	env.Body = body
	return env, nil
}

// Subjects are the subjects the relays publish events of types on, under prefix
// ("folio"): one per type, "folio.book.created".
func Subjects(prefix string, types ...string) []string {
	subjects := make([]string, len(types))
	for i, t := range types {
		subjects[i] = prefix + "." + t
	}
	return subjects
}
