// nodeinit.go owns `node`: the first process of one real node, run by `up` inside the node's
// network namespace (`ip netns exec`, which also gives it a mount namespace of its own). It
// gives the node a private /run and /var/lib (tmpfs) and /var/log (a directory on the
// machine), hides the machine's kernel settings from the kubelet, moves itself into the
// node's cgroup, then runs containerd, imports the images, and runs the kubelet and
// kube-proxy until it is told to stop or one of them dies. Stopping kills every process left
// in the node's cgroup, containers included.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/conclave-dev/conclave/tests/controlplane/cluster"
)

type nodeOptions struct {
	dir, name, ip, cgroup, systemCgroup, binDir string
	images                                      stringList
	imageTags                                   stringList // SRC=DST
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runNode(args []string) int {
	// Children get Pdeathsig from the thread that forks them: keep that thread alive.
	runtime.LockOSThread()
	var o nodeOptions
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "the node's directory (configuration, credentials, logs)")
	fs.StringVar(&o.name, "name", "", "Node name")
	fs.StringVar(&o.ip, "ip", "", "the node's address")
	fs.StringVar(&o.cgroup, "cgroup", "", "the node's cgroup (the kubelet's cgroupRoot)")
	fs.StringVar(&o.systemCgroup, "system-cgroup", "", "cgroup of the node's daemons")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory of containerd, ctr, the shim, kubelet, kube-proxy")
	fs.Var(&o.images, "image", "image archive to import (repeatable)")
	fs.Var(&o.imageTags, "image-tag", "SRC=DST: name imported image SRC also DST (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.dir == "" || o.name == "" || o.ip == "" || o.cgroup == "" || o.systemCgroup == "" || o.binDir == "" {
		fmt.Fprintln(os.Stderr, "node: --dir, --name, --ip, --cgroup, --system-cgroup and --bin-dir are required")
		return 2
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	files := cluster.NodeFiles{Dir: o.dir}
	nodeLog := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" node "+o.name+": "+format+"\n", args...)
	}

	if err := isolateFilesystem(files); err != nil {
		nodeLog("%v", err)
		return 1
	}
	if err := joinCgroup(o.systemCgroup); err != nil {
		nodeLog("%v", err)
		return 1
	}
	defer killCgroup(o.cgroup, nodeLog)

	env := []string{"PATH=" + o.binDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	sup := newSupervisor(files.Logs(), signals)
	defer sup.stopAll()
	start := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(o.binDir, name), args...)
		cmd.Env = env
		return sup.run(name, cmd)
	}
	fail := func(err error) int {
		if errors.Is(err, errInterrupted) {
			return 0
		}
		nodeLog("%v", err)
		return 1
	}

	began := time.Now()
	if err := start("containerd", "--config", files.Containerd()); err != nil {
		return fail(err)
	}
	if err := sup.waitFor("containerd", 60*time.Second, fileExists("/run/containerd/containerd.sock")); err != nil {
		return fail(err)
	}
	for _, image := range o.images {
		out, err := exec.Command(filepath.Join(o.binDir, "ctr"), "--namespace", "k8s.io", "images", "import",
			"--snapshotter", "overlayfs", image).CombinedOutput()
		if err != nil {
			return fail(fmt.Errorf("import %s: %v\n%s", image, err, out))
		}
	}
	for _, tag := range o.imageTags {
		src, dst, ok := strings.Cut(tag, "=")
		if !ok {
			return fail(fmt.Errorf("--image-tag %q: want SRC=DST", tag))
		}
		out, err := exec.Command(filepath.Join(o.binDir, "ctr"), "--namespace", "k8s.io", "images", "tag", src, dst).CombinedOutput()
		if err != nil {
			return fail(fmt.Errorf("tag %s as %s: %v\n%s", src, dst, err, out))
		}
	}
	nodeLog("containerd ready, %d images imported in %s", len(o.images), time.Since(began).Round(time.Millisecond))

	if err := start("kubelet", "--config", files.Kubelet(), "--kubeconfig", files.KubeletKubeconfig(),
		"--hostname-override", o.name, "--node-ip", o.ip, "--v", "1"); err != nil {
		return fail(err)
	}
	if err := start("kube-proxy", "--config", files.KubeProxy(), "--v", "1"); err != nil {
		return fail(err)
	}

	select {
	case sig := <-signals:
		nodeLog("received %s, stopping", sig)
		return 0
	case c := <-sup.exited:
		return fail(&childExit{c})
	}
}

// fileExists returns a check that succeeds once path exists.
func fileExists(path string) func() error {
	return func() error {
		_, err := os.Stat(path)
		return err
	}
}

// isolateFilesystem gives the node its own /run, /var/lib and /var/log, and files in
// place of the kernel settings the kubelet would otherwise rewrite for the whole machine.
func isolateFilesystem(f cluster.NodeFiles) error {
	// Nothing mounted here may reach the machine's mount namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	for _, dir := range []string{"/run", "/var/lib"} {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=755"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
		}
	}
	if err := bindMount(f.VarLog(), "/var/log"); err != nil {
		return err
	}
	if err := mountCgroups(); err != nil {
		return err
	}
	for entry := range cluster.KernelTunables {
		if err := bindMount(f.TunableFile(entry), "/proc/sys/"+entry); err != nil {
			return err
		}
	}
	return nil
}

// mountCgroups mounts the machine's cgroup hierarchies again under /sys/fs/cgroup: `ip netns
// exec` mounted a sysfs of the node's network namespace over /sys, which hides them, and the
// kubelet, containerd and runc need them. The machine's mounts are read from PID 1's view.
func mountCgroups() error {
	data, err := os.ReadFile("/proc/1/mountinfo")
	if err != nil {
		return err
	}
	mounts := parseCgroupMounts(string(data))
	if len(mounts) == 0 {
		return errors.New("the machine has no cgroup mounts under /sys/fs/cgroup")
	}
	if mounts[0].point != "/sys/fs/cgroup" {
		if err := syscall.Mount("tmpfs", "/sys/fs/cgroup", "tmpfs", 0, "mode=755"); err != nil {
			return fmt.Errorf("mount tmpfs on /sys/fs/cgroup: %w", err)
		}
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.point, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(m.fstype, m.point, m.fstype, 0, m.options); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", m.fstype, m.options, m.point, err)
		}
	}
	return nil
}

type cgroupMount struct{ point, fstype, options string }

// parseCgroupMounts picks the cgroup and cgroup2 mounts under /sys/fs/cgroup from a
// mountinfo text, with their hierarchy options (cpu, name=systemd...), the top one first.
func parseCgroupMounts(mountinfo string) []cgroupMount {
	var mounts []cgroupMount
	for _, line := range strings.Split(mountinfo, "\n") {
		before, after, ok := strings.Cut(line, " - ")
		fields, tail := strings.Fields(before), strings.Fields(after)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		point, fstype := fields[4], tail[0]
		if (fstype != "cgroup" && fstype != "cgroup2") || !strings.HasPrefix(point, "/sys/fs/cgroup") {
			continue
		}
		var options []string
		for _, o := range strings.Split(tail[2], ",") {
			if o != "rw" && o != "ro" {
				options = append(options, o)
			}
		}
		m := cgroupMount{point: point, fstype: fstype, options: strings.Join(options, ",")}
		if point == "/sys/fs/cgroup" {
			mounts = append([]cgroupMount{m}, mounts...)
		} else {
			mounts = append(mounts, m)
		}
	}
	return mounts
}

func bindMount(source, target string) error {
	if err := syscall.Mount(source, target, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s over %s: %w", source, target, err)
	}
	return nil
}

// cgroupHierarchies lists the mounted cgroup hierarchies (v1 controllers, the named systemd
// one, and the unified v2 tree of a hybrid machine).
func cgroupHierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var dirs []string
	for _, e := range entries {
		dir := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			dirs = append(dirs, dir)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup") // a pure cgroup v2 machine
	}
	return dirs
}

// makeCgroup creates path in every hierarchy; cpuset cgroups get their parent's CPUs and
// memory nodes, without which no process may join them.
func makeCgroup(path string) error {
	for _, h := range cgroupHierarchies() {
		parts := strings.Split(strings.Trim(path, "/"), "/")
		dir := h
		for _, p := range parts {
			parent := dir
			dir = filepath.Join(dir, p)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
			for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
				if value, err := os.ReadFile(filepath.Join(parent, file)); err == nil {
					current, _ := os.ReadFile(filepath.Join(dir, file))
					if strings.TrimSpace(string(current)) == "" {
						_ = os.WriteFile(filepath.Join(dir, file), value, 0o644)
					}
				}
			}
		}
	}
	return nil
}

// joinCgroup moves this process into path in every hierarchy.
func joinCgroup(path string) error {
	if err := makeCgroup(path); err != nil {
		return err
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, h := range cgroupHierarchies() {
		if err := os.WriteFile(filepath.Join(h, path, "cgroup.procs"), pid, 0o644); err != nil {
			return fmt.Errorf("join cgroup %s: %w", filepath.Join(h, path), err)
		}
	}
	return nil
}

// cgroupPids lists the processes in path and below, in every hierarchy, except this one.
func cgroupPids(path string) []int {
	seen := map[int]bool{}
	for _, h := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, path), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	pids := make([]int, 0, len(seen))
	for pid := range seen {
		pids = append(pids, pid)
	}
	return pids
}

// killCgroup kills every process in path and below (containers, shims, daemons) until none
// is left, for at most 10 s.
func killCgroup(path string, logf func(string, ...any)) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := cgroupPids(path)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			logf("processes %v still in cgroup %s after 10 s", pids, path)
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
