// nodes.go owns the real nodes `up --nodes N` adds to a control plane: their credentials and
// configuration files, one `node` process each inside the node's network namespace (see
// nodeinit.go), and the wait until every Node is Ready.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/conclave-dev/conclave/tests/controlplane/cluster"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// nodeReadyTimeout bounds the wait for a node: images imported, kubelet registered, Ready.
const nodeReadyTimeout = 180 * time.Second

// writeNodeFiles writes the configuration and credentials of every node of cl under D/nodes.
func writeNodeFiles(l layout, cl cluster.Layout, sandboxImage string) error {
	authority, err := loadCA(l.pki)
	if err != nil {
		return err
	}
	caPEM := authority.certPEM
	proxyPair, err := authority.issueClient("system:kube-proxy", nil)
	if err != nil {
		return err
	}
	proxyKubeconfig, err := kubeconfig(l.server(), caPEM, "system:kube-proxy",
		&clientcmdapi.AuthInfo{ClientCertificateData: proxyPair.certPEM, ClientKeyData: proxyPair.keyPEM})
	if err != nil {
		return err
	}
	for _, n := range cl.AllNodes() {
		f := nodeFiles(l, n)
		for _, dir := range []string{f.Dir, f.CNIConfDir(), f.Sysctls(), f.Logs(), f.VarLog()} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		user := "system:node:" + n.Name()
		pair, err := authority.issueClient(user, []string{"system:nodes"})
		if err != nil {
			return err
		}
		kubeletKubeconfig, err := kubeconfig(l.server(), caPEM, user,
			&clientcmdapi.AuthInfo{ClientCertificateData: pair.certPEM, ClientKeyData: pair.keyPEM})
		if err != nil {
			return err
		}
		files := map[string][]byte{
			f.Containerd(): []byte(cluster.ContainerdConfig(f, sandboxImage)),
			f.Kubelet():    []byte(cluster.KubeletConfig(n, f)),
			f.KubeProxy():  []byte(cluster.KubeProxyConfig(n, f)),
			filepath.Join(f.CNIConfDir(), "10-conclave.conflist"): []byte(cluster.CNIConfig(n)),
			f.ClientCA():            caPEM,
			f.ResolvConf():          nil,
			f.KubeletKubeconfig():   kubeletKubeconfig,
			f.KubeProxyKubeconfig(): proxyKubeconfig,
		}
		for entry, value := range cluster.KernelTunables {
			files[f.TunableFile(entry)] = []byte(value + "\n")
		}
		for path, data := range files {
			if err := writeFileAtomic(path, data, 0o600); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
	}
	return nil
}

func nodeFiles(l layout, n cluster.Node) cluster.NodeFiles {
	return cluster.NodeFiles{Dir: filepath.Join(l.dir, "nodes", n.Name())}
}

// startNodes runs every node's `node` process in its namespace and waits until all Nodes
// are Ready, logging how long each took.
func startNodes(o upOptions, l layout, cl cluster.Layout, sup *supervisor, admin *http.Client) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	binDir := filepath.Dir(self)
	began := time.Now()
	for _, n := range cl.AllNodes() {
		args := []string{"--dir", nodeFiles(l, n).Dir, "--name", n.Name(), "--ip", n.IP().String(),
			"--cgroup", n.Cgroup(), "--system-cgroup", n.SystemCgroup(), "--bin-dir", binDir}
		for _, image := range o.images {
			args = append(args, "--image", image)
		}
		for _, tag := range o.imageTags {
			args = append(args, "--image-tag", tag)
		}
		if err := sup.startIn(n.Netns(), n.Name(), "node", args...); err != nil {
			return err
		}
	}
	for _, n := range cl.AllNodes() {
		if err := sup.waitFor(n.Name(), nodeReadyTimeout, nodeReady(admin, l.server(), n.Name())); err != nil {
			return err
		}
		logf("node %s (%s) Ready %s after start", n.Name(), n.IP(), time.Since(began).Round(time.Millisecond))
	}
	return nil
}

// nodeReady returns a check that succeeds when the Node's Ready condition is True.
func nodeReady(client *http.Client, server, name string) func() error {
	return func() error {
		resp, err := client.Get(server + "/api/v1/nodes/" + name)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET node %s: %s", name, resp.Status)
		}
		var node struct {
			Status struct {
				Conditions []struct{ Type, Status, Message string }
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&node); err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == "Ready" {
				if c.Status == "True" {
					return nil
				}
				return fmt.Errorf("node %s not Ready: %s", name, c.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", name)
	}
}
