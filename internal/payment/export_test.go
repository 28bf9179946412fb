package payment

import "time"

// SetClock makes s read the time from now.
func (s *Service) SetClock(now func() time.Time) { s.now = now }
