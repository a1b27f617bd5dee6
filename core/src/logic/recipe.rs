//! The rules of the helpers every memcached user writes by hand and gets subtly wrong:
//! compare-and-swap updates that retry, locks built on `add`, and miss-storm protection.
//! This module holds their rules (no I/O); both clients carry them out (the call lists are in
//! `recipes_api`, expanded by [`crate::Client`] and [`crate::blocking::Client`]).
//!
//! # CAS updates
//!
//! [`crate::Client::cas_update`] reads the key with `gets`, asks the caller's function for the
//! new value ([`Update`]), and writes it with `cas`. When another writer got there first
//! (`EXISTS`, or the key vanished: `NOT_FOUND`) it waits a jittered, exponentially growing
//! pause and starts over, up to [`CasOptions::max_attempts`] and [`CasOptions::deadline`];
//! then it fails with [`crate::Error::CasRetriesExhausted`], which carries the attempts made.
//! A missing key is created with `add`, never `set`: two creators cannot clobber each other;
//! the loser of the `add` retries as an update of the winner's value.
//!
//! # Locks
//!
//! [`crate::Client::lock`] stores a unique owner token under the lock's name with `add`, on the
//! name's ring owner only. If that server is down, acquiring fails at once with
//! [`crate::Error::ServerDown`]: a lock is never taken on another server (two workers would
//! hold it on two servers). Release is compare-and-delete on the CAS unique the acquisition
//! got (meta `md <name> C<cas>`; on text-only servers `cas` with an expiry in the past), so
//! only the owner releases, and only a lock that was acquired. Waiting uses jittered backoff
//! bounded by the caller's `wait`. An optional fencing token (a per-name counter incremented
//! on each acquisition) lets a protected resource refuse a stale holder.

use crate::error::Error;
use std::time::Duration;

/// What a [`crate::Client::cas_update`] function wants done with the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Store this value (created with `add` if the key is missing, else `cas`).
    Set(Vec<u8>),
    /// Leave the key as it is; the call returns [`CasOutcome::Unchanged`].
    Keep,
    /// Delete the key, if it still holds the value that was read.
    Delete,
    /// Store a typed value (replicated clients record the type in the envelope; plain
    /// clients store the bytes).
    Typed(crate::envelope::ValueType, crate::envelope::Format, Vec<u8>),
    /// Store these bytes with these client flags (how a binding's value convention types a
    /// plain value); replicated clients store the bytes.
    Plain(Vec<u8>, u32),
}

/// How a CAS update retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasOptions {
    /// Give up after this many attempts (reads). Default 32.
    pub max_attempts: u32,
    /// Give up when this much time has passed. Default 2 s.
    pub deadline: Duration,
    /// First pause after a conflict; it doubles per conflict, with full jitter. Default 1 ms.
    pub base_backoff: Duration,
    /// Longest pause. Default 50 ms.
    pub max_backoff: Duration,
    /// TTL for the stored value.
    pub ttl: u32,
    /// Client flags for the stored value.
    pub flags: u32,
}

impl Default for CasOptions {
    fn default() -> Self {
        CasOptions {
            max_attempts: 32,
            deadline: Duration::from_secs(2),
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(50),
            ttl: 0,
            flags: 0,
        }
    }
}

/// What a CAS update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The new value was stored.
    Stored {
        /// Reads it took (1 = no conflict).
        attempts: u32,
    },
    /// The function said [`Update::Keep`].
    Unchanged {
        /// Reads it took.
        attempts: u32,
    },
    /// The key was deleted (or was already missing).
    Deleted {
        /// Reads it took.
        attempts: u32,
    },
}

impl CasOutcome {
    /// Reads the update took.
    pub fn attempts(&self) -> u32 {
        match self {
            CasOutcome::Stored { attempts }
            | CasOutcome::Unchanged { attempts }
            | CasOutcome::Deleted { attempts } => *attempts,
        }
    }
}

/// The pause before retry number `attempt` (1-based): full jitter over an exponentially
/// growing window, `random(0 ..= min(max, base * 2^(attempt-1)))`. `unit` is a random number
/// in `[0, 1)` supplied by the caller, so this stays deterministic under test.
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let window = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    window.mul_f64(unit.clamp(0.0, 1.0))
}

/// A TTL with ±`fraction` random jitter (`unit` in `[0, 1)`), so keys set together do not
/// expire together. 0 (never expires) and absolute times (over 30 days) stay as they are; the
/// result is at least 1.
pub fn jitter_ttl(ttl: u32, fraction: f64, unit: f64) -> u32 {
    // Over 30 days memcached reads an expiry as an absolute Unix time (e.g. [`EXPIRED`]):
    // jittered, it could fall back under 30 days and become a long relative TTL.
    if ttl == 0 || ttl > 30 * 24 * 3600 || fraction <= 0.0 {
        return ttl;
    }
    let f = fraction.min(0.9) * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    ((f64::from(ttl) * (1.0 + f)).round() as u32).max(1)
}

/// The owner token for a random per-process `seed` and a per-process counter `n`; hosts that
/// bring their own randomness (WASM) call this instead of `recipes::owner_token`.
pub fn owner_token_from(seed: u64, n: u64) -> String {
    format!("{seed:016x}.{n:x}")
}

/// The key of a lock's fencing counter.
pub fn fence_key(name: &[u8]) -> Vec<u8> {
    let mut k = name.to_vec();
    k.extend_from_slice(b":fence");
    k
}

/// How long to wait for a lock, and what to hold it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// Seconds the lock lives if its holder never releases it (crashes). At least 1.
    pub ttl: u32,
    /// How long to keep trying to acquire; zero tries once.
    pub wait: Duration,
    /// Also take a fencing token (one extra round trip).
    pub fencing: bool,
    /// Pauses between attempts: jittered, doubling from this...
    pub base_backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
}

impl LockOptions {
    /// A lock that lives `ttl` seconds, waiting up to `wait` to get it.
    pub fn new(ttl: u32, wait: Duration) -> Self {
        LockOptions {
            ttl: ttl.max(1),
            wait,
            fencing: false,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(100),
        }
    }

    /// Also take a fencing token.
    pub fn fencing(mut self) -> Self {
        self.fencing = true;
        self
    }
}

/// Check a lock's name; it is a key.
pub(crate) fn check_ttl(ttl: u32) -> Result<(), Error> {
    if ttl == 0 {
        return Err(Error::Config(
            "a lock needs a TTL of at least one second, or a crashed holder would keep it forever"
                .into(),
        ));
    }
    Ok(())
}

/// The expiry memcached reads as an absolute Unix time in the past (just over 30 days): a
/// `cas` with it is a compare-and-delete on servers without the meta protocol.
pub const EXPIRED: u32 = 30 * 24 * 3600 + 1;

/// Has a quorum lock that took `elapsed` to acquire with a `ttl`-second lifetime any validity
/// left? Like Redlock, a clock-drift allowance (1% of the TTL plus 2 ms) is subtracted, so a
/// lock is only reported acquired while every server still has it.
pub fn quorum_validity(ttl: u32, elapsed: Duration) -> Option<Duration> {
    let ttl = Duration::from_secs(u64::from(ttl));
    let drift = ttl / 100 + Duration::from_millis(2);
    ttl.checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|v| !v.is_zero())
}

/// The error for a `gets` reply without a CAS unique (a broken server or proxy).
pub(crate) fn no_cas(key: &[u8]) -> Error {
    Error::Protocol {
        server: String::new(),
        detail: format!(
            "gets of {} returned no CAS unique",
            String::from_utf8_lossy(key)
        ),
    }
}

/// What a `get_or_set` loader produces: the bytes to store and their client flags (the type
/// bits of the binding's value convention). A `Vec<u8>` converts with flags 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// The value to store.
    pub data: Vec<u8>,
    /// Its client flags (plain mode).
    pub flags: u32,
    /// Its type and serializer, for the envelope of a replicated store (`None`: bytes).
    pub typed: Option<(crate::envelope::ValueType, crate::envelope::Format)>,
}

impl From<Vec<u8>> for Fresh {
    fn from(data: Vec<u8>) -> Self {
        Fresh {
            data,
            flags: 0,
            typed: None,
        }
    }
}

/// How `get_or_set` protects a miss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillOptions {
    /// How long a process that lost the fill lock waits for the winner's value before it
    /// loads the value itself. Default 2 s.
    pub wait: Duration,
    /// First pause between its polls. Default 5 ms.
    pub poll: Duration,
    /// Lifetime of the fill lock (a crashed filler blocks others at most this long). Default 10 s.
    pub fill_lock_ttl: u32,
    /// ± fraction of random jitter on the stored TTL. Default 0.1.
    pub ttl_jitter: f64,
}

impl Default for FillOptions {
    fn default() -> Self {
        FillOptions {
            wait: Duration::from_secs(2),
            poll: Duration::from_millis(5),
            fill_lock_ttl: 10,
            ttl_jitter: 0.1,
        }
    }
}

/// The key of a fill lock.
pub fn fill_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.extend_from_slice(b":fill");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jitters_and_caps() {
        let (b, m) = (Duration::from_millis(1), Duration::from_millis(50));
        assert_eq!(backoff(1, b, m, 1.0), Duration::from_millis(1));
        assert_eq!(backoff(3, b, m, 1.0), Duration::from_millis(4));
        assert_eq!(backoff(30, b, m, 1.0), m);
        assert_eq!(backoff(5, b, m, 0.0), Duration::ZERO);
        assert_eq!(backoff(5, b, m, 0.5), Duration::from_millis(8));
    }

    #[test]
    fn ttl_jitter_stays_in_range() {
        assert_eq!(jitter_ttl(0, 0.1, 0.7), 0);
        assert_eq!(jitter_ttl(100, 0.1, 0.0), 90);
        assert_eq!(jitter_ttl(100, 0.1, 1.0), 110);
        assert_eq!(jitter_ttl(100, 0.0, 0.3), 100);
        assert_eq!(jitter_ttl(1, 0.5, 0.0), 1);
        // Absolute expiry times are left alone.
        assert_eq!(jitter_ttl(EXPIRED, 0.1, 0.0), EXPIRED);
        assert_eq!(jitter_ttl(1_900_000_000, 0.1, 1.0), 1_900_000_000);
    }
}
