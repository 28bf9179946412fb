//go:build unix && !linux

package supervise

import "syscall"

// sysProcAttr puts a child in a process group of its own, so that a Ctrl-C at the
// terminal reaches only the supervisor, which then stops the children in order.
// (Only Linux can also have the kernel kill a child whose supervisor died.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
