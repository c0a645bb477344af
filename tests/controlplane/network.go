// network.go owns the network of a local cluster's real nodes on this machine: a bridge with
// the machine's address, and per node a network namespace joined to it by a veth pair, with
// routes between the nodes' pod networks. Nothing is routed beyond the bridge.
package main

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/conclave-dev/conclave/tests/controlplane/cluster"
)

// ip runs the `ip` command (iproute2) and returns its error with its output.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setUpNetwork creates the bridge and every node's namespace, veth and routes.
func setUpNetwork(l cluster.Layout) error {
	bridge := l.Bridge()
	steps := [][]string{
		{"link", "add", bridge, "type", "bridge"},
		{"addr", "add", l.HostIP().String() + "/24", "dev", bridge},
		{"link", "set", bridge, "up"},
	}
	for _, n := range l.AllNodes() {
		ns := n.Netns()
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", n.HostVeth(), "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"link", "set", n.HostVeth(), "master", bridge, "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "addr", "add", n.IP().String() + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "route", "add", "default", "via", l.HostIP().String()},
			// The machine reaches pods (and answers them) through their node.
			[]string{"route", "add", n.PodCIDR(), "via", n.IP().String(), "dev", bridge},
		)
		for _, other := range l.AllNodes() {
			if other.Index != n.Index {
				steps = append(steps, []string{"-n", ns, "route", "add", other.PodCIDR(), "via", other.IP().String()})
			}
		}
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}
