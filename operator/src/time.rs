//! Conversions between Kubernetes timestamps and the Unix seconds the decisions work in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Seconds since the Unix epoch of a Kubernetes timestamp.
pub fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

/// The current time as a Kubernetes timestamp.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// A Kubernetes timestamp at `secs` Unix seconds (clamped to the representable range).
pub fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}
