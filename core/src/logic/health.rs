//! Per-server health: consecutive failures mark a server down for a retry interval.
//!
//! Pure logic: the caller passes the time in (monotonic milliseconds: `driver::mono_ms`, or
//! `performance.now()` in WASM), so the rules are tested without sleeping and every driver
//! shares them. State is atomic so the hot path (a success on a
//! healthy server) is one relaxed load.
//!
//! Rules:
//! - A failure that says the server is unreachable (connection refused) marks it down at once;
//!   other failures (timeouts, broken connections, protocol garbage) mark it down after
//!   `failure_limit` in a row. Request-level answers (`NOT_STORED`, `CLIENT_ERROR`...) are
//!   successes here: the server answered.
//! - While down, calls fail fast with [`crate::Error::ServerDown`] and send nothing.
//! - When the retry interval has passed, exactly one caller is let through as a probe
//!   (half-open); its success brings the server back, its failure starts a new interval.
//! - Keys are never moved to another server because theirs is down (see DESIGN lesson 4).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What happened to a call, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (whatever it answered).
    Answered,
    /// A soft failure: timeout, broken connection, garbage.
    Failed,
    /// A hard failure: the connection was refused; the server is down now.
    Unreachable,
}

/// The health of one server.
#[derive(Debug, Default)]
pub struct Health {
    failures: AtomicU32,
    /// Millisecond timestamp until which the server is down; 0 when up.
    down_until: AtomicU64,
    /// Set while one probe call is in flight after the retry interval.
    probing: AtomicBool,
    down_events: AtomicU64,
}

/// Whether a call may go to the server now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead as the probe of a server that was down.
    Probe,
    /// The server is down; retry after this long.
    Down(Duration),
}

impl Health {
    /// May a call go to this server at `now_ms`?
    pub fn admit(&self, now_ms: u64) -> Admission {
        let until = self.down_until.load(Relaxed);
        if until == 0 {
            return Admission::Allowed;
        }
        if now_ms < until {
            return Admission::Down(Duration::from_millis(until - now_ms));
        }
        if self
            .probing
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_ok()
        {
            Admission::Probe
        } else {
            // Another caller is probing; the others keep failing fast until it reports.
            Admission::Down(Duration::ZERO)
        }
    }

    /// Record a call's outcome at `now_ms`. Returns true when this outcome marked the server down.
    pub fn record(&self, outcome: Outcome, now_ms: u64, limit: u32, retry: Duration) -> bool {
        match outcome {
            Outcome::Answered => {
                if self.failures.load(Relaxed) != 0 || self.down_until.load(Relaxed) != 0 {
                    self.failures.store(0, Relaxed);
                    self.down_until.store(0, Relaxed);
                    self.probing.store(false, Relaxed);
                }
                false
            }
            Outcome::Failed | Outcome::Unreachable => {
                let n = self.failures.fetch_add(1, Relaxed).saturating_add(1);
                let was_down = self.down_until.load(Relaxed) != 0;
                if outcome == Outcome::Unreachable || n >= limit.max(1) || was_down {
                    let until = now_ms.saturating_add(retry.as_millis() as u64).max(1);
                    self.down_until.store(until, Relaxed);
                    self.probing.store(false, Relaxed);
                    if !was_down {
                        self.down_events.fetch_add(1, Relaxed);
                    }
                    !was_down
                } else {
                    false
                }
            }
        }
    }

    /// Is the server currently marked down?
    pub fn is_down(&self, now_ms: u64) -> bool {
        let until = self.down_until.load(Relaxed);
        until != 0 && now_ms < until
    }

    /// Consecutive failures so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }

    /// How many times the server was marked down.
    pub fn down_events(&self) -> u64 {
        self.down_events.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const R: Duration = Duration::from_millis(1000);

    #[test]
    fn soft_failures_need_the_limit() {
        let h = Health::default();
        assert!(!h.record(Outcome::Failed, 10, 2, R));
        assert_eq!(h.admit(11), Admission::Allowed);
        assert!(h.record(Outcome::Failed, 20, 2, R));
        assert_eq!(h.admit(21), Admission::Down(Duration::from_millis(999)));
        assert_eq!(h.down_events(), 1);
    }

    #[test]
    fn refused_marks_down_at_once_and_one_probe_goes_through() {
        let h = Health::default();
        assert!(h.record(Outcome::Unreachable, 0, 5, R));
        assert!(matches!(h.admit(500), Admission::Down(_)));
        assert_eq!(h.admit(1000), Admission::Probe);
        assert_eq!(h.admit(1001), Admission::Down(Duration::ZERO));
        // The probe fails: down again for a full interval, without a new down event.
        assert!(!h.record(Outcome::Failed, 1002, 5, R));
        assert!(matches!(h.admit(1500), Admission::Down(_)));
        assert_eq!(h.admit(2002), Admission::Probe);
        h.record(Outcome::Answered, 2003, 5, R);
        assert_eq!(h.admit(2004), Admission::Allowed);
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(h.down_events(), 1);
    }

    #[test]
    fn success_resets_the_count() {
        let h = Health::default();
        h.record(Outcome::Failed, 0, 2, R);
        h.record(Outcome::Answered, 1, 2, R);
        assert!(!h.record(Outcome::Failed, 2, 2, R));
        assert_eq!(h.admit(3), Admission::Allowed);
    }
}
