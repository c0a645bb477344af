// slots.go owns the slots of local clusters with real nodes on this machine: a lock per slot
// (held by the `up` that owns it, released by the kernel however that process ends), the
// teardown that removes everything a slot's cluster left (processes, network namespaces,
// the bridge, cgroups), and `cleanup`, which tears down every slot no running `up` holds.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/conclave-dev/conclave/tests/controlplane/cluster"
)

const slotLockDir = "/run/conclave-cluster"

// slotLock is a held slot.
type slotLock struct {
	slot int
	file *os.File
}

// tryLockSlot takes slot s if no other process holds it.
func tryLockSlot(s int) (*slotLock, error) {
	if err := os.MkdirAll(slotLockDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(slotLockDir, fmt.Sprintf("slot-%d.lock", s)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, err
	}
	_ = f.Truncate(0)
	_, _ = f.WriteString(fmt.Sprintf("%d\n", os.Getpid()))
	return &slotLock{slot: s, file: f}, nil
}

// lockFreeSlot takes the first free slot, after removing whatever a dead owner left in it.
func lockFreeSlot() (*slotLock, error) {
	for s := range cluster.MaxSlots {
		lock, err := tryLockSlot(s)
		if err != nil {
			return nil, err
		}
		if lock != nil {
			if removed := teardownSlot(s); len(removed) > 0 {
				logf("slot %d: removed what a stopped cluster left: %s", s, strings.Join(removed, ", "))
			}
			return lock, nil
		}
	}
	return nil, fmt.Errorf("all %d local cluster slots are in use (see %s)", cluster.MaxSlots, slotLockDir)
}

// release gives the slot back and removes its lock file (and the lock directory once empty),
// so that a machine with no cluster running holds nothing of ours.
func (l *slotLock) release() {
	_ = os.Remove(l.file.Name())
	l.file.Close()
	_ = os.Remove(slotLockDir)
}

// teardownSlot removes everything of slot s from the machine and says what it removed:
// every process in the slot's cgroups or network namespaces, the namespaces, the bridge
// (with its routes and veths) and the cgroups. Safe to run when nothing is there.
func teardownSlot(s int) []string {
	l := cluster.Layout{Slot: s}
	var removed []string
	namespaces := slotNamespaces(l)
	killed := 0
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := cgroupPids(l.CgroupRoot())
		for _, ns := range namespaces {
			pids = append(pids, netnsPids(ns)...)
		}
		if len(pids) == 0 || time.Now().After(deadline) {
			if len(pids) > 0 {
				removed = append(removed, fmt.Sprintf("(processes %v would not die)", pids))
			}
			break
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if killed > 0 {
		removed = append(removed, fmt.Sprintf("%d processes", killed))
	}
	for _, ns := range namespaces {
		if err := ip("netns", "del", ns); err == nil {
			removed = append(removed, "netns "+ns)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + l.Bridge()); err == nil {
		if err := ip("link", "del", l.Bridge()); err == nil {
			removed = append(removed, "bridge "+l.Bridge())
		}
	}
	if n := removeCgroups(l.CgroupRoot()); n > 0 {
		removed = append(removed, fmt.Sprintf("%d cgroups", n))
	}
	return removed
}

// slotNamespaces lists the network namespaces named for layout l.
func slotNamespaces(l cluster.Layout) []string {
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), l.NetnsPrefix()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// netnsPids lists the processes inside network namespace ns.
func netnsPids(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroups removes path and every cgroup below it, deepest first, in every hierarchy,
// and returns how many it removed.
func removeCgroups(path string) int {
	n := 0
	for _, h := range cgroupHierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, path), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, d := range dirs {
			if os.Remove(d) == nil {
				n++
			}
		}
	}
	return n
}

// runCleanup tears down every slot that no running `up` holds.
func runCleanup(args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(os.Stderr, "usage: controlplane cleanup")
		return 2
	}
	busy := 0
	for s := range cluster.MaxSlots {
		lock, err := tryLockSlot(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: slot %d: %v\n", s, err)
			return 1
		}
		if lock == nil {
			busy++
			continue
		}
		if removed := teardownSlot(s); len(removed) > 0 {
			fmt.Printf("slot %d: removed %s\n", s, strings.Join(removed, ", "))
		}
		lock.release()
	}
	if busy > 0 {
		fmt.Printf("%d slot(s) in use by a running cluster, left alone\n", busy)
	}
	return 0
}
