package httpapi

// HandleBookCreate exposes the POST /books handler, not wrapped by Keys.Wrap, so that
// the crash tests can stop a process between the create and its answer.
var HandleBookCreate = handleBookCreate
