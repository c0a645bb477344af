//! Test environment: the local Kubernetes cluster (control plane and real nodes), and helpers
//! for integration and end-to-end tests. Start with [`TestEnv::shared`].

pub mod bench;
pub mod client;
pub mod controlplane;
pub mod crds;
pub mod delay_relay;
pub mod dns;
pub mod error;
pub mod freezer;
pub mod helm;
pub mod http;
pub mod images;
pub mod kubectl;
pub mod load_balancer;
pub mod logs;
pub mod lossy_link;
pub mod manifests;
pub mod media_node_role;
pub mod narrow_link;
pub mod netns;
pub mod operator;
pub mod scale;
pub mod sockets;
pub mod testenv;
pub mod turn_probe;
pub mod wait;

pub use error::Error;
pub use testenv::{LocalNode, TestEnv, TestNamespace};
