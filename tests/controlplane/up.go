// up.go owns `up`: it lays out a fresh control plane in a directory (PKI, ports, flags),
// starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler as child
// processes, waits until the cluster serves requests, publishes D/kubeconfig, and stays in
// the foreground until a signal or a component's death stops everything.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/conclave-dev/conclave/tests/controlplane/cluster"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const upUsage = "usage: controlplane up --dir D [--apiserver-port N] [--scale] " +
	"[--nodes N --sandbox-image REF --image ARCHIVE...]"

// Startup timeouts are generous: the machine may be busy compiling other things.
const (
	etcdTimeout      = 60 * time.Second
	apiserverTimeout = 180 * time.Second
	componentTimeout = 120 * time.Second
)

const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

type upOptions struct {
	dir           string
	apiserverPort int
	scale         bool
	nodes         int        // real nodes (kubelet, containerd, kube-proxy) to run; 0: none
	images        stringList // image archives every node imports
	sandboxImage  string     // the pod sandbox ("pause") image, among images
	imageTags     stringList // SRC=DST: more names of imported images
}

// layout is where everything of one control plane lives inside D.
type layout struct {
	dir, pki, logs, etcdData string
	etcdClient, etcdPeer     int
	apiserver, cm, scheduler int
	// apiserverIP is where the apiserver listens: 127.0.0.1, or with real nodes the machine's
	// address on their bridge.
	apiserverIP string
	// nodes is the plan of the real nodes, if any.
	nodes *cluster.Layout
}

func (l layout) path(name string) string { return filepath.Join(l.dir, name) }
func (l layout) server() string {
	return fmt.Sprintf("https://%s:%d", l.apiserverIP, l.apiserver)
}

func runUp(args []string) int {
	// Children get Pdeathsig from the thread that forks them: keep that thread alive.
	runtime.LockOSThread()

	opts, err := parseUpFlags(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "up: %v\n", err)
		return 2
	}
	began := time.Now()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	var nodes *cluster.Layout
	if opts.nodes > 0 {
		lock, err := lockFreeSlot()
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer lock.release()
		nodes = &cluster.Layout{Slot: lock.slot, Nodes: opts.nodes}
		if err := nodes.Validate(); err != nil {
			logf("%v", err)
			return 2
		}
		// Runs last: after every child has stopped.
		defer func() {
			if removed := teardownSlot(nodes.Slot); len(removed) > 0 {
				logf("removed %s", strings.Join(removed, ", "))
			}
		}()
		if err := setUpNetwork(*nodes); err != nil {
			logf("network: %v", err)
			return 1
		}
	}
	l, err := prepare(opts, nodes)
	if err != nil {
		logf("%v", err)
		return 1
	}
	sup := newSupervisor(l.logs, signals)
	defer sup.stopAll()

	admin, adminHTTP, err := bringUp(opts, l, sup)
	if err == nil && nodes != nil {
		err = startNodes(opts, l, *nodes, sup, adminHTTP)
	}
	switch {
	case errors.Is(err, errInterrupted):
		return 0
	case err != nil:
		logf("%v", err)
		return 1
	}
	if err := writeFileAtomic(l.path("kubeconfig"), admin, 0o600); err != nil {
		logf("write kubeconfig: %v", err)
		return 1
	}
	logf("control plane ready in %s", time.Since(began).Round(time.Millisecond))
	fmt.Printf("kubeconfig: %s\nserver: %s\n", l.path("kubeconfig"), l.server())

	select {
	case sig := <-signals:
		logf("received %s, stopping", sig)
		return 0
	case c := <-sup.exited:
		logf("%v", &childExit{c})
		return 1
	}
}

func parseUpFlags(args []string) (upOptions, error) {
	var o upOptions
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "directory for certificates, data, logs and kubeconfig (required)")
	fs.IntVar(&o.apiserverPort, "apiserver-port", 0, "kube-apiserver port on 127.0.0.1 (default: a free port)")
	fs.BoolVar(&o.scale, "scale", false, "lift apiserver inflight limits and client rate limits for benchmarks")
	fs.IntVar(&o.nodes, "nodes", 0, "real nodes to run (kubelet, containerd, kube-proxy), each in its own network namespace")
	fs.Var(&o.images, "image", "OCI image archive every node imports (repeatable)")
	fs.StringVar(&o.sandboxImage, "sandbox-image", "", "the pod sandbox (pause) image, one of the imported images")
	fs.Var(&o.imageTags, "image-tag", "SRC=DST: every node also names imported image SRC as DST (repeatable)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.dir == "" || fs.NArg() > 0 {
		return o, errors.New(upUsage)
	}
	if o.nodes > 0 && o.sandboxImage == "" {
		return o, errors.New("--nodes needs --sandbox-image (and that image among --image archives)")
	}
	for i, image := range o.images {
		abs, err := filepath.Abs(image)
		if err != nil {
			return o, err
		}
		if _, err := os.Stat(abs); err != nil {
			return o, fmt.Errorf("image archive: %w", err)
		}
		o.images[i] = abs
	}
	dir, err := filepath.Abs(o.dir)
	o.dir = dir
	return o, err
}

// prepare makes D fresh (old etcd data and kubeconfig removed), picks ports, and writes
// the PKI and the component kubeconfigs.
func prepare(o upOptions, nodes *cluster.Layout) (layout, error) {
	l := layout{dir: o.dir, pki: filepath.Join(o.dir, "pki"), logs: filepath.Join(o.dir, "logs"),
		etcdData: filepath.Join(o.dir, "etcd"), apiserverIP: "127.0.0.1", nodes: nodes}
	if nodes != nil {
		l.apiserverIP = nodes.HostIP().String()
	}
	for _, stale := range []string{l.path("kubeconfig"), l.etcdData, l.path("nodes")} {
		if err := os.RemoveAll(stale); err != nil {
			return l, err
		}
	}
	for _, d := range []string{l.pki, l.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return l, err
		}
	}

	ports, err := freePorts(5)
	if err != nil {
		return l, fmt.Errorf("pick ports: %w", err)
	}
	l.etcdClient, l.etcdPeer, l.apiserver, l.cm, l.scheduler = ports[0], ports[1], ports[2], ports[3], ports[4]
	if o.apiserverPort != 0 {
		l.apiserver = o.apiserverPort
	}
	if err := writePKI(l); err != nil {
		return l, err
	}
	if nodes != nil {
		return l, writeNodeFiles(l, *nodes, o.sandboxImage)
	}
	return l, nil
}

// writePKI issues every credential of the control plane and writes it under D.
func writePKI(l layout) error {
	authority, err := newCA()
	if err != nil {
		return err
	}
	serving, err := authority.issue("kube-apiserver", apiserverDNSNames,
		append([]net.IP{net.ParseIP(l.apiserverIP)}, apiserverIPs...))
	if err != nil {
		return err
	}
	saKey, saPub, err := newServiceAccountKey()
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": authority.certPEM, "sa.key": saKey, "sa.pub": saPub}
	pki := map[string][]byte{"ca.crt": authority.certPEM, "ca.key": authority.keyPEM,
		"apiserver.crt": serving.certPEM, "apiserver.key": serving.keyPEM}

	// The admin is a static bearer token in system:masters, so `kubectl --token T` against
	// D/kubeconfig really acts as T (a client certificate would win over the token).
	pki["tokens.csv"] = []byte(newToken() + `,conclave-admin,conclave-admin,"system:masters"` + "\n")
	pki["audit-policy.yaml"] = []byte(auditPolicy)

	// The apiserver's front-proxy identity, for the aggregation layer and the request-header
	// CA that controller-manager and scheduler expect when delegating authentication.
	proxy, err := authority.issue("front-proxy-client", nil, nil)
	if err != nil {
		return err
	}
	pki["front-proxy-client.crt"], pki["front-proxy-client.key"] = proxy.certPEM, proxy.keyPEM

	// The apiserver's identity towards kubelets (logs, exec, port-forward).
	kubeletClient, err := authority.issueClient("kube-apiserver-kubelet-client", []string{"system:masters"})
	if err != nil {
		return err
	}
	pki["kubelet-client.crt"], pki["kubelet-client.key"] = kubeletClient.certPEM, kubeletClient.keyPEM

	// The components use client certificates under their bootstrap-RBAC identities.
	for _, c := range []struct{ name, user string }{
		{"kube-controller-manager", "system:kube-controller-manager"},
		{"kube-scheduler", "system:kube-scheduler"},
	} {
		pair, err := authority.issue(c.user, nil, nil)
		if err != nil {
			return err
		}
		pki[c.name+".crt"], pki[c.name+".key"] = pair.certPEM, pair.keyPEM
		auth := &clientcmdapi.AuthInfo{ClientCertificateData: pair.certPEM, ClientKeyData: pair.keyPEM}
		if files[c.name+".kubeconfig"], err = kubeconfig(l.server(), authority.certPEM, c.user, auth); err != nil {
			return err
		}
	}
	if err := writeFiles(l.pki, pki); err != nil {
		return err
	}
	return writeFiles(l.dir, files)
}

// bringUp starts the components in dependency order and returns the admin kubeconfig and an
// HTTP client with the admin's credential once the apiserver is ready, the
// controller-manager has created the default ServiceAccount and the scheduler is healthy.
func bringUp(o upOptions, l layout, sup *supervisor) ([]byte, *http.Client, error) {
	admin, adminHTTP, err := adminClient(l)
	if err != nil {
		return nil, nil, err
	}
	// etcd speaks plain HTTP; controller-manager and scheduler serve in-memory self-signed certs.
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", l.etcdClient)
	if err := sup.start("etcd", "--data-dir", l.etcdData, "--listen-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", l.etcdPeer)); err != nil {
		return nil, nil, err
	}
	if err := sup.waitFor("etcd", etcdTimeout, get(probe, etcdURL+"/health")); err != nil {
		return nil, nil, err
	}

	if err := sup.start("kube-apiserver", apiserverArgs(o, l, etcdURL)...); err != nil {
		return nil, nil, err
	}
	if err := sup.waitFor("kube-apiserver", apiserverTimeout, get(adminHTTP, l.server()+"/readyz")); err != nil {
		return nil, nil, err
	}

	if err := sup.start("kube-controller-manager", controllerManagerArgs(o, l)...); err != nil {
		return nil, nil, err
	}
	if err := sup.start("kube-scheduler", schedulerArgs(o, l)...); err != nil {
		return nil, nil, err
	}
	checks := []struct {
		component string
		check     func() error
	}{
		{"kube-controller-manager", get(probe, fmt.Sprintf("https://127.0.0.1:%d/healthz", l.cm))},
		{"kube-scheduler", get(probe, fmt.Sprintf("https://127.0.0.1:%d/healthz", l.scheduler))},
		// Proof that controllers run: the serviceaccount controller made default/default.
		{"kube-controller-manager", get(adminHTTP, l.server()+"/api/v1/namespaces/default/serviceaccounts/default")},
	}
	for _, c := range checks {
		if err := sup.waitFor(c.component, componentTimeout, c.check); err != nil {
			return nil, nil, err
		}
	}
	return admin, adminHTTP, nil
}

// auditPolicy records the metadata (user, source address, verb, object) of every write the
// API server accepts or refuses, and nothing of reads.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
`

func apiserverArgs(o upOptions, l layout, etcdURL string) []string {
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + l.apiserverIP,
		"--advertise-address=" + l.apiserverIP, // never guessed from a default route
		"--secure-port=" + strconv.Itoa(l.apiserver),
		"--cert-dir=" + l.pki, // never /var/run/kubernetes
		"--tls-cert-file=" + filepath.Join(l.pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(l.pki, "apiserver.key"),
		"--client-ca-file=" + l.path("ca.crt"),
		"--token-auth-file=" + filepath.Join(l.pki, "tokens.csv"),
		"--requestheader-client-ca-file=" + l.path("ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + filepath.Join(l.pki, "front-proxy-client.crt"),
		"--proxy-client-key-file=" + filepath.Join(l.pki, "front-proxy-client.key"),
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + l.path("sa.pub"),
		"--service-account-signing-key-file=" + l.path("sa.key"),
		"--service-cluster-ip-range=" + cluster.ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--kubelet-client-certificate=" + filepath.Join(l.pki, "kubelet-client.crt"),
		"--kubelet-client-key=" + filepath.Join(l.pki, "kubelet-client.key"),
		// Kubelets are reached at their Node's address: a node name is never resolved.
		"--kubelet-preferred-address-types=InternalIP",
		// Who wrote what, for tests that must show a client wrote nothing (logs/audit.log).
		"--audit-policy-file=" + filepath.Join(l.pki, "audit-policy.yaml"),
		"--audit-log-path=" + filepath.Join(l.logs, "audit.log"),
		"--audit-log-maxsize=200",
		"--audit-log-maxbackup=1",
	}
	if l.nodes != nil {
		// The `kubernetes` Service leads to the apiserver's address on the nodes' bridge,
		// which kube-proxy on each node translates 10.0.0.1 to.
		args = append(args, "--endpoint-reconciler-type=lease")
	} else {
		// 127.0.0.1 is no endpoint address the API accepts.
		args = append(args, "--endpoint-reconciler-type=none")
	}
	if o.scale {
		args = append(args, "--max-requests-inflight=0", "--max-mutating-requests-inflight=0",
			"--enable-priority-and-fairness=false")
	}
	return args
}

func controllerManagerArgs(o upOptions, l layout) []string {
	kc := l.path("kube-controller-manager.kubeconfig")
	args := []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(l.cm),
		"--leader-elect=false",
		"--root-ca-file=" + l.path("ca.crt"),
		"--service-account-private-key-file=" + l.path("sa.key"),
		"--use-service-account-credentials=true", // each controller under its own RBAC, as kubeadm
		"--cluster-signing-cert-file=" + l.path("ca.crt"),
		"--cluster-signing-key-file=" + filepath.Join(l.pki, "ca.key"),
	}
	if o.scale {
		args = append(args, "--kube-api-qps=1000", "--kube-api-burst=2000")
	} else {
		// The default 20 QPS / burst 30 throttles the token requests of ~40 controllers
		// at start (about 5 s) and slows every test that creates many objects.
		args = append(args, "--kube-api-qps=100", "--kube-api-burst=200")
	}
	return args
}

func schedulerArgs(o upOptions, l layout) []string {
	kc := l.path("kube-scheduler.kubeconfig")
	args := []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(l.scheduler),
		"--leader-elect=false",
	}
	if o.scale {
		args = append(args, "--kube-api-qps=1000", "--kube-api-burst=2000")
	}
	return args
}

// adminClient returns the admin kubeconfig and an HTTP client with the same credential.
func adminClient(l layout) ([]byte, *http.Client, error) {
	caPEM, err := os.ReadFile(filepath.Join(l.pki, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	tokens, err := os.ReadFile(filepath.Join(l.pki, "tokens.csv"))
	if err != nil {
		return nil, nil, err
	}
	token, _, _ := strings.Cut(string(tokens), ",")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: bearer{token, &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}}}}
	kc, err := kubeconfig(l.server(), caPEM, "conclave-admin", &clientcmdapi.AuthInfo{Token: token})
	return kc, client, err
}

// bearer adds an Authorization header to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// get returns a check that succeeds when url answers 200.
func get(client *http.Client, url string) func() error {
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// freePorts asks the kernel for n distinct free ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close() // held until all are picked, so they differ
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
