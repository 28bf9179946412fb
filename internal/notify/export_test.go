package notify

// HandleCreate exposes the POST /subscriptions handler, not wrapped by Keys.Wrap, so
// that the crash tests can stop a process between the create and its answer.
var HandleCreate = handleCreate
