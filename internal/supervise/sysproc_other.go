//go:build !unix

package supervise

import "syscall"

// sysProcAttr needs nothing special where there are no process groups or signals.
func sysProcAttr() *syscall.SysProcAttr { return nil }
