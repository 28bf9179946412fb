package httpapi

// HandleAuthorCreate exposes the POST /authors handler, not wrapped by Keys.Wrap, so
// that the crash tests can stop a process between the create and its answer.
var HandleAuthorCreate = handleAuthorCreate
