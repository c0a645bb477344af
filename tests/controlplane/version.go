// version.go owns the version the components report (/version, logs, metrics). Release
// builds stamp k8s.io/component-base/version with `-ldflags -X`; a plain `go build` leaves
// the placeholder "v0.0.0-master+$Format:%H$", so stamp it at start-up from this binary's
// own build info (the k8s.io/kubernetes module version).
package main

import (
	"runtime/debug"
	_ "unsafe" // for go:linkname

	"k8s.io/component-base/version"
)

//go:linkname gitVersion k8s.io/component-base/version.gitVersion
var gitVersion string

//go:linkname gitCommit k8s.io/component-base/version.gitCommit
var gitCommit string

//go:linkname gitTreeState k8s.io/component-base/version.gitTreeState
var gitTreeState string

func stampKubernetesVersion() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, m := range info.Deps {
		if m.Path == "k8s.io/kubernetes" {
			gitVersion, gitCommit, gitTreeState = m.Version, "", "clean"
			_ = version.SetDynamicVersion(m.Version) // equals gitVersion now, so accepted
		}
	}
}
