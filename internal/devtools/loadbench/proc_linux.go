package loadbench

import "syscall"

// childAttr puts a child in its own process group, so that a Ctrl-C at the terminal
// reaches only this process, which then stops the children in order, and has the
// kernel send the child SIGTERM should this process die without stopping it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
