//go:build unix && !linux

package supervise

import (
	"os"
	"syscall"
)

// sysProcAttr puts a child in a process group of its own, so that a Ctrl-C at the
// terminal reaches only the supervisor, which then stops the children in order.
// (Only Linux can also have the kernel kill a child whose supervisor died.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// resume continues a stopped process (SIGSTOP), so that it can act on a SIGTERM.
func resume(proc *os.Process) { _ = proc.Signal(syscall.SIGCONT) }
