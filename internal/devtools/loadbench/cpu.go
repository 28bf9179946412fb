package loadbench

import (
	"os"
	"strconv"
	"strings"
)

// watchedNames names the processes whose CPU use is reported, in the order of
// (*system).watched.
var watchedNames = []string{"load generator", "ceiling", "book", "author", "author-grpc", "gateway", "nginx", "nats"}

// watchedProc is a process whose CPU use is reported: pid 0 is one not running;
// with children, the CPU of its child processes is counted too (nginx's workers);
// with reaped, that of its children that have exited and been waited for (the
// benchmark's own: the wrk or Go client run measured, whose CPU would otherwise
// count as other programs').
type watchedProc struct {
	pid      int
	children bool
	reaped   bool
}

// busyOthers is the CPU use, in cores, by other programs above which the report
// warns that the figures are not to be trusted.
const busyOthers = 0.2

// cpuSample is a reading of the CPU time used so far by the machine and by each of
// the benchmark's processes, in clock ticks, from /proc (Linux only).
type cpuSample struct {
	ok     bool
	cpus   int      // CPUs that /proc/stat counts
	total  uint64   // ticks of all CPUs: busy, idle, or stolen by the hypervisor
	tasks  uint64   // ticks of all CPUs running tasks (user, nice, system)
	irq    uint64   // ticks of all CPUs serving interrupts (irq, softirq)
	procs  []uint64 // ticks used by each process watched, in the order given
	kernel uint64   // ticks used by kernel threads (file system journal, flushers…)
}

// sampleCPU reads the CPU time of the machine and of the processes watched.
func sampleCPU(watched []watchedProc) cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	var s cpuSample
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "cpu":
			// user nice system idle iowait irq softirq steal (guest time is in user)
			for i := 1; i < len(f) && i <= 8; i++ {
				n, _ := strconv.ParseUint(f[i], 10, 64)
				s.total += n
				switch i {
				case 1, 2, 3:
					s.tasks += n
				case 6, 7:
					s.irq += n
				}
			}
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			s.cpus++
		}
	}
	s.ok = s.total > 0 && s.cpus > 0
	childTicks := map[int]uint64{} // ticks of the processes whose parent is the key
	if entries, err := os.ReadDir("/proc"); err == nil {
		for _, e := range entries {
			if name := e.Name(); name[0] >= '1' && name[0] <= '9' {
				ticks, _, kthread, ppid := procTicks(name)
				if kthread {
					s.kernel += ticks
				} else {
					childTicks[ppid] += ticks
				}
			}
		}
	}
	for _, w := range watched {
		if w.pid <= 0 {
			s.procs = append(s.procs, 0)
			continue
		}
		ticks, reaped, _, _ := procTicks(strconv.Itoa(w.pid))
		if w.children {
			ticks += childTicks[w.pid]
		}
		if w.reaped {
			ticks += reaped
		}
		s.procs = append(s.procs, ticks)
	}
	return s
}

// procTicks returns the user and system CPU ticks used by the process, or 0, those
// of its children that have exited and been waited for, whether it is a kernel
// thread, and its parent's pid.
func procTicks(pid string) (ticks, reaped uint64, kthread bool, ppid int) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false, 0
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0, 0, false, 0
	}
	f := strings.Fields(rest)
	if len(f) < 15 {
		return 0, 0, false, 0
	}
	const pfKthread = 0x00200000 // PF_KTHREAD in the flags field
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	cutime, _ := strconv.ParseUint(f[13], 10, 64)
	cstime, _ := strconv.ParseUint(f[14], 10, 64)
	ppid, _ = strconv.Atoi(f[1])
	return utime + stime, cutime + cstime, flags&pfKthread != 0, ppid
}

// cpuUse is how much CPU each process watched, and everything else on the machine,
// used between two samples, in cores (1.0 is one core busy all the time).
type cpuUse struct {
	ok     bool
	procs  []float64
	kernel float64 // kernel threads and interrupts
	others float64 // other programs
}

func cpuBetween(a, b cpuSample) cpuUse {
	if !a.ok || !b.ok || b.total <= a.total || len(a.procs) != len(b.procs) {
		return cpuUse{}
	}
	perCore := float64(b.total-a.total) / float64(b.cpus) // ticks of one core in the interval
	u := cpuUse{ok: true}
	var ours uint64
	for i := range a.procs {
		d := b.procs[i] - min(a.procs[i], b.procs[i])
		ours += d
		u.procs = append(u.procs, float64(d)/perCore)
	}
	var kthreads uint64
	if b.kernel > a.kernel {
		kthreads = b.kernel - a.kernel
	}
	u.kernel = float64(kthreads+b.irq-a.irq) / perCore
	if tasks := b.tasks - a.tasks; tasks > ours+kthreads {
		u.others = float64(tasks-ours-kthreads) / perCore
	}
	return u
}
