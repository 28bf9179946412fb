package supervise

import (
	"os"
	"syscall"
)

// sysProcAttr puts a child in a process group of its own, so that a Ctrl-C at the
// terminal reaches only the supervisor, which then stops the children in order, and
// has the kernel kill the child if the supervisor dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// resume continues a stopped process (SIGSTOP), so that it can act on a SIGTERM.
func resume(proc *os.Process) { _ = proc.Signal(syscall.SIGCONT) }
