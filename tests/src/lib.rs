//! Test environment: the local Kubernetes control plane, the harness kubelet, and helpers
//! for integration and end-to-end tests.
