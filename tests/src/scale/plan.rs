//! The simulated day's conferences, drawn from a seeded generator: start times on an office
//! diurnal curve (a 9:00 peak, a smaller late-morning one and an afternoon one, quiet nights),
//! scheduled meetings booked ahead and starting on the hour or half hour, ad-hoc ones created
//! when they start; sizes mostly 2–6 people with a tail of large meetings; typical lengths.
//! Times are day seconds (0..86,400); the run compresses them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Seconds in a day.
pub const DAY: f64 = 86_400.0;

/// What day to draw.
#[derive(Clone, Debug, Serialize)]
pub struct DaySpec {
    /// Conferences over the whole day.
    pub conferences: usize,
    /// Share of them scheduled ahead with a startTime.
    pub scheduled_fraction: f64,
    /// Seed of the generator (the same seed gives the same day).
    pub seed: u64,
}

/// One conference of the day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planned {
    pub name: String,
    /// Booked ahead with a startTime (else ad hoc, created when it starts).
    pub scheduled: bool,
    /// When the application creates it (day seconds).
    pub create_at: f64,
    /// When it starts (day seconds).
    pub start_at: f64,
    /// When it ends and the application deletes it (day seconds).
    pub end_at: f64,
    /// Its maxParticipants (the invitation).
    pub max_participants: u32,
    /// How many actually join.
    pub attendees: u32,
    /// How many the application expects (expectedParticipants): everyone invited to a small
    /// meeting, the mean share (80 %) of a larger one, whose attendance varies from 60 % to
    /// all.
    pub expected: u32,
}

/// Conference starts per hour relative to the 9:00 peak (1.0), by hour of day.
pub fn intensity(hour: f64) -> f64 {
    let bump = |centre: f64, width: f64, height: f64| {
        height * (-((hour - centre) / width).powi(2) / 2.0).exp()
    };
    0.01 + bump(9.0, 0.6, 1.0)
        + bump(11.0, 1.0, 0.45)
        + bump(14.0, 1.1, 0.6)
        + bump(16.3, 1.0, 0.35)
}

/// Draws the day.
pub fn plan(spec: &DaySpec) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut day: Vec<Planned> = (0..spec.conferences)
        .map(|i| {
            let scheduled = rng.random_bool(spec.scheduled_fraction.clamp(0.0, 1.0));
            let mut start = start_hour(&mut rng) * 3600.0;
            let minutes = if scheduled {
                // Booked meetings start on the hour (most) or the half hour.
                let slot = if rng.random_bool(0.75) {
                    3600.0
                } else {
                    1800.0
                };
                start = (start / slot).round() * slot;
                *pick(
                    &mut rng,
                    &[(15.0, 15), (30.0, 45), (45.0, 10), (60.0, 25), (90.0, 5)],
                )
            } else {
                // Ad hoc: short calls, a long tail.
                (5.0 - 15.0 * (1.0 - rng.random::<f64>()).ln()).min(90.0)
            };
            let start = start.clamp(0.0, DAY - 1800.0);
            let end = (start + minutes * 60.0).min(DAY);
            let create = if scheduled {
                (start - rng.random_range(1800.0..10_800.0)).max(0.0)
            } else {
                start
            };
            let size = size(&mut rng);
            let attendees = if size <= 6 {
                size
            } else {
                ((f64::from(size) * rng.random_range(0.6..1.0)).round() as u32).max(2)
            };
            Planned {
                name: format!("{}-{i:05}", if scheduled { "meet" } else { "call" }),
                scheduled,
                create_at: create,
                start_at: start,
                end_at: end,
                max_participants: size,
                attendees,
                expected: expected(size),
            }
        })
        .collect();
    day.sort_by(|a, b| a.create_at.total_cmp(&b.create_at));
    day
}

/// What an application that knows the show rate of its meetings expects of one of `size`.
fn expected(size: u32) -> u32 {
    if size <= 6 {
        size
    } else {
        (f64::from(size) * 0.8).round() as u32
    }
}

/// An hour of the day drawn from [`intensity`] (rejection sampling; the peak is ~1.0).
fn start_hour(rng: &mut StdRng) -> f64 {
    loop {
        let hour = rng.random_range(0.0..24.0);
        if rng.random_range(0.0..1.1) < intensity(hour) {
            return hour;
        }
    }
}

/// Meeting sizes: most 2–6 people, then 7–10, a tail up to 100.
fn size(rng: &mut StdRng) -> u32 {
    let band = *pick(
        rng,
        &[
            ((2, 2), 28),
            ((3, 3), 20),
            ((4, 4), 15),
            ((5, 5), 10),
            ((6, 6), 7),
            ((7, 10), 11),
            ((11, 25), 6),
            ((26, 50), 2),
            ((51, 100), 1),
        ],
    );
    rng.random_range(band.0..=band.1)
}

fn pick<'a, T>(rng: &mut StdRng, weighted: &'a [(T, u32)]) -> &'a T {
    let total: u32 = weighted.iter().map(|w| w.1).sum();
    let mut roll = rng.random_range(0..total);
    for (value, weight) in weighted {
        if roll < *weight {
            return value;
        }
        roll -= weight;
    }
    &weighted[weighted.len() - 1].0
}

/// Participants in conferences at day second `t` (attendees of those started and not ended).
pub fn participants_at(day: &[Planned], t: f64) -> u32 {
    day.iter()
        .filter(|c| c.start_at <= t && t < c.end_at)
        .map(|c| c.attendees)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Vec<Planned> {
        plan(&DaySpec {
            conferences: 4000,
            scheduled_fraction: 0.6,
            seed: 7,
        })
    }

    #[test]
    fn same_seed_same_day() {
        assert_eq!(day(), day());
    }

    #[test]
    fn shape_of_the_day() {
        let d = day();
        assert_eq!(d.len(), 4000);
        let scheduled = d.iter().filter(|c| c.scheduled).count() as f64 / 4000.0;
        assert!((0.55..0.65).contains(&scheduled), "{scheduled}");
        for c in &d {
            assert!(c.create_at <= c.start_at && c.start_at < c.end_at && c.end_at <= DAY);
            assert!((2..=100).contains(&c.max_participants));
            assert!(c.attendees >= 2 && c.attendees <= c.max_participants);
            assert!(c.expected >= 2 && c.expected <= c.max_participants);
            if c.scheduled {
                assert_eq!(c.start_at % 1800.0, 0.0, "{c:?}");
            } else {
                assert_eq!(c.create_at, c.start_at);
            }
        }
        let small = d.iter().filter(|c| c.max_participants <= 6).count();
        assert!(small > 3000, "{small}");
        // Busier at 9:00 than at 3:00, and the 9:00 peak is the busiest time of day.
        let at = |h: f64| participants_at(&d, h * 3600.0);
        assert!(
            at(9.25) > 10 * at(3.0).max(1),
            "{} vs {}",
            at(9.25),
            at(3.0)
        );
        let busiest = (0..96).map(|q| at(f64::from(q) / 4.0)).max().unwrap_or(0);
        assert!(at(9.25) * 10 >= busiest * 8, "{} vs {busiest}", at(9.25));
    }

    #[test]
    fn sizes_have_a_tail() {
        let d = day();
        assert!(d.iter().any(|c| c.max_participants > 25));
        let mean = d.iter().map(|c| f64::from(c.max_participants)).sum::<f64>() / 4000.0;
        assert!((4.0..8.0).contains(&mean), "{mean}");
    }
}
