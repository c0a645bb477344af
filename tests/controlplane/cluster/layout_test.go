package cluster

import (
	"net"
	"strings"
	"testing"
)

func TestLayoutsNeverShareNamesOrAddresses(t *testing.T) {
	seen := map[string]string{}
	claim := func(kind, value, owner string) {
		key := kind + " " + value
		if other, ok := seen[key]; ok {
			t.Fatalf("%s %s used by %s and %s", kind, value, other, owner)
		}
		seen[key] = owner
	}
	for s := range MaxSlots {
		l := Layout{Slot: s, Nodes: MaxNodes}
		if err := l.Validate(); err != nil {
			t.Fatal(err)
		}
		claim("bridge", l.Bridge(), l.Bridge())
		claim("ip", l.HostIP().String(), l.Bridge())
		_, cluster, err := net.ParseCIDR(l.ClusterCIDR())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range l.AllNodes() {
			owner := n.Netns()
			claim("netns", n.Netns(), owner)
			claim("veth", n.HostVeth(), owner)
			claim("ip", n.IP().String(), owner)
			claim("podCIDR", n.PodCIDR(), owner)
			if len(n.HostVeth()) > 15 || len(l.Bridge()) > 15 {
				t.Fatalf("interface name too long: %s / %s", n.HostVeth(), l.Bridge())
			}
			podIP, _, err := net.ParseCIDR(n.PodCIDR())
			if err != nil {
				t.Fatal(err)
			}
			if !cluster.Contains(podIP) {
				t.Fatalf("%s: pod network %s outside cluster CIDR %s", owner, n.PodCIDR(), l.ClusterCIDR())
			}
			_, nodeNet, _ := net.ParseCIDR(l.NodeNetwork())
			if !nodeNet.Contains(n.IP()) || n.IP().Equal(l.HostIP()) {
				t.Fatalf("%s: address %s not a node address of %s", owner, n.IP(), l.NodeNetwork())
			}
		}
	}
}

func TestLayoutValidation(t *testing.T) {
	for _, c := range []struct {
		layout Layout
		ok     bool
	}{
		{Layout{Slot: 0, Nodes: 3}, true},
		{Layout{Slot: MaxSlots - 1, Nodes: MaxNodes}, true},
		{Layout{Slot: -1, Nodes: 3}, false},
		{Layout{Slot: MaxSlots, Nodes: 3}, false},
		{Layout{Slot: 0, Nodes: 0}, false},
		{Layout{Slot: 0, Nodes: MaxNodes + 1}, false},
	} {
		if err := c.layout.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", c.layout, err, c.ok)
		}
	}
}

func TestNodeConfigurationNamesTheNode(t *testing.T) {
	n := Layout{Slot: 2, Nodes: 3}.Node(3)
	f := NodeFiles{Dir: "/d/node-3"}
	for name, text := range map[string]string{
		"kubelet":    KubeletConfig(n, f),
		"kube-proxy": KubeProxyConfig(n, f),
		"cni":        CNIConfig(n),
		"containerd": ContainerdConfig(f, "localhost/conclave/pause:1"),
	} {
		var want []string
		switch name {
		case "kubelet":
			want = []string{"address: 10.213.2.13", "cgroupRoot: /conclave2/node-3", "failCgroupV1: false",
				"clientCAFile: /d/node-3/ca.crt", "resolvConf: /d/node-3/resolv.conf", "mode: Webhook"}
		case "kube-proxy":
			want = []string{"hostnameOverride: node-3", "clusterCIDR: 10.214.32.0/20", "mode: nftables", "maxPerCore: 0"}
		case "cni":
			want = []string{`"subnet": "10.214.35.0/24"`, `"portmap"`}
		case "containerd":
			want = []string{`sandbox = "localhost/conclave/pause:1"`, "restrict_oom_score_adj = true",
				`conf_dir = "/d/node-3/cni"`, "SystemdCgroup = false"}
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s configuration lacks %q:\n%s", name, w, text)
			}
		}
	}
}

func TestKernelTunablesStandInFiles(t *testing.T) {
	f := NodeFiles{Dir: "/d"}
	if got := f.TunableFile("kernel/keys/root_maxkeys"); got != "/d/sysctl/kernel.keys.root_maxkeys" {
		t.Fatalf("TunableFile = %s", got)
	}
	if len(KernelTunables) != 6 {
		t.Fatalf("the kubelet checks six kernel settings, have %d", len(KernelTunables))
	}
}
