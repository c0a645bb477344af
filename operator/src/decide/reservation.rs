//! Reservations over time: what a media node has promised its conferences, and when.
//!
//! A conference holds its reservation from the moment it is placed, but it occupies the node
//! only over its span: from its `startTime` (a scheduled conference is placed during the
//! pool's warm-up, before it starts) until its `endTime` (the operator ends it then). Two
//! conferences whose spans do not overlap share the same capacity, so a meeting booked for
//! 10:00 fits on the node of one that ends at 10:00. A span with no start is occupied from now
//! on; one with no end, for ever.
//!
//! A conference reserves the participants it expects (`expectedParticipants`, else
//! `maxParticipants`); what it may grow by beyond that is its growth, and a node keeps room
//! (headroom) for the largest growth among the conferences occupying it, so any one of them can
//! still fill up to its maxParticipants.

use super::UnixSeconds;
use conclave_crds::capacity::Usage;

/// When a conference occupies its node: `[from, until)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Its startTime; None when it has no start time (ad hoc) or starts now.
    pub from: Option<UnixSeconds>,
    /// Its endTime; None when it has none.
    pub until: Option<UnixSeconds>,
}

impl Span {
    /// Occupied from now on, for ever: an ad-hoc conference.
    pub const ALWAYS: Span = Span {
        from: None,
        until: None,
    };

    /// The span of a conference with these start and end times.
    pub fn of(start: Option<UnixSeconds>, end: Option<UnixSeconds>) -> Self {
        Span {
            from: start,
            until: end,
        }
    }

    /// True when the conference occupies its node at `t`.
    fn covers(&self, t: UnixSeconds) -> bool {
        self.from.is_none_or(|from| from <= t) && self.until.is_none_or(|until| t < until)
    }

    /// The first moment of the span at or after `now`.
    fn first_moment(&self, now: UnixSeconds) -> UnixSeconds {
        self.from.map_or(now, |from| from.max(now))
    }

    /// True when this span and `other` share a moment at or after `now`.
    fn meets(&self, other: Span, now: UnixSeconds) -> bool {
        let both_begun = self.first_moment(now).max(other.first_moment(now));
        self.covers(both_begun) && other.covers(both_begun)
    }
}

/// One conference's reservation: how much, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The participants it expects and one room.
    pub usage: Usage,
    /// Participants it may have beyond `usage` (its maxParticipants minus what it expects).
    pub growth: u32,
    /// When it occupies the node.
    pub span: Span,
}

impl Reservation {
    /// A conference expecting `expected` participants of at most `max`, over `span`.
    pub fn conference(expected: u32, max: u32, span: Span) -> Self {
        let expected = expected.min(max);
        Reservation {
            usage: Usage::conference(expected),
            growth: max - expected,
            span,
        }
    }

    /// What it occupies should it fill up to its maxParticipants.
    pub fn full(&self) -> Usage {
        self.usage.plus(Usage {
            participants: self.growth,
            rooms: 0,
        })
    }
}

/// Everything reserved on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservations(Vec<Reservation>);

impl Reservations {
    /// Adds a reservation.
    pub fn add(&mut self, reservation: Reservation) {
        self.0.push(reservation);
    }

    /// Everything held, whenever it is occupied: a node holding any reservation is not
    /// empty.
    pub fn total(&self) -> Usage {
        self.0
            .iter()
            .fold(Usage::default(), |sum, r| sum.plus(r.usage))
    }

    /// What is occupied at `t`.
    pub fn at(&self, t: UnixSeconds) -> Usage {
        self.0
            .iter()
            .filter(|r| r.span.covers(t))
            .fold(Usage::default(), |sum, r| sum.plus(r.usage))
    }

    /// The most occupied at any moment of `span` from `now` on (participants and rooms each
    /// at their own worst moment, so never less than the truth). Occupation only grows where
    /// a reservation starts, so the span's first moment and those starts are the moments
    /// that count.
    pub fn peak(&self, span: Span, now: UnixSeconds) -> Usage {
        let first = span.first_moment(now);
        let starts = self
            .0
            .iter()
            .filter_map(|r| r.span.from)
            .filter(|&from| from > first && span.covers(from));
        std::iter::once(first)
            .chain(starts)
            .map(|t| self.at(t))
            .fold(Usage::default(), |worst, usage| Usage {
                participants: worst.participants.max(usage.participants),
                rooms: worst.rooms.max(usage.rooms),
            })
    }

    /// Participants kept free over `span` from `now` on for growth: the largest growth among
    /// the reservations occupying the node at some moment of it.
    pub fn headroom(&self, span: Span, now: UnixSeconds) -> u32 {
        self.0
            .iter()
            .filter(|r| r.span.meets(span, now))
            .map(|r| r.growth)
            .max()
            .unwrap_or(0)
    }

    /// What a node holding these reservations and reporting `reported` connected has
    /// committed at the worst moment of `span` from `now` on: the reservations occupied then,
    /// what it reports beyond the reservations occupied now (participants who joined a
    /// booking early, beyond a conference's expectation, or in a conference reserved
    /// elsewhere), and the headroom for growth.
    pub fn committed_over(&self, reported: Usage, span: Span, now: UnixSeconds) -> Usage {
        let occupied = self.at(now);
        let unreserved = Usage {
            participants: reported.participants.saturating_sub(occupied.participants),
            rooms: reported.rooms.saturating_sub(occupied.rooms),
        };
        self.peak(span, now).plus(unreserved).plus(Usage {
            participants: self.headroom(span, now),
            rooms: 0,
        })
    }

    /// What adding `new` commits on top of [`Reservations::committed_over`] its span: what it
    /// expects, and the part of its growth the headroom kept already does not cover.
    pub fn added_by(&self, new: &Reservation, now: UnixSeconds) -> Usage {
        let uncovered = new.growth.saturating_sub(self.headroom(new.span, now));
        new.usage.plus(Usage {
            participants: uncovered,
            rooms: 0,
        })
    }

    /// When the node empties of its reservations: the latest end among them (`now` when it
    /// holds none, or only ones that ended; never, `UnixSeconds::MAX`, when one has no end).
    pub fn empties_at(&self, now: UnixSeconds) -> UnixSeconds {
        self.0
            .iter()
            .map(|r| r.span.until.unwrap_or(UnixSeconds::MAX))
            .max()
            .unwrap_or(now)
            .max(now)
    }

    /// How well `new` fits the node's lifetime: how long it puts off the node's emptying, and
    /// how long the node outlives it. Placement prefers the least delay, then the least
    /// slack, so meetings that end together share nodes and those nodes empty together.
    pub fn end_fit(&self, new: &Reservation, now: UnixSeconds) -> EndFit {
        let ends = new.span.until.unwrap_or(UnixSeconds::MAX);
        let empties = self.empties_at(now);
        EndFit {
            delay: ends.saturating_sub(empties).max(0),
            slack: empties.saturating_sub(ends).max(0),
        }
    }
}

/// How a conference's end fits a node's lifetime ([`Reservations::end_fit`]), ordered best
/// first: least delay to the node's emptying, then least slack after the conference ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndFit {
    /// Seconds the conference puts off the moment the node empties.
    pub delay: i64,
    /// Seconds the node stays occupied after the conference ends.
    pub slack: i64,
}

impl From<Usage> for Reservations {
    /// One reservation occupied from now on, for ever.
    fn from(usage: Usage) -> Self {
        if usage == Usage::default() {
            return Reservations::default();
        }
        Reservations(vec![Reservation {
            usage,
            growth: 0,
            span: Span::ALWAYS,
        }])
    }
}

impl FromIterator<Reservation> for Reservations {
    fn from_iter<I: IntoIterator<Item = Reservation>>(iter: I) -> Self {
        Reservations(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: UnixSeconds = 1_000_000;
    const HOUR: i64 = 3600;

    fn held(participants: u32, from: Option<i64>, until: Option<i64>) -> Reservation {
        Reservation {
            usage: Usage::conference(participants),
            growth: 0,
            span: Span::of(from, until),
        }
    }

    #[test]
    fn a_meeting_ending_when_another_starts_shares_its_capacity() {
        let node: Reservations = [held(80, None, Some(NOW + HOUR))].into_iter().collect();
        let next = Span::of(Some(NOW + HOUR), Some(NOW + 2 * HOUR));
        assert_eq!(node.peak(next, NOW), Usage::default());
        let overlapping = Span::of(Some(NOW + HOUR - 60), Some(NOW + 2 * HOUR));
        assert_eq!(node.peak(overlapping, NOW), Usage::conference(80));
    }

    #[test]
    fn a_booking_occupies_only_from_its_start() {
        let node: Reservations = [held(30, Some(NOW + 900), Some(NOW + HOUR))]
            .into_iter()
            .collect();
        assert_eq!(node.at(NOW), Usage::default());
        assert_eq!(node.at(NOW + 900), Usage::conference(30));
        assert_eq!(node.total(), Usage::conference(30));
        // An ad-hoc conference placed now runs into the booking.
        assert_eq!(node.peak(Span::ALWAYS, NOW), Usage::conference(30));
        // One that ends before the booking starts does not.
        assert_eq!(
            node.peak(Span::of(None, Some(NOW + 900)), NOW),
            Usage::default()
        );
    }

    #[test]
    fn the_peak_is_the_worst_moment() {
        let node: Reservations = [
            held(40, None, Some(NOW + 600)),
            held(50, Some(NOW + 300), None),
            held(20, Some(NOW + 1200), None),
        ]
        .into_iter()
        .collect();
        // 90 at NOW+300..600, 50 after, 70 from NOW+1200.
        assert_eq!(node.peak(Span::ALWAYS, NOW).participants, 90);
        assert_eq!(
            node.peak(Span::of(Some(NOW + 600), None), NOW).participants,
            70
        );
        assert_eq!(node.peak(Span::ALWAYS, NOW).rooms, 2);
    }

    #[test]
    fn connected_participants_beyond_the_reservations_count_too() {
        let node: Reservations = [
            held(20, None, Some(NOW + 600)),
            held(30, Some(NOW + 600), None),
        ]
        .into_iter()
        .collect();
        // Everyone connected is in the running conference: the booking is what counts later.
        let later = Span::of(Some(NOW + 600), None);
        assert_eq!(
            node.committed_over(Usage::conference(20), later, NOW),
            Usage::conference(30)
        );
        // Five joined the booking early: they stay on top of it.
        let early = Usage {
            participants: 25,
            rooms: 2,
        };
        assert_eq!(node.committed_over(early, later, NOW).participants, 35);
    }

    #[test]
    fn a_node_empties_when_its_last_reservation_ends() {
        let empty = Reservations::default();
        assert_eq!(empty.empties_at(NOW), NOW);
        let booked: Reservations = [
            held(10, None, Some(NOW + 1800)),
            held(10, Some(NOW + 1800), Some(NOW + HOUR)),
        ]
        .into_iter()
        .collect();
        assert_eq!(booked.empties_at(NOW), NOW + HOUR);
        // One that ended (its conference not yet deleted) keeps nothing up.
        assert_eq!(booked.empties_at(NOW + 2 * HOUR), NOW + 2 * HOUR);
        let ad_hoc: Reservations = [held(10, None, Some(NOW + HOUR)), held(2, None, None)]
            .into_iter()
            .collect();
        assert_eq!(ad_hoc.empties_at(NOW), UnixSeconds::MAX);
    }

    #[test]
    fn an_end_fits_a_node_that_empties_at_it() {
        let fit = |node: &[Reservation], until: Option<i64>| {
            let node: Reservations = node.iter().copied().collect();
            let new = held(5, Some(NOW + 600), until.map(|t| NOW + t));
            let EndFit { delay, slack } = node.end_fit(&new, NOW);
            (delay, slack)
        };
        let ends_at = |t: i64| held(10, None, Some(NOW + t));
        // Ending together: nothing put off, nothing left over.
        assert_eq!(fit(&[ends_at(HOUR)], Some(HOUR)), (0, 0));
        // Ending after the node would have emptied puts its emptying off.
        assert_eq!(fit(&[ends_at(1800)], Some(HOUR)), (1800, 0));
        // Ending before: the node outlives it.
        assert_eq!(fit(&[ends_at(2 * HOUR)], Some(HOUR)), (0, HOUR));
        // An empty node empties now: the whole conference from now puts that off.
        assert_eq!(fit(&[], Some(HOUR)), (HOUR, 0));
        // A conference with no end puts off for ever the emptying of a node that has an end…
        assert_eq!(
            fit(&[ends_at(HOUR)], None),
            (UnixSeconds::MAX - (NOW + HOUR), 0)
        );
        // …and nothing on one that already hosts such a conference.
        assert_eq!(fit(&[held(3, None, None)], None), (0, 0));
        // A booking on a node with an ad-hoc conference puts off nothing, but the node
        // outlives it by as long as can be: a node whose end is known fits better.
        let (delay, slack) = fit(&[held(3, None, None)], Some(HOUR));
        assert_eq!(delay, 0);
        assert!(slack > fit(&[ends_at(2 * HOUR)], Some(HOUR)).1);
        // Ordered best first: less delay wins over less slack.
        assert!(
            EndFit {
                delay: 0,
                slack: HOUR
            } < EndFit {
                delay: 60,
                slack: 0
            }
        );
    }

    #[test]
    fn a_node_keeps_room_for_its_largest_growth() {
        // 60 expected of 80, and a booking later expecting 10 of 40.
        let node: Reservations = [
            Reservation::conference(60, 80, Span::of(None, Some(NOW + HOUR))),
            Reservation::conference(10, 40, Span::of(Some(NOW + HOUR), None)),
        ]
        .into_iter()
        .collect();
        assert_eq!(node.total().participants, 70);
        let now_only = Span::of(None, Some(NOW + 600));
        assert_eq!(node.headroom(now_only, NOW), 20);
        assert_eq!(
            node.committed_over(Usage::default(), now_only, NOW)
                .participants,
            60 + 20
        );
        // Over both, the larger growth counts, once.
        assert_eq!(node.headroom(Span::ALWAYS, NOW), 30);
        assert_eq!(
            node.committed_over(Usage::default(), Span::ALWAYS, NOW)
                .participants,
            60 + 30
        );
        // After the first ends only the booking's growth is kept.
        let later = Span::of(Some(NOW + HOUR), None);
        assert_eq!(node.headroom(later, NOW), 30);
        assert_eq!(
            node.headroom(Span::of(None, Some(NOW + HOUR + 60)), NOW + HOUR),
            30
        );
    }

    #[test]
    fn what_a_conference_adds_is_its_expectation_and_uncovered_growth() {
        let node: Reservations = [Reservation::conference(60, 80, Span::ALWAYS)]
            .into_iter()
            .collect();
        // Growth of 5 is covered by the 20 kept already.
        let small = Reservation::conference(5, 10, Span::ALWAYS);
        assert_eq!(node.added_by(&small, NOW), Usage::conference(5));
        // Growth of 30 needs 10 more.
        let large = Reservation::conference(10, 40, Span::ALWAYS);
        assert_eq!(node.added_by(&large, NOW).participants, 10 + 10);
        // On an empty node a conference takes its expectation and its growth.
        assert_eq!(
            Reservations::default().added_by(&large, NOW).participants,
            40
        );
        assert_eq!(large.full(), Usage::conference(40));
        // An expectation above the maximum is held at the maximum.
        assert_eq!(Reservation::conference(50, 40, Span::ALWAYS).growth, 0);
    }

    #[test]
    fn an_open_reservation_is_always_occupied() {
        let node = Reservations::from(Usage::conference(10));
        assert_eq!(node.at(NOW), Usage::conference(10));
        assert_eq!(node.at(NOW + 100 * HOUR), Usage::conference(10));
        assert_eq!(
            Reservations::from(Usage::default()),
            Reservations::default()
        );
    }

    proptest! {
        /// The peak over a span is never below what is occupied at any moment of it.
        #[test]
        fn the_peak_bounds_every_moment(
            booked in prop::collection::vec((1u32..50, prop::option::of(0i64..100), prop::option::of(0i64..100)), 0..8),
            from in prop::option::of(0i64..100),
            until in prop::option::of(0i64..100),
            t in 0i64..100,
        ) {
            let node: Reservations = booked
                .iter()
                .map(|&(p, f, u)| held(p, f, u))
                .collect();
            let span = Span::of(from, until);
            let peak = node.peak(span, 0);
            if span.covers(t) {
                let now = node.at(t);
                prop_assert!(now.participants <= peak.participants);
                prop_assert!(now.rooms <= peak.rooms);
            }
            prop_assert!(peak.participants <= node.total().participants);
        }

        /// Adding a reservation raises what is committed over its span by no more than what
        /// `added_by` says, so a fit check on `added_by` never over-commits a node.
        #[test]
        fn added_by_covers_the_rise_in_commitment(
            booked in prop::collection::vec((1u32..50, 0u32..30, prop::option::of(0i64..100), prop::option::of(0i64..100)), 0..8),
            new in (1u32..50, 0u32..30, prop::option::of(0i64..100), prop::option::of(0i64..100)),
            reported in 0u32..200,
        ) {
            let as_reservation = |&(p, g, f, u): &(u32, u32, Option<i64>, Option<i64>)| {
                Reservation::conference(p, p + g, Span::of(f, u))
            };
            let mut node: Reservations = booked.iter().map(as_reservation).collect();
            let new = as_reservation(&new);
            let reported = Usage { participants: reported, rooms: 0 };
            let before = node.committed_over(reported, new.span, 0);
            let added = node.added_by(&new, 0);
            node.add(new);
            let after = node.committed_over(reported, new.span, 0);
            prop_assert!(after.participants <= before.participants + added.participants);
            prop_assert!(after.rooms <= before.rooms + added.rooms);
        }
    }
}
