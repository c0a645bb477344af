//! The scale harness: a local control plane with KWOK-simulated Kubernetes Nodes
//! (`cluster`, `kwok`), a load simulator standing in for each media node's status writes
//! (`simulator`), a simulated day of conferences (`plan`, `day`, `observe`, `summary`), the
//! operator's cost with many nodes (`cost`, `apiserver`) beside the API server's own ceiling
//! for placement writes (`ceiling`), and the reports (`report`, `svg`).

pub mod apiserver;
pub mod ceiling;
pub mod cluster;
pub mod cost;
pub mod day;
pub mod kwok;
pub mod observe;
pub mod plan;
pub mod replay;
pub mod report;
pub mod simulator;
pub mod summary;
pub mod svg;
