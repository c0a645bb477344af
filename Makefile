# Conclave: build, test, demo and benchmark entry points. Every target installs what it
# needs when missing and skips work that is already up to date.

SHELL := /bin/bash
CARGO ?= cargo
CONTROLPLANE := tests/controlplane/bin/controlplane
CONTROLPLANE_SRC := $(wildcard tests/controlplane/*.go tests/controlplane/cluster/*.go) tests/controlplane/go.mod tests/controlplane/go.sum
K8S_VERSION := v1.36.3
# The real nodes' kubelet and kube-proxy come from the control plane's module set, stamped with
# the Kubernetes version they report.
K8S_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitTreeState=clean
CONTAINERD := tests/controlplane/bin/containerd
CONTAINERD_VERSION := v2.4.2
CRD_DIRS := crds charts/conclave/crds
API_DOC := docs/api.md
HELM := tests/controlplane/bin/helm
HELM_VERSION := v4.3.1
CHART := charts/conclave
export CONCLAVE_CONTROLPLANE := $(CURDIR)/$(CONTROLPLANE)
export CONCLAVE_HELM := $(CURDIR)/$(HELM)

.PHONY: all build crds check-crds fmt-check clippy lint lint-chart test unit-test \
        integration-test demo bench deps controlplane containerd helm images test-images test-patched clean

all: build

## build: the Rust binaries (operator, media-node, crdgen, the demo)
build:
	$(CARGO) build --workspace --bins

## controlplane: the local Kubernetes control plane, the real nodes' kubelet and kube-proxy, and
## kubectl (Go, one module set), rebuilt only when their sources change
controlplane: $(CONTROLPLANE)
$(CONTROLPLANE): $(CONTROLPLANE_SRC)
	bash scripts/ensure-go.sh
	cd tests/controlplane && go build -trimpath -ldflags='$(K8S_LDFLAGS)' -o bin/ \
	  . k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
	@touch $@

## containerd: containerd, ctr and the runc shim for the real nodes, from containerd's Go module
containerd: $(CONTAINERD)
$(CONTAINERD): Makefile
	bash scripts/ensure-go.sh
	@if $@ --version 2>/dev/null | grep -qw '$(CONTAINERD_VERSION)'; then touch $@; \
	else echo "building containerd $(CONTAINERD_VERSION) from its Go module"; \
	  GOBIN=$(CURDIR)/tests/controlplane/bin go install -trimpath -tags no_btrfs,no_devmapper,no_zfs \
	    -ldflags='-s -w -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION)' \
	    github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION) \
	    github.com/containerd/containerd/v2/cmd/ctr@$(CONTAINERD_VERSION) \
	    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION); fi

## helm: the helm CLI, built from its Go module; rebuilt only when HELM_VERSION changes
helm: $(HELM)
$(HELM): Makefile
	bash scripts/ensure-go.sh
	@if [ "$$($@ version --template '{{.Version}}' 2>/dev/null)" = "$(HELM_VERSION)" ]; then touch $@; \
	else echo "building helm $(HELM_VERSION) from its Go module"; \
	  GOBIN=$(CURDIR)/tests/controlplane/bin go install -trimpath \
	    -ldflags='-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)' \
	    helm.sh/helm/v4/cmd/helm@$(HELM_VERSION); fi

## deps: Debian packages the tests and the demo use (coturn, chromium, ...)
deps:
	bash scripts/ensure-packages.sh

## crds: regenerate the CRD YAML in crds/ and the chart
crds:
	$(CARGO) run --quiet -p conclave-crds --bin crdgen -- --docs $(API_DOC) $(CRD_DIRS)

## check-crds: fail when the committed CRD YAML differs from the types
check-crds: crds
	@git diff --exit-code -- $(CRD_DIRS) $(API_DOC) || { echo "CRD YAML is stale: run 'make crds' and commit the result"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard -- $(CRD_DIRS))" || { echo "new CRD YAML is not committed: run 'make crds' and commit the result"; exit 1; }

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## lint-chart: helm lint --strict of the chart, with its defaults and with every option on
lint-chart: $(HELM)
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set operator.watchNamespace=conclave,operator.dnsServer=10.0.0.10:53,defaultPool.enabled=true,serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true

## lint: formatting, clippy with warnings as errors, and the chart
lint: fmt-check clippy lint-chart

## test-images: the images the tests' real nodes run, from the debug binaries (target/images/debug)
test-images:
	bash scripts/images.sh --profile debug operator media-node turn pause

## test: everything CI runs
test: lint check-crds deps controlplane containerd helm
	$(CARGO) build --workspace --bins --benches
	$(MAKE) test-images
	cd tests/controlplane && go test ./cluster/
	$(CARGO) test --workspace
	$(MAKE) test-patched

## test-patched: the unit tests of the patched dependencies in third_party/ (their PATCHED.md)
test-patched:
	$(CARGO) test --manifest-path third_party/rtc-dtls/Cargo.toml --lib --locked --target-dir target/third_party
	$(CARGO) test --manifest-path third_party/rtc-interceptor/Cargo.toml --lib --locked --target-dir target/third_party
	$(CARGO) test --manifest-path third_party/rtc/Cargo.toml --lib --locked --target-dir target/third_party
	$(CARGO) test --manifest-path third_party/webrtc/Cargo.toml --lib --locked --target-dir target/third_party

## demo: a local cluster with Conclave installed by its chart, until Ctrl-C
demo: deps controlplane containerd helm build test-images
	$(CARGO) run --quiet -p conclave-testenv --bin conclave-demo

## images: OCI image archives of the operator, the media node and the TURN relay (target/images/)
images:
	bash scripts/images.sh

## bench: benchmarks, results under docs/benchmarks/
bench: deps controlplane
	bash scripts/bench.sh $(BENCH_FLAGS)

clean:
	$(CARGO) clean
	rm -rf tests/controlplane/bin
