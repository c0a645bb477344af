//! Last-N: which camera videos each participant receives when its conference caps them
//! (`spec.media.lastN`). First the participants its page shows (`viewing`), then the most
//! recent speakers, then those who joined first. Screen shares and audio are never capped.
//! Pure: the room task applies the result (`forwarding`).

use std::collections::BTreeSet;

use super::model::ParticipantId;

/// Participants by how recently they were the active speaker, most recent first; those who
/// never were come after, in the order they joined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpeakingOrder {
    order: Vec<ParticipantId>,
}

impl SpeakingOrder {
    /// A participant joined: last, until it speaks.
    pub fn joined(&mut self, id: ParticipantId) {
        if !self.order.contains(&id) {
            self.order.push(id);
        }
    }

    /// A participant left.
    pub fn left(&mut self, id: ParticipantId) {
        self.order.retain(|p| *p != id);
    }

    /// A participant became the active speaker: first.
    pub fn spoke(&mut self, id: ParticipantId) {
        self.order.retain(|p| *p != id);
        self.order.insert(0, id);
    }

    /// Everyone, most recent speaker first.
    pub fn iter(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.order.iter().copied()
    }
}

/// The participants whose camera video `viewer` receives, of those publishing one
/// (`cameras`): all but the viewer without a `limit`; else at most `limit`, first those the
/// viewer's page shows (`viewing`, in its order), then by speaking order.
pub fn forwarded_cameras(
    order: &SpeakingOrder,
    cameras: &BTreeSet<ParticipantId>,
    viewer: ParticipantId,
    viewing: &[ParticipantId],
    limit: Option<usize>,
) -> BTreeSet<ParticipantId> {
    let candidates = viewing
        .iter()
        .copied()
        .chain(order.iter())
        .chain(cameras.iter().copied())
        .filter(|p| *p != viewer && cameras.contains(p));
    let mut chosen = BTreeSet::new();
    for p in candidates {
        if limit.is_some_and(|n| chosen.len() >= n) {
            break;
        }
        chosen.insert(p);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u64]) -> BTreeSet<ParticipantId> {
        list.iter().copied().map(ParticipantId).collect()
    }

    fn order(joined: &[u64], spoke: &[u64]) -> SpeakingOrder {
        let mut o = SpeakingOrder::default();
        for id in joined {
            o.joined(ParticipantId(*id));
        }
        for id in spoke {
            o.spoke(ParticipantId(*id));
        }
        o
    }

    #[test]
    fn without_a_limit_everyone_elses_camera_flows() {
        let o = order(&[1, 2, 3, 4], &[]);
        let got = forwarded_cameras(&o, &ids(&[1, 2, 3, 4]), ParticipantId(2), &[], None);
        assert_eq!(got, ids(&[1, 3, 4]));
    }

    #[test]
    fn the_most_recent_speakers_fill_the_limit_then_the_first_to_join() {
        // 1..=8 joined in order; 7 spoke, then 3, then 5 (the most recent).
        let o = order(&[1, 2, 3, 4, 5, 6, 7, 8], &[7, 3, 5]);
        let cameras = ids(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let cases: [(u64, usize, &[u64]); 5] = [
            (1, 2, &[5, 3]),
            (1, 3, &[5, 3, 7]),
            (1, 5, &[5, 3, 7, 2, 4]),
            // The viewer itself is skipped, and the next one takes its place.
            (5, 3, &[3, 7, 1]),
            (2, 100, &[1, 3, 4, 5, 6, 7, 8]),
        ];
        for (viewer, limit, want) in cases {
            let got = forwarded_cameras(&o, &cameras, ParticipantId(viewer), &[], Some(limit));
            assert_eq!(got, ids(want), "viewer {viewer}, limit {limit}");
        }
    }

    #[test]
    fn the_page_shown_comes_first_and_only_cameras_count() {
        let o = order(&[1, 2, 3, 4, 5, 6], &[2, 3]);
        // 4 publishes no camera: it takes no place.
        let cameras = ids(&[1, 2, 3, 5, 6]);
        let viewing = [6, 4, 5].map(ParticipantId);
        let got = forwarded_cameras(&o, &cameras, ParticipantId(1), &viewing, Some(3));
        assert_eq!(got, ids(&[6, 5, 3]));
        let got = forwarded_cameras(&o, &cameras, ParticipantId(1), &viewing, Some(1));
        assert_eq!(got, ids(&[6]));
    }

    #[test]
    fn leaving_and_speaking_again_reorder() {
        let mut o = order(&[1, 2, 3], &[3, 2]);
        assert_eq!(o.iter().collect::<Vec<_>>(), [2, 3, 1].map(ParticipantId));
        o.left(ParticipantId(2));
        o.joined(ParticipantId(4));
        o.spoke(ParticipantId(1));
        o.joined(ParticipantId(1));
        assert_eq!(o.iter().collect::<Vec<_>>(), [1, 3, 4].map(ParticipantId));
    }
}
