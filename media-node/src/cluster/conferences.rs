//! Watches the Conferences whose `status.mediaNode` is this node (a field selector): opens a
//! room for each, updates it when the conference changes, and closes it when the conference
//! ends, is deleted, or moves away — then reads the conference's new
//! `status.join.signalingUrl` and tells the room's clients to reconnect there.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use conclave_crds::report::conferences_on;
use conclave_crds::{Conference, ConferencePhase};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::node::NodeState;
use crate::room::model::MediaPolicy;
use crate::room::task::{CloseReason, RoomSettings};

/// How long a node waits for a moved conference's new join info before it closes the room
/// without a reconnect target.
const MOVE_WAIT: Duration = Duration::from_secs(15);

/// What to do with the room of a conference the watch reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomAction {
    /// Open or update the room.
    Open(RoomSettings),
    /// Close the room.
    Close(CloseReason),
}

/// The room action for a conference placed on this node.
pub fn on_applied(conference: &Conference) -> RoomAction {
    let phase = conference.status.as_ref().and_then(|s| s.phase);
    let ended = conference.metadata.deletion_timestamp.is_some()
        || matches!(
            phase,
            Some(ConferencePhase::Ended | ConferencePhase::Failed)
        );
    if ended {
        return RoomAction::Close(CloseReason::Ended);
    }
    RoomAction::Open(RoomSettings {
        conference: conference.name_any(),
        max_participants: conference.spec.max_participants,
        media: MediaPolicy::from(&conference.spec.media),
    })
}

/// The room action for a conference that is no longer placed on this node: `current` is
/// the conference as it now stands (`None` when deleted).
pub fn on_gone(
    current: Option<&Conference>,
    node: &str,
    own_url: Option<&str>,
) -> Option<RoomAction> {
    let Some(c) = current else {
        return Some(RoomAction::Close(CloseReason::Ended));
    };
    if c.metadata.deletion_timestamp.is_some() {
        return Some(RoomAction::Close(CloseReason::Ended));
    }
    let status = c.status.as_ref();
    let elsewhere = status
        .and_then(|s| s.media_node.as_deref())
        .is_some_and(|n| n != node);
    let url = status
        .and_then(|s| s.join.as_ref())
        .map(|j| j.signaling_url.as_str())
        .filter(|u| !u.is_empty() && Some(*u) != own_url);
    match url {
        Some(url) if elsewhere || own_url.is_some() => {
            Some(RoomAction::Close(CloseReason::Moved {
                signaling_url: url.to_owned(),
            }))
        }
        // The operator has not published the new node yet.
        _ => None,
    }
}

fn apply(state: &Arc<NodeState>, conference: &str, action: RoomAction) {
    match action {
        RoomAction::Open(settings) => {
            if let Err(e) = state.open_room(settings) {
                tracing::warn!(conference, error = %e, "room not opened");
            }
        }
        RoomAction::Close(reason) => {
            tracing::info!(conference, ?reason, "closing room");
            state.close_room(conference, reason);
        }
    }
}

async fn moved_away(api: Api<Conference>, state: Arc<NodeState>, name: String) {
    let deadline = tokio::time::Instant::now() + MOVE_WAIT;
    loop {
        // A read that fails says nothing about the conference: try again rather than tell
        // its clients it ended (only a conference that is gone has ended).
        let read = api.get_opt(&name).await;
        if let Err(e) = &read {
            tracing::warn!(conference = %name, error = %e, "reading moved conference");
        }
        let own = state.signaling_url();
        if let Ok(current) = read
            && let Some(action) = on_gone(current.as_ref(), &state.settings.name, own.as_deref())
        {
            return apply(&state, &name, action);
        }
        if tokio::time::Instant::now() >= deadline {
            return apply(&state, &name, RoomAction::Close(CloseReason::Ended));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Watches this node's conferences forever.
pub async fn run(client: Client, namespace: String, state: Arc<NodeState>) {
    let api: Api<Conference> = Api::namespaced(client, &namespace);
    let selector = conferences_on(&state.settings.name);
    let mut stream = watcher(api.clone(), watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(c)) => {
                listed.insert(c.name_any());
                apply(&state, &c.name_any(), on_applied(&c));
            }
            Ok(watcher::Event::InitDone) => {
                // Rooms whose conference vanished while the watch was down.
                for name in state.room_names() {
                    if !listed.contains(&name) {
                        tokio::spawn(moved_away(api.clone(), Arc::clone(&state), name));
                    }
                }
                state.mark_synced();
            }
            Ok(watcher::Event::Apply(c)) => apply(&state, &c.name_any(), on_applied(&c)),
            Ok(watcher::Event::Delete(c)) => {
                tokio::spawn(moved_away(api.clone(), Arc::clone(&state), c.name_any()));
            }
            Err(e) => tracing::warn!(error = %e, "Conference watch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::ConferenceSpec;
    use conclave_crds::conference::{ConferenceStatus, JoinInfo};

    fn conference() -> Conference {
        let spec: ConferenceSpec =
            serde_json::from_value(serde_json::json!({"pool": "default", "maxParticipants": 12}))
                .expect("spec");
        Conference::new("standup", spec)
    }

    fn placed(node: &str, url: &str) -> Conference {
        let mut c = conference();
        c.status = Some(ConferenceStatus {
            media_node: Some(node.into()),
            join: Some(JoinInfo {
                signaling_url: url.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn opens_with_the_conference_limits() {
        let RoomAction::Open(s) = on_applied(&conference()) else {
            panic!("a live conference opens a room");
        };
        assert_eq!(s.max_participants, 12);
        assert!(s.media.video);
    }

    #[test]
    fn ended_conferences_close() {
        let mut c = conference();
        c.status = Some(ConferenceStatus {
            phase: Some(ConferencePhase::Ended),
            ..Default::default()
        });
        assert_eq!(on_applied(&c), RoomAction::Close(CloseReason::Ended));
    }

    #[test]
    fn deleted_conference_ends_the_room() {
        assert_eq!(
            on_gone(None, "n1", None),
            Some(RoomAction::Close(CloseReason::Ended))
        );
    }

    #[test]
    fn moved_conference_sends_clients_to_the_new_node() {
        let c = placed("n2", "ws://10.0.0.2:7880/rtc");
        assert_eq!(
            on_gone(Some(&c), "n1", Some("ws://10.0.0.1:7880/rtc")),
            Some(RoomAction::Close(CloseReason::Moved {
                signaling_url: "ws://10.0.0.2:7880/rtc".into()
            }))
        );
    }

    #[test]
    fn waits_while_join_info_still_names_this_node() {
        let c = placed("n1", "ws://10.0.0.1:7880/rtc");
        assert_eq!(
            on_gone(Some(&c), "n1", Some("ws://10.0.0.1:7880/rtc")),
            None
        );
    }
}
