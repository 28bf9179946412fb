package book

import "time"

// Validate exposes Input.validate to the black-box tests of package book_test.
func (in Input) Validate(now time.Time) (Book, error) { return in.validate(now) }

// HandleBookCreate exposes the POST /books handler, not wrapped by Keys.Wrap, so that
// the crash tests can stop a process between the create and its answer.
var HandleBookCreate = handleBookCreate
