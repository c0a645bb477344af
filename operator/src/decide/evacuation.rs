//! Evacuation pacing: conferences leave draining nodes at most `rate` per minute per pool,
//! with a burst of up to `rate`, so that a drain takes minutes without a thundering herd of
//! reconnecting clients.

use super::UnixSeconds;

/// A token bucket, refilled at `rate` per minute up to `rate` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct EvacuationBudget {
    tokens: f64,
    updated: UnixSeconds,
}

impl EvacuationBudget {
    /// A full bucket at `now`.
    pub fn new(rate_per_minute: u32, now: UnixSeconds) -> Self {
        Self {
            tokens: f64::from(rate_per_minute),
            updated: now,
        }
    }

    /// Takes one move if the budget allows at `now`; otherwise returns the seconds to wait.
    /// A rate of 0 never allows a move (evacuation disabled) and returns None as the wait.
    pub fn take(&mut self, rate_per_minute: u32, now: UnixSeconds) -> Result<(), Option<i64>> {
        if rate_per_minute == 0 {
            return Err(None);
        }
        let rate = f64::from(rate_per_minute);
        let elapsed = (now - self.updated).max(0) as f64;
        self.tokens = (self.tokens + elapsed * rate / 60.0).min(rate);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // Round away float noise (0.05 tokens at 3/min is 1 s, not 1.0000001 s).
            Err(Some(
                ((1.0 - self.tokens) * 60.0 / rate - 1e-9).ceil().max(1.0) as i64,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_paces() {
        let mut b = EvacuationBudget::new(3, 0);
        assert_eq!(b.take(3, 0), Ok(()));
        assert_eq!(b.take(3, 0), Ok(()));
        assert_eq!(b.take(3, 0), Ok(()));
        assert_eq!(b.take(3, 0), Err(Some(20)));
        assert_eq!(b.take(3, 19), Err(Some(1)));
        assert_eq!(b.take(3, 20), Ok(()));
    }

    #[test]
    fn rate_zero_disables_evacuation() {
        let mut b = EvacuationBudget::new(0, 0);
        assert_eq!(b.take(0, 1000), Err(None));
    }

    #[test]
    fn never_banks_more_than_one_minute() {
        let mut b = EvacuationBudget::new(2, 0);
        assert!(b.take(2, 0).is_ok() && b.take(2, 0).is_ok());
        // An hour idle refills to the burst, not to 120.
        assert!(b.take(2, 3600).is_ok() && b.take(2, 3600).is_ok());
        assert!(b.take(2, 3600).is_err());
    }
}
