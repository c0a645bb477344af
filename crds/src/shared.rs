//! Types used by more than one kind: node capacity, port ranges, and the condition list
//! helper that keeps `lastTransitionTime` stable when nothing changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// What one media node carries at most. The operator reserves a conference's
/// `maxParticipants` against `participants` and one room against `rooms`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCapacity {
    /// Participants one media node serves at once, across all its rooms. Between 1 and 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub participants: u32,
    /// Rooms (conferences) one media node hosts at once. Between 1 and 500.
    #[schemars(range(min = 1, max = 500))]
    pub rooms: u32,
    /// Egress bandwidth in Mbit/s one media node may send. Used to report utilisation.
    #[schemars(range(min = 1, max = 400000))]
    #[serde(default = "default_egress_mbps")]
    pub egress_mbps: u32,
}

fn default_egress_mbps() -> u32 {
    1000
}

/// An inclusive range of ports, `min` to `max`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.min <= self.max").message("port range: min must be less than or equal to max (the range is inclusive and needs at least one port)"))]
pub struct PortRange {
    /// First port of the range (inclusive). Between 1024 and 65535.
    #[schemars(range(min = 1024, max = 65535))]
    pub min: u16,
    /// Last port of the range (inclusive). Between 1024 and 65535, and at least `min`.
    #[schemars(range(min = 1024, max = 65535))]
    pub max: u16,
}

impl PortRange {
    /// Number of ports in the range; zero when `max < min`.
    pub fn len(&self) -> u32 {
        (u32::from(self.max) + 1).saturating_sub(u32::from(self.min))
    }

    /// True when the range holds no port.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }
}

/// Condition status values as the API spells them.
pub fn condition_status(ok: bool) -> &'static str {
    if ok { "True" } else { "False" }
}

/// Sets condition `type_` in `conditions`, keeping `lastTransitionTime` when the status did
/// not change, so that a status patch is skipped when nothing but timestamps would differ.
/// Returns true when anything visible (status, reason, message) changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = condition_status(ok);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let changed = c.status != status || c.reason != reason || c.message != message;
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.to_owned();
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            c.observed_generation = observed_generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn port_range_counts_inclusively() {
        assert_eq!(
            PortRange {
                min: 50000,
                max: 50000
            }
            .len(),
            1
        );
        assert_eq!(
            PortRange {
                min: 50000,
                max: 50099
            }
            .len(),
            100
        );
        assert!(
            PortRange {
                min: 50001,
                max: 50000
            }
            .is_empty()
        );
        assert!(
            PortRange {
                min: 50000,
                max: 50099
            }
            .contains(50099)
        );
        assert!(
            !PortRange {
                min: 50000,
                max: 50099
            }
            .contains(50100)
        );
    }

    #[test]
    fn condition_keeps_transition_time_when_status_holds() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            "Ready",
            true,
            "Up",
            "ok",
            None,
            &at(10)
        ));
        assert!(!set_condition(
            &mut conds,
            "Ready",
            true,
            "Up",
            "ok",
            None,
            &at(20)
        ));
        assert_eq!(conds[0].last_transition_time, at(10));
        assert!(set_condition(
            &mut conds,
            "Ready",
            false,
            "Down",
            "gone",
            None,
            &at(30)
        ));
        assert_eq!(conds[0].last_transition_time, at(30));
        assert!(set_condition(
            &mut conds,
            "Ready",
            false,
            "Down",
            "still gone",
            None,
            &at(40)
        ));
        assert_eq!(conds[0].last_transition_time, at(30));
        assert_eq!(conds.len(), 1);
    }
}
