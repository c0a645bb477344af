//! The operator's Event recorder, one per process. An Event repeated within a few minutes
//! (same object, type, reason and note) becomes a series on the Event first written (count
//! and last time) instead of a new Event; a different note is a different Event. (kube's own
//! recorder keys on the reason alone, so when two nodes of a pool drained together the
//! pool's second Event only counted up the first one's note, and the second node's name was
//! never shown.)

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::state::lock;

/// How long a written Event is remembered for folding repeats into it.
const REMEMBER: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// What to write for an Event about to be published.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// A new Event.
    Create,
    /// Its `count`th occurrence: update the series of the Event named `name`.
    Repeat { name: String, count: i32 },
}

#[derive(Clone, Debug)]
struct Written {
    name: String,
    count: i32,
    last: Timestamp,
}

/// The Events written in the last few minutes (pure; entries older than that are dropped on
/// every decision, so it holds at most what was written in that time).
#[derive(Debug, Default)]
pub struct Recent {
    written: HashMap<EventKey, Written>,
}

impl Recent {
    /// Decides how to write an Event with `key` at `now`.
    pub fn decide(&mut self, key: &EventKey, now: Timestamp) -> Write {
        self.written.retain(|_, w| w.last + REMEMBER > now);
        match self.written.get_mut(key) {
            Some(w) => {
                w.count += 1;
                w.last = now;
                Write::Repeat {
                    name: w.name.clone(),
                    count: w.count,
                }
            }
            None => Write::Create,
        }
    }

    /// Remembers that the Event with `key` was created as `name` at `now`.
    pub fn created(&mut self, key: EventKey, name: String, now: Timestamp) {
        self.written.insert(
            key,
            Written {
                name,
                count: 1,
                last: now,
            },
        );
    }

    /// Forgets `key` (its Event could not be updated, so the next one is created afresh).
    pub fn forget(&mut self, key: &EventKey) {
        self.written.remove(key);
    }
}

/// Writes Events as the operator's controller and instance.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

impl Recorder {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            recent: Mutex::default(),
        }
    }

    /// Publishes an Event about `regarding`, or counts it up if the same one was written in
    /// the last few minutes.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) -> kube::Result<()> {
        let namespace = regarding.namespace.clone().unwrap_or("default".to_owned());
        let key = EventKey {
            namespace: namespace.clone(),
            kind: regarding.kind.clone().unwrap_or_default(),
            name: regarding.name.clone().unwrap_or_default(),
            uid: regarding.uid.clone().unwrap_or_default(),
            warning,
            reason: reason.to_owned(),
            note,
        };
        let now = Timestamp::now();
        let write = lock(&self.recent).decide(&key, now);
        let api = Api::<Event>::namespaced(self.client.clone(), &namespace);
        match write {
            Write::Repeat { name, count } => {
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                let patch = serde_json::json!({ "series": series });
                let patched = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                if patched.is_err() {
                    lock(&self.recent).forget(&key);
                }
                patched.map(drop)
            }
            Write::Create => {
                let event = self.event(regarding, &key, now);
                let name = event.metadata.name.clone().unwrap_or_default();
                api.create(&PostParams::default(), &event).await?;
                lock(&self.recent).created(key, name, now);
                Ok(())
            }
        }
    }

    fn event(&self, regarding: &ObjectReference, key: &EventKey, now: Timestamp) -> Event {
        let subject = if key.name.is_empty() {
            &self.controller
        } else {
            &key.name
        };
        Event {
            metadata: ObjectMeta {
                namespace: Some(key.namespace.clone()),
                name: Some(format!("{subject}.{:x}", now.as_nanosecond())),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.to_owned()),
            reason: Some(key.reason.clone()),
            action: Some(key.reason.clone()),
            note: Some(key.note.clone()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, note: &str) -> EventKey {
        EventKey {
            namespace: "ns".into(),
            kind: "MediaPool".into(),
            name: name.into(),
            uid: "u".into(),
            warning: false,
            reason: "CapacitySurplus".into(),
            note: note.into(),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_repeat_counts_up_the_event_first_written() {
        let mut recent = Recent::default();
        let k = key("pool", "draining media node a");
        assert_eq!(recent.decide(&k, at(0)), Write::Create);
        recent.created(k.clone(), "pool.1".into(), at(0));
        let repeat = |count| Write::Repeat {
            name: "pool.1".into(),
            count,
        };
        assert_eq!(recent.decide(&k, at(10)), repeat(2));
        assert_eq!(recent.decide(&k, at(20)), repeat(3));
    }

    #[test]
    fn the_same_reason_with_another_note_is_another_event() {
        let mut recent = Recent::default();
        let a = key("pool", "draining media node a");
        recent.created(a.clone(), "pool.1".into(), at(0));
        assert_eq!(
            recent.decide(&key("pool", "draining media node b"), at(1)),
            Write::Create
        );
        assert_eq!(recent.decide(&key("other", &a.note), at(1)), Write::Create);
    }

    #[test]
    fn an_event_is_forgotten_after_a_while_and_on_a_failed_update() {
        let mut recent = Recent::default();
        let k = key("pool", "n");
        recent.created(k.clone(), "pool.1".into(), at(0));
        // Each repeat keeps it for another while from then.
        assert!(matches!(recent.decide(&k, at(300)), Write::Repeat { .. }));
        assert!(matches!(recent.decide(&k, at(600)), Write::Repeat { .. }));
        assert_eq!(recent.decide(&k, at(600 + 361)), Write::Create);
        assert!(recent.written.is_empty(), "an old entry is dropped");

        recent.created(k.clone(), "pool.2".into(), at(1000));
        recent.forget(&k);
        assert_eq!(recent.decide(&k, at(1001)), Write::Create);
    }
}
