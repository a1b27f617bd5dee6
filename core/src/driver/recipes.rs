//! The recipes as the clients offer them: the call list both clients expand
//! (`recipes_api`), the lock guard, owner tokens and in-process single flight. The rules
//! and types are the logic layer's ([`crate::logic::recipe`], re-exported here), the
//! multi-step behaviours its machines ([`crate::machine`]).

pub use crate::logic::recipe::*;

pub use crate::driver::entropy::owner_token;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique() {
        let a = owner_token();
        let b = owner_token();
        assert_ne!(a, b);
        assert!(crate::key::validate(a.as_bytes()).is_ok());
    }
}
