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

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

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
}

// layout is where everything of one control plane lives inside D.
type layout struct {
	dir, pki, logs, etcdData string
	etcdClient, etcdPeer     int
	apiserver, cm, scheduler int
}

func (l layout) path(name string) string { return filepath.Join(l.dir, name) }
func (l layout) server() string          { return fmt.Sprintf("https://127.0.0.1:%d", l.apiserver) }

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

	l, err := prepare(opts)
	if err != nil {
		logf("%v", err)
		return 1
	}
	sup := newSupervisor(l.logs, signals)
	defer sup.stopAll()

	admin, err := bringUp(opts, l, sup)
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
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.dir == "" || fs.NArg() > 0 {
		return o, errors.New("usage: controlplane up --dir D [--apiserver-port N] [--scale]")
	}
	dir, err := filepath.Abs(o.dir)
	o.dir = dir
	return o, err
}

// prepare makes D fresh (old etcd data and kubeconfig removed), picks ports, and writes
// the PKI and the component kubeconfigs.
func prepare(o upOptions) (layout, error) {
	l := layout{dir: o.dir, pki: filepath.Join(o.dir, "pki"), logs: filepath.Join(o.dir, "logs"),
		etcdData: filepath.Join(o.dir, "etcd")}
	for _, stale := range []string{l.path("kubeconfig"), l.etcdData} {
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
	return l, writePKI(l)
}

// writePKI issues every credential of the control plane and writes it under D.
func writePKI(l layout) error {
	authority, err := newCA()
	if err != nil {
		return err
	}
	serving, err := authority.issue("kube-apiserver", apiserverDNSNames, apiserverIPs)
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

	// The apiserver's front-proxy identity, for the aggregation layer and the request-header
	// CA that controller-manager and scheduler expect when delegating authentication.
	proxy, err := authority.issue("front-proxy-client", nil, nil)
	if err != nil {
		return err
	}
	pki["front-proxy-client.crt"], pki["front-proxy-client.key"] = proxy.certPEM, proxy.keyPEM

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

// bringUp starts the components in dependency order and returns the admin kubeconfig once
// the apiserver is ready, the controller-manager has created the default ServiceAccount
// and the scheduler is healthy.
func bringUp(o upOptions, l layout, sup *supervisor) ([]byte, error) {
	admin, adminHTTP, err := adminClient(l)
	if err != nil {
		return nil, err
	}
	// etcd speaks plain HTTP; controller-manager and scheduler serve in-memory self-signed certs.
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", l.etcdClient)
	if err := sup.start("etcd", "--data-dir", l.etcdData, "--listen-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", l.etcdPeer)); err != nil {
		return nil, err
	}
	if err := sup.waitFor("etcd", etcdTimeout, get(probe, etcdURL+"/health")); err != nil {
		return nil, err
	}

	if err := sup.start("kube-apiserver", apiserverArgs(o, l, etcdURL)...); err != nil {
		return nil, err
	}
	if err := sup.waitFor("kube-apiserver", apiserverTimeout, get(adminHTTP, l.server()+"/readyz")); err != nil {
		return nil, err
	}

	if err := sup.start("kube-controller-manager", controllerManagerArgs(o, l)...); err != nil {
		return nil, err
	}
	if err := sup.start("kube-scheduler", schedulerArgs(o, l)...); err != nil {
		return nil, err
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
			return nil, err
		}
	}
	return admin, nil
}

func apiserverArgs(o upOptions, l layout, etcdURL string) []string {
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1", // no default route here: the apiserver cannot pick one
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
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
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
