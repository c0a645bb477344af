package cluster

// config.go renders the files of one node. Paths inside a node are the standard ones
// (/run/containerd, /var/lib/kubelet, /var/log/pods): each node runs in a mount namespace of
// its own, with its own /run, /var/lib and /var/log (see `up`'s node subcommand).

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Binaries the nodes run, from Debian packages.
const (
	RuncPath   = "/usr/sbin/runc"
	CNIBinDir  = "/usr/lib/cni"
	ConfigFile = "containerd.toml"
)

// NodeFiles names the files of one node inside its directory on the machine.
type NodeFiles struct{ Dir string }

func (f NodeFiles) path(name string) string { return filepath.Join(f.Dir, name) }

// Containerd is containerd's configuration file.
func (f NodeFiles) Containerd() string { return f.path("containerd.toml") }

// Kubelet is the kubelet's configuration file.
func (f NodeFiles) Kubelet() string { return f.path("kubelet.yaml") }

// KubeletKubeconfig is the kubelet's credential (user system:node:<name>).
func (f NodeFiles) KubeletKubeconfig() string { return f.path("kubelet.kubeconfig") }

// KubeProxy is kube-proxy's configuration file.
func (f NodeFiles) KubeProxy() string { return f.path("kube-proxy.yaml") }

// KubeProxyKubeconfig is kube-proxy's credential (user system:kube-proxy).
func (f NodeFiles) KubeProxyKubeconfig() string { return f.path("kube-proxy.kubeconfig") }

// CNIConfDir holds the node's CNI network configuration.
func (f NodeFiles) CNIConfDir() string { return f.path("cni") }

// ClientCA is the cluster CA that signs the apiserver's client certificate for the kubelet.
func (f NodeFiles) ClientCA() string { return f.path("ca.crt") }

// ResolvConf is the resolv.conf pods get: no name server, so nothing in a pod resolves a
// name through the machine's resolver.
func (f NodeFiles) ResolvConf() string { return f.path("resolv.conf") }

// Sysctls holds files bind-mounted over the /proc/sys entries the kubelet would set, so a
// node never changes the machine's kernel settings.
func (f NodeFiles) Sysctls() string { return f.path("sysctl") }

// Logs holds containerd's, the kubelet's and kube-proxy's logs.
func (f NodeFiles) Logs() string { return f.path("logs") }

// VarLog is bind-mounted over the node's /var/log (pod and container logs).
func (f NodeFiles) VarLog() string { return f.path("var-log") }

// ContainerdConfig is containerd 2.4's configuration for a node: CRI with runc from Debian,
// cgroupfs (cgroup v1), the CNI plugins from Debian, the given sandbox (pause) image, and no
// OOM score changes (this machine does not grant CAP_SYS_RESOURCE).
func ContainerdConfig(f NodeFiles, sandboxImage string) string {
	return fmt.Sprintf(`version = 4
disabled_plugins = ["io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%q]
    conf_dir = %q
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %q
        SystemdCgroup = false
`, sandboxImage, CNIBinDir, f.CNIConfDir(), RuncPath)
}

// KubeletConfig is the kubelet's KubeletConfiguration for node n.
func KubeletConfig(n Node, f NodeFiles) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
failSwapOn: false
protectKernelDefaults: false
resolvConf: %s
volumePluginDir: /var/lib/kubelet/volume-plugins
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 110
nodeStatusReportFrequency: 10s
shutdownGracePeriod: 0s
`, n.IP(), n.Cgroup(), f.ResolvConf(), f.ClientCA())
}

// KubeProxyConfig is kube-proxy's configuration for node n: nftables mode, and no changes to
// the machine-wide conntrack settings (the rules themselves live in the node's namespace).
func KubeProxyConfig(n Node, f NodeFiles) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: %s
bindAddress: %s
clusterCIDR: %s
clientConnection:
  kubeconfig: %s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [primary]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, n.Name(), n.IP(), n.ClusterCIDR(), f.KubeProxyKubeconfig())
}

// CNIConfig is the node's pod network: a bridge with the node as gateway, addresses from
// its pod CIDR, and port mappings (hostPort).
func CNIConfig(n Node) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "conclave",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR())
}

// KernelTunables are the /proc/sys entries the kubelet checks, with the values it wants; a
// node sees files holding these values instead of the machine's settings.
var KernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// TunableFile is the file that stands in for /proc/sys/<entry>.
func (f NodeFiles) TunableFile(entry string) string {
	return filepath.Join(f.Sysctls(), strings.ReplaceAll(entry, "/", "."))
}
