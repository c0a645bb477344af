//! The Conclave operator: turns MediaPools into running media nodes and TURN relays, keeps
//! them sized to room load, places Conferences on nodes and publishes how to join them.
//!
//! Layout: `decide` holds the pure decisions (placement, autoscaling, evacuation pacing);
//! `resources` builds child objects; `controllers` gather inputs, decide and apply;
//! `state` holds the shared watch caches (with `index`) and the reservation ledger.

pub mod check_cmd;
pub mod config;
pub mod controllers;
pub mod decide;
pub mod dns;
pub mod error;
pub mod events;
pub mod fence;
pub mod http;
pub mod index;
pub mod leader;
pub mod ledger;
pub mod metrics;
pub mod own_writes;
pub mod pacing;
pub mod probe;
pub mod release_cmd;
pub mod resources;
pub mod roster;
pub mod shutdown;
pub mod snapshot;
pub mod start;
pub mod state;
pub mod time;
pub mod token_cmd;
pub mod watches;

pub use error::{Error, Result};
