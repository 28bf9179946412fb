//go:build !unix

package supervise

import (
	"os"
	"syscall"
)

// sysProcAttr needs nothing special where there are no process groups or signals.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// resume does nothing where processes cannot be stopped by a signal.
func resume(*os.Process) {}
