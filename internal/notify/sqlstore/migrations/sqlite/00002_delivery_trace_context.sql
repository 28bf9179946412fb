-- +goose Up
-- The trace context (the propagator's fields, as a JSON object) of the event that
-- made the delivery, so that its attempts, sent later and maybe by another
-- instance, continue that trace. NULL for deliveries made before it was kept, or
-- from an event that came without one: those start a trace of their own.
ALTER TABLE deliveries ADD COLUMN trace_context TEXT;

-- +goose Down
ALTER TABLE deliveries DROP COLUMN trace_context;
