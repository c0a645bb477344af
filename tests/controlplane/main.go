// main.go owns subcommand dispatch: one multi-call binary that is etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler or kwok depending on its first argument, plus
// `up`, which runs a whole local control plane by re-executing itself once per component
// (and optionally real nodes: kubelet, containerd and kube-proxy, built beside it).
package main

import (
	"fmt"
	"os"
)

const usage = `usage: controlplane <subcommand> [args...]

subcommands:
  up --dir D [--apiserver-port N] [--scale]   run a local control plane in D (foreground)
     [--nodes N --sandbox-image REF --image ARCHIVE...]
                                              with N real nodes running the imported images
  etcd --data-dir D --listen-client-urls URL --listen-peer-urls URL
  kube-apiserver ARGS...                      upstream kube-apiserver
  kube-controller-manager ARGS...             upstream kube-controller-manager
  kube-scheduler ARGS...                      upstream kube-scheduler
  kwok ARGS...                                sigs.k8s.io/kwok node/pod simulator
  cleanup                                     remove what stopped clusters with real nodes left
                                              (processes, network namespaces, bridges, cgroups)
  node ...                                    (internal) one real node, run by up --nodes
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	// Upstream code reads os.Args (kwok parses it directly; client-go derives its
	// user agent from os.Args[0]), so make it look as if the component ran on its own.
	os.Args = append([]string{name}, args...)

	stampKubernetesVersion()

	var code int
	switch name {
	case "up":
		code = runUp(args)
	case "etcd":
		code = runEtcd(args)
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
		code = runKubeComponent(name, args)
	case "kwok":
		code = runKwok(args)
	case "node":
		code = runNode(args)
	case "cleanup":
		code = runCleanup(args)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown subcommand %q\n\n%s", name, usage)
		code = 2
	}
	os.Exit(code)
}
