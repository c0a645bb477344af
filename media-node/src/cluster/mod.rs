//! The Kubernetes side of the node: its own MediaNode (address, capacity, draining), its
//! pool's MediaPool (ICE servers, TURN credential lifetime), the Conferences labelled with its
//! name (rooms), the pool's Ready nodes and other conferences' placement (redirects), its
//! Lease (liveness), and load reports by server-side apply under its own field manager.

pub mod conferences;
pub mod directory;
pub mod lease;
pub mod medianode;
pub mod pool;
pub mod report;

use std::time::Duration;

/// Delay before a watch is retried after an error.
pub const RETRY: Duration = Duration::from_secs(2);
