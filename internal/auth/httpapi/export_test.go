package httpapi

// HandleUserRegister exposes the POST /auth/register handler, not wrapped by
// Keys.Wrap, so that the crash tests can stop a process between the create and its
// answer.
var HandleUserRegister = handleUserRegister
