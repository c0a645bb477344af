// Package cluster owns the plan of a local cluster's real nodes: which slot it takes on this
// machine, the names and addresses of its bridge, network namespaces, nodes and pod networks,
// its cgroups, and the configuration files of each node's containerd, kubelet, kube-proxy and
// CNI. Everything here is pure; `up` (package main) applies it.
package cluster

import (
	"fmt"
	"net"
)

// MaxSlots is how many local clusters with real nodes one machine can run at once.
const MaxSlots = 8

// MaxNodes is how many nodes one local cluster can have.
const MaxNodes = 15

// ServiceCIDR is the cluster's Service range (the apiserver's --service-cluster-ip-range);
// its first address is the `kubernetes` Service.
const ServiceCIDR = "10.0.0.0/24"

// Layout is one local cluster: slot s owns bridge conclave<s>, the node network
// 10.213.<s>.0/24 (the machine at .1, node i at .10+i) and pod networks 10.214.<16s+i>.0/24.
type Layout struct {
	Slot  int
	Nodes int
}

// Node is one node of a layout, numbered from 1.
type Node struct {
	Layout
	Index int
}

// Validate refuses layouts whose names or addresses would collide or overflow.
func (l Layout) Validate() error {
	if l.Slot < 0 || l.Slot >= MaxSlots {
		return fmt.Errorf("slot %d out of range 0..%d", l.Slot, MaxSlots-1)
	}
	if l.Nodes < 1 || l.Nodes > MaxNodes {
		return fmt.Errorf("%d nodes: a local cluster has 1..%d", l.Nodes, MaxNodes)
	}
	return nil
}

// Bridge is the name of the machine-side bridge every node's veth is attached to.
func (l Layout) Bridge() string { return fmt.Sprintf("conclave%d", l.Slot) }

// HostIP is the machine's address on the bridge: where nodes reach the apiserver.
func (l Layout) HostIP() net.IP { return net.IPv4(10, 213, byte(l.Slot), 1).To4() }

// NodeNetwork is the bridge's subnet, in CIDR notation.
func (l Layout) NodeNetwork() string { return fmt.Sprintf("10.213.%d.0/24", l.Slot) }

// ClusterCIDR holds every pod network of the layout.
func (l Layout) ClusterCIDR() string { return fmt.Sprintf("10.214.%d.0/20", l.Slot*16) }

// CgroupRoot is the cgroup (in every hierarchy) under which all of the layout's processes
// run, so that tearing it down can find and kill every one of them.
func (l Layout) CgroupRoot() string { return fmt.Sprintf("/conclave%d", l.Slot) }

// NetnsPrefix starts the names of the layout's network namespaces.
func (l Layout) NetnsPrefix() string { return fmt.Sprintf("conclave%d-", l.Slot) }

// Node returns node i (1-based).
func (l Layout) Node(i int) Node { return Node{Layout: l, Index: i} }

// AllNodes lists the layout's nodes in order.
func (l Layout) AllNodes() []Node {
	nodes := make([]Node, 0, l.Nodes)
	for i := 1; i <= l.Nodes; i++ {
		nodes = append(nodes, l.Node(i))
	}
	return nodes
}

// Name is the Kubernetes Node name.
func (n Node) Name() string { return fmt.Sprintf("node-%d", n.Index) }

// IP is the node's address: its InternalIP, where hostNetwork pods listen.
func (n Node) IP() net.IP { return net.IPv4(10, 213, byte(n.Slot), byte(10+n.Index)).To4() }

// PodCIDR is the node's pod network.
func (n Node) PodCIDR() string { return fmt.Sprintf("10.214.%d.0/24", n.Slot*16+n.Index) }

// Netns is the name of the node's network namespace (`ip netns exec <name> ...`).
func (n Node) Netns() string { return n.NetnsPrefix() + n.Name() }

// HostVeth is the machine-side end of the node's veth pair.
func (n Node) HostVeth() string { return fmt.Sprintf("cv%dn%d", n.Slot, n.Index) }

// Cgroup is the node's cgroup, under the layout's root: the kubelet's cgroupRoot.
func (n Node) Cgroup() string { return n.CgroupRoot() + "/" + n.Name() }

// SystemCgroup holds the node's own daemons (containerd, its shims, kubelet, kube-proxy).
func (n Node) SystemCgroup() string { return n.Cgroup() + "/system" }
