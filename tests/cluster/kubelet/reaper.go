package main

import (
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// The kubelet is a child subreaper: processes that pods leave behind (a
// container's children, once the container's main process is gone) are
// re-parented to it instead of to PID 1, and it reaps them. Without this, an
// init that does not reap would collect zombies.
//
// exec.Cmd reaps the processes it started itself; the reaper must not take
// those. spawnMu makes "start + track" atomic with respect to a reaping pass.

var (
	spawnMu sync.RWMutex
	trackMu sync.Mutex
	tracked = map[int]bool{}
)

const prSetChildSubreaper = 36

func startReaper() {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		klog.InfoS("Cannot become a child subreaper; orphaned pod processes go to PID 1", "err", errno)
		return
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sigs:
			case <-tick.C:
			}
			reapOrphans()
		}
	}()
}

// startTracked starts cmd so that the reaper leaves it to cmd.Wait.
func startTracked(cmd *exec.Cmd) error {
	spawnMu.RLock()
	defer spawnMu.RUnlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	trackMu.Lock()
	tracked[cmd.Process.Pid] = true
	trackMu.Unlock()
	return nil
}

func untrack(pid int) {
	trackMu.Lock()
	delete(tracked, pid)
	trackMu.Unlock()
}

// reapOrphans waits for every zombie child that no exec.Cmd owns.
func reapOrphans() int {
	spawnMu.Lock()
	defer spawnMu.Unlock()
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ..."; comm may contain spaces and parentheses
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 || fields[0] != "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != self {
			continue
		}
		trackMu.Lock()
		owned := tracked[pid]
		trackMu.Unlock()
		if owned {
			continue
		}
		var ws syscall.WaitStatus
		if got, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid {
			n++
		}
	}
	return n
}
