//! Benchmark building blocks shared by the benchmark binaries: conference placement load
//! (`placement`), latency statistics (`stats`) and process cost from /proc (`process`).

pub mod placement;
pub mod process;
pub mod stats;
