//! The helpers every memcached user writes by hand and gets subtly wrong, written once:
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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
/// expire together. 0 (never expires) stays 0; the result is at least 1.
pub fn jitter_ttl(ttl: u32, fraction: f64, unit: f64) -> u32 {
    if ttl == 0 || fraction <= 0.0 {
        return ttl;
    }
    let f = fraction.min(0.9) * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    ((f64::from(ttl) * (1.0 + f)).round() as u32).max(1)
}

/// A lock owner token: unique per process and call (a random process part and a counter).
pub fn owner_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let p = *PROCESS.get_or_init(crate::envelope::new_writer_id);
    owner_token_from(p, NEXT.fetch_add(1, Relaxed))
}

/// The owner token for a random per-process `seed` and a per-process counter `n`; hosts that
/// bring their own randomness (WASM) call this instead of [`owner_token`].
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
    }

    #[test]
    fn tokens_are_unique() {
        let a = owner_token();
        let b = owner_token();
        assert_ne!(a, b);
        assert!(crate::key::validate(a.as_bytes()).is_ok());
    }
}

/// A held lock. Release it with `release()`; the blocking guard also releases when dropped,
/// the async one spawns its release on the current tokio runtime when dropped. A lock that
/// is never released expires after its TTL.
pub struct Lock<C: ReleaseOnDrop> {
    pub(crate) client: C,
    pub(crate) name: Vec<u8>,
    pub(crate) token: String,
    /// `(server, CAS unique of our token there)` for every server we hold it on.
    pub(crate) holds: Vec<(usize, u64)>,
    /// How many holds keep the lock: 1 for a single-server lock, a majority for a quorum lock.
    pub(crate) quorum: usize,
    pub(crate) fence: Option<u64>,
    pub(crate) held: bool,
    /// The fork generation it was taken in ([`crate::fork`]): a fork child inherits the guard
    /// but not the lock, so it never releases or extends it (its parent still holds it).
    pub(crate) generation: u64,
}

/// How a client releases a lock whose guard is dropped unreleased (blocking: at once; async:
/// a task spawned on the current tokio runtime, if there is one).
#[doc(hidden)]
pub trait ReleaseOnDrop: Clone {
    /// Release `name` on server `server` if it still has unique `cas`; errors are ignored (the
    /// lock expires after its TTL anyway).
    fn release_on_drop(&self, server: usize, name: Vec<u8>, cas: u64);
}

impl<C: ReleaseOnDrop> Drop for Lock<C> {
    fn drop(&mut self) {
        if self.owned() {
            self.held = false;
            for &(server, cas) in &self.holds {
                self.client.release_on_drop(server, self.name.clone(), cas);
            }
        }
    }
}

impl<C: ReleaseOnDrop> Lock<C> {
    /// The guard of a lock a client's machine just acquired, in this process.
    pub(crate) fn acquired(
        client: C,
        name: &[u8],
        token: String,
        got: crate::machine::lock::Acquired,
    ) -> Self {
        Lock {
            client,
            name: name.to_vec(),
            token,
            holds: got.holds,
            quorum: got.quorum,
            fence: got.fence,
            held: true,
            generation: crate::fork::generation(),
        }
    }

    /// Held, and by this process (not a guard inherited through a fork).
    pub(crate) fn owned(&self) -> bool {
        self.held && self.generation == crate::fork::generation()
    }

    /// The lock's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// This holder's unique owner token (what is stored under the name).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The fencing token, if asked for: larger than every earlier holder's.
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// The servers (indices in the configuration) this lock is held on.
    pub fn servers(&self) -> Vec<usize> {
        self.holds.iter().map(|&(s, _)| s).collect()
    }
}

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

impl<C: ReleaseOnDrop> std::fmt::Debug for Lock<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("token", &self.token)
            .field("fence", &self.fence)
            .field("held", &self.held)
            .finish()
    }
}

/// The CAS and lock calls, expanded by both clients. Each is a machine of
/// [`crate::machine`] run by the client's `drive` loop: the behaviour is written once.
macro_rules! recipes_api {
    ($client:ty; $($asyncness:ident)?; $($await:tt)*) => {
impl $client {
    /// Read-modify-write `key` without losing concurrent updates: `gets`, `f(current)`, then
    /// `cas` (or `add` when the key is missing), retrying conflicts with jittered backoff.
    /// See [`crate::recipes`]. `f` may be called several times; it must not have side effects
    /// beyond computing the new value.
    pub $($asyncness)? fn cas_update(
        &self,
        key: impl AsRef<[u8]>,
        opts: crate::recipes::CasOptions,
        mut f: impl FnMut(Option<&crate::Value>) -> crate::recipes::Update,
    ) -> Result<crate::recipes::CasOutcome, Error> {
        let m = crate::machine::cas::CasUpdate::new(key.as_ref(), opts, fastrand::u64(..));
        self.drive(m, |v| Ok(f(v)), Self::no_load())$($await)*
    }

    /// `incr` (or with `incr` false, `decr`) `key` by `delta`; a missing key is created at
    /// `initial` with `ttl` (returned as is, like libmemcached's increment-with-initial), or,
    /// without an initial, `Ok(None)`. The creation is an `add`: a concurrent creator wins
    /// and this call counts on top of its value.
    pub $($asyncness)? fn incr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        incr: bool,
        delta: u64,
        initial: Option<u64>,
        ttl: u32,
    ) -> Result<Option<u64>, Error> {
        let m = crate::machine::counter::IncrInitial::new(key.as_ref(), incr, delta, initial, ttl);
        self.drive_plain(m)$($await)*
    }

    /// Acquire the lock `name`: an `add` of a unique owner token on the name's ring owner,
    /// retried with jittered backoff for up to `opts.wait`. Fails with
    /// [`Error::LockNotAcquired`] when someone else held it the whole time, and with the
    /// server's error (e.g. [`Error::ServerDown`]) if its server cannot be reached: a lock is
    /// never taken on another server.
    pub $($asyncness)? fn lock(
        &self,
        name: impl AsRef<[u8]>,
        opts: crate::recipes::LockOptions,
    ) -> Result<crate::recipes::Lock<$client>, Error> {
        let (name, token) = (name.as_ref(), crate::recipes::owner_token());
        let cx = crate::driver::cx(self.cluster());
        let m = crate::machine::lock::Acquire::single(&cx, name, &token, opts, fastrand::u64(..))?;
        let got = self.drive_plain(m)$($await)*?;
        Ok(crate::recipes::Lock::acquired(self.clone(), name, token, got))
    }

    /// Acquire the lock `name` on a majority of its `replicas` servers (the first `replicas`
    /// of its ring preference list), for when one server's loss must not drop the lock: the
    /// `add` goes to all of them at once; the lock is acquired when a majority stored it and
    /// time is left of its TTL (minus a drift allowance, [`crate::recipes::quorum_validity`]);
    /// otherwise the partial holds are released and it retries until `opts.wait`. Release and
    /// `extend` act on every server held and succeed with a majority.
    pub $($asyncness)? fn lock_quorum(
        &self,
        name: impl AsRef<[u8]>,
        replicas: usize,
        opts: crate::recipes::LockOptions,
    ) -> Result<crate::recipes::Lock<$client>, Error> {
        let (name, token) = (name.as_ref(), crate::recipes::owner_token());
        let cx = crate::driver::cx(self.cluster());
        let m = crate::machine::lock::Acquire::quorum(&cx, name, &token, replicas, opts, fastrand::u64(..))?;
        let got = self.drive_plain(m)$($await)*?;
        Ok(crate::recipes::Lock::acquired(self.clone(), name, token, got))
    }
}

impl crate::recipes::Lock<$client> {
    /// Release the lock if this holder still owns it: compare-and-delete on the unique the
    /// acquisition (or the last `extend`) wrote. `Ok(true)` released; `Ok(false)` the lock had
    /// expired and may belong to someone else now (it was left alone); calling it again
    /// after a release returns `Ok(false)` without I/O.
    pub $($asyncness)? fn release(&mut self) -> Result<bool, Error> {
        if !self.owned() {
            return Ok(false);
        }
        self.held = false;
        let m = crate::machine::lock::Release::new(&self.name, &self.holds, self.quorum);
        self.client.drive_plain(m)$($await)*
    }

    /// Give the lock a new TTL on every server it is held on, if this holder still owns it
    /// there; `Ok(false)` (and the lock is no longer held) when fewer than its quorum remain.
    pub $($asyncness)? fn extend(&mut self, ttl: u32) -> Result<bool, Error> {
        crate::recipes::check_ttl(ttl)?;
        if !self.owned() {
            return Ok(false);
        }
        let m = crate::machine::lock::Extend::new(&self.name, &self.token, &self.holds, self.quorum, ttl);
        match self.client.drive_plain(m)$($await)* {
            Ok(x) => {
                self.holds = x.holds;
                self.held = x.held;
                Ok(x.held)
            }
            Err(e) => {
                self.held = false;
                Err(e)
            }
        }
    }

    /// True until `release` (or a failed `extend`) says the lock is no longer ours. It does not
    /// ask the server: a lock past its TTL may be gone. False in a fork child: the lock
    /// belongs to the process that took it.
    pub fn is_held(&self) -> bool {
        self.owned()
    }
}
    };
}

pub(crate) use recipes_api;

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

/// In-flight `get_or_set` loads of one client, by key; `Cell` is the driver's once-cell.
pub(crate) type Flights<Cell> =
    std::sync::Mutex<std::collections::HashMap<Vec<u8>, std::sync::Arc<Cell>>>;

/// The in-flight load of `key`, joining the one under way or starting a new one.
pub(crate) fn join_flight<Cell: Default>(
    flights: &Flights<Cell>,
    key: &[u8],
) -> std::sync::Arc<Cell> {
    let mut f = flights.lock().unwrap_or_else(|p| p.into_inner());
    f.entry(key.to_vec()).or_default().clone()
}

/// The flight of a fill: plain and replicated fills of one key are separate flights.
pub(crate) fn flight_key(mode: &crate::machine::fill::Mode, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(match mode {
        crate::machine::fill::Mode::Plain => b'p',
        crate::machine::fill::Mode::Replicated(_) => b'r',
    });
    k.extend_from_slice(key);
    k
}

/// Forget a finished load (unless a newer one already replaced it).
pub(crate) fn land_flight<Cell>(flights: &Flights<Cell>, key: &[u8], cell: &std::sync::Arc<Cell>) {
    let mut f = flights.lock().unwrap_or_else(|p| p.into_inner());
    if f.get(key).is_some_and(|c| std::sync::Arc::ptr_eq(c, cell)) {
        f.remove(key);
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
