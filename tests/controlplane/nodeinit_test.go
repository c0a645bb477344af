package main

import "testing"

func TestCgroupMountsFromMountinfo(t *testing.T) {
	info := `25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
`
	got := parseCgroupMounts(info)
	want := []cgroupMount{
		{"/sys/fs/cgroup/cpu", "cgroup", "cpu"},
		{"/sys/fs/cgroup/systemd", "cgroup", "name=systemd"},
		{"/sys/fs/cgroup/unified", "cgroup2", "nsdelegate"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d: got %v, want %v", i, got[i], want[i])
		}
	}
	pure := parseCgroupMounts("40 25 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
	if len(pure) != 1 || pure[0].point != "/sys/fs/cgroup" {
		t.Fatalf("pure cgroup v2: %v", pure)
	}
}
