//go:build !linux

package loadbench

import "syscall"

// childAttr returns nil: outside Linux the children keep the defaults.
func childAttr() *syscall.SysProcAttr { return nil }
