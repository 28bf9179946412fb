package book

import "time"

// Validate exposes Input.validate to the black-box tests of package book_test.
func (in Input) Validate(now time.Time) (Book, error) { return in.validate(now) }
