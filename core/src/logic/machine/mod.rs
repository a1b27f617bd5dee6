//! Multi-step behaviours as sans-I/O step machines, written once and run by every driver.
//!
//! A CAS update, a lock, a fill after a miss and a replicated read or write each take several
//! round trips, pauses and, sometimes, a question to the caller. Here each is a state machine
//! that only *decides*: it says what to send ([`Step::Send`]), how long to pause
//! ([`Step::Wait`]), when to ask the caller's function ([`Step::Decide`]) or loader
//! ([`Step::Load`]), and when it is done ([`Step::Done`]). It never reads a clock, opens a
//! socket or draws randomness: the driver passes the time in ([`Now`], in every [`Cx`]) and the
//! machine's randomness comes from a seed it was built with ([`Rng`]).
//!
//! A driver runs any machine with one small loop (the tokio client, the blocking client and the
//! JavaScript client over the WASM export all do exactly this):
//!
//! ```text
//! let mut input = Input::Start;
//! loop {
//!     match machine.step(&Cx { cluster, now: clock() }, input) {
//!         Step::Send(requests) => input = Input::Answers(run_all_at_once(requests)),
//!         Step::Wait(d)        => { sleep(d); input = Input::Woke }
//!         Step::Decide(view)   => input = Input::Decided(callers_fn(view)),
//!         Step::Load           => input = Input::Loaded(callers_loader()),
//!         Step::Done(result)   => return result,
//!     }
//! }
//! ```
//!
//! Plain calls are machines too ([`plain`]: one request to a key's owner, or one per server
//! for many keys), for a driver that runs every call through the same loop (the JavaScript
//! client does: its binding never asks whether a call is plain or replicated).
//!
//! The machines are driven in unit tests with scripted answers (no server, no clock) and in
//! the integration and conformance tests against real memcached.

pub mod cas;
pub mod counter;
pub mod fill;
pub mod lock;
pub mod mode;
pub mod plain;
pub mod replicated;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::ops::{self, Ctx, Op, Value};
use crate::protocol::text::StoreMode;
use crate::protocol::{Expect, Reply};
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// The time a driver passes to a machine: monotonic time (for deadlines, pauses and the
/// health of servers) and the wall clock (for replication's timestamps), both read by the
/// driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since an origin the driver chose ([`crate::driver::mono`]
    /// for the native drivers, `performance.now()` in JavaScript).
    pub mono: Duration,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

impl Now {
    /// Monotonic milliseconds, as [`Cluster`]'s health calls take them.
    pub fn mono_ms(&self) -> u64 {
        self.mono.as_millis() as u64
    }
}

/// What a machine sees of the world at each step: the servers (ring, key rules, health,
/// counters) and the time.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    /// The servers.
    pub cluster: &'a Cluster,
    /// The time, read by the driver just before this step.
    pub now: Now,
}

/// A small deterministic generator (SplitMix64) seeded by the driver: jitter and backoff are
/// random, but a machine's choices are a function of its seed and inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (the driver draws it from its own randomness).
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One store of a [`Call::StoreItems`] batch, owning its bytes.
#[derive(Debug, Clone)]
pub struct Item {
    /// The key.
    pub key: Bytes,
    /// The data.
    pub data: Bytes,
    /// Which store (`Cas(unique)` for a compare-and-swap).
    pub mode: StoreMode,
    /// Client flags.
    pub flags: u32,
    /// Expiration.
    pub ttl: u32,
}

/// One exchange a machine asks for: an [`Op`] that owns its keys and data, so it can wait in a
/// connection's queue and be finished without borrowing from the machine.
#[derive(Debug, Clone)]
pub enum Call {
    /// `get`/`gets` of one key.
    Get {
        /// The key.
        key: Bytes,
        /// With the CAS unique.
        cas: bool,
    },
    /// A multi-get on one server (with CAS uniques and remaining TTLs when asked).
    GetMulti {
        /// The keys.
        keys: Vec<Bytes>,
        /// With CAS uniques.
        cas: bool,
        /// With remaining TTLs (meta).
        ttl: bool,
    },
    /// One store.
    Store(Item),
    /// A store that returns the item's new CAS unique.
    StoreReturningCas(Item),
    /// Pipelined stores on one server.
    StoreItems(Vec<Item>),
    /// Delete if the CAS unique still matches.
    CasDelete {
        /// The key.
        key: Bytes,
        /// The unique.
        cas: u64,
    },
    /// `delete`.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Pipelined deletes on one server.
    DeleteMulti {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// `touch`: a new TTL.
    Touch {
        /// The key.
        key: Bytes,
        /// The new TTL.
        ttl: u32,
    },
    /// `incr`/`decr`.
    Arith {
        /// The key.
        key: Bytes,
        /// Increment (true) or decrement.
        incr: bool,
        /// The amount.
        delta: u64,
    },
}

/// The typed result of a [`Call`].
#[derive(Debug, Clone)]
pub enum Answer {
    /// Of [`Call::Get`].
    Value(Option<Value>),
    /// Of [`Call::GetMulti`], aligned with its keys.
    Values(Vec<Option<Value>>),
    /// Of [`Call::Store`] and [`Call::CasDelete`].
    Done,
    /// Of [`Call::StoreReturningCas`]: the new unique.
    Cas(u64),
    /// Of [`Call::StoreItems`], aligned with its items.
    Items(Vec<Result<(), Error>>),
    /// Of [`Call::Delete`] and [`Call::Touch`]: whether the key existed.
    Existed(bool),
    /// Of [`Call::DeleteMulti`], aligned with its keys: whether each existed.
    ExistedEach(Vec<Result<bool, Error>>),
    /// Of [`Call::Arith`]: the new value, `None` when missing.
    Number(Option<u64>),
}

impl ops::AsItem for Item {
    fn item(&self) -> ops::Item<'_> {
        ops::Item {
            key: &self.key,
            data: &self.data,
            mode: self.mode,
            flags: self.flags,
            ttl: self.ttl,
        }
    }
}

impl Op for Call {
    type Output = Answer;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        match self {
            Call::Get { key, cas } => ops::Get {
                key,
                cas: *cas,
                touch: None,
            }
            .encode(ctx, buf),
            Call::GetMulti { keys, cas, ttl } => ops::GetMulti {
                keys,
                cas: *cas,
                ttl: *ttl,
            }
            .encode(ctx, buf),
            Call::Store(it) => ops::Store {
                mode: it.mode,
                key: &it.key,
                data: &it.data,
                flags: it.flags,
                ttl: it.ttl,
            }
            .encode(ctx, buf),
            Call::StoreReturningCas(it) => ops::StoreReturningCas {
                mode: it.mode,
                key: &it.key,
                data: &it.data,
                ttl: it.ttl,
            }
            .encode(ctx, buf),
            Call::StoreItems(items) => ops::StoreItems { items }.encode(ctx, buf),
            Call::CasDelete { key, cas } => ops::CasDelete { key, cas: *cas }.encode(ctx, buf),
            Call::Delete { key } => ops::Delete { key }.encode(ctx, buf),
            Call::DeleteMulti { keys } => ops::DeleteMulti { keys }.encode(ctx, buf),
            Call::Touch { key, ttl } => ops::Touch { key, ttl: *ttl }.encode(ctx, buf),
            Call::Arith { key, incr, delta } => ops::Arith {
                key,
                incr: *incr,
                delta: *delta,
            }
            .encode(ctx, buf),
        }
    }

    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<Answer, Error> {
        match self {
            Call::Get { key, cas } => ops::Get {
                key: &key,
                cas,
                touch: None,
            }
            .finish(ctx, reply)
            .map(Answer::Value),
            Call::GetMulti { keys, cas, ttl } => ops::GetMulti {
                keys: &keys,
                cas,
                ttl,
            }
            .finish(ctx, reply)
            .map(Answer::Values),
            Call::Store(it) => ops::Store {
                mode: it.mode,
                key: &it.key,
                data: &it.data,
                flags: it.flags,
                ttl: it.ttl,
            }
            .finish(ctx, reply)
            .map(|()| Answer::Done),
            Call::StoreReturningCas(it) => ops::StoreReturningCas {
                mode: it.mode,
                key: &it.key,
                data: &it.data,
                ttl: it.ttl,
            }
            .finish(ctx, reply)
            .map(Answer::Cas),
            Call::StoreItems(items) => ops::StoreItems { items: &items }
                .finish(ctx, reply)
                .map(Answer::Items),
            Call::CasDelete { key, cas } => ops::CasDelete { key: &key, cas }
                .finish(ctx, reply)
                .map(|()| Answer::Done),
            Call::Delete { key } => ops::Delete { key: &key }
                .finish(ctx, reply)
                .map(Answer::Existed),
            Call::DeleteMulti { keys } => ops::DeleteMulti { keys: &keys }
                .finish(ctx, reply)
                .map(Answer::ExistedEach),
            Call::Touch { key, ttl } => ops::Touch { key: &key, ttl }
                .finish(ctx, reply)
                .map(Answer::Existed),
            Call::Arith { key, incr, delta } => ops::Arith {
                key: &key,
                incr,
                delta,
            }
            .finish(ctx, reply)
            .map(Answer::Number),
        }
    }
}

/// A [`Call`] addressed to server `server` (an index in the configuration).
#[derive(Debug, Clone)]
pub struct Request {
    /// The server.
    pub server: usize,
    /// What to send it.
    pub call: Call,
}

impl Request {
    /// `call` for server `server`.
    pub fn new(server: usize, call: Call) -> Self {
        Request { server, call }
    }
}

/// What a machine wants next.
#[derive(Debug)]
pub enum Step<T, V = ()> {
    /// Send every request, all at once (pipelined per server), then pass their results,
    /// aligned with the requests, as [`Input::Answers`].
    Send(Vec<Request>),
    /// Pause this long, then pass [`Input::Woke`].
    Wait(Duration),
    /// Call the caller's function on this view of the current value, then pass what it said as
    /// [`Input::Decided`].
    Decide(Option<V>),
    /// Call the caller's loader, then pass what it produced as [`Input::Loaded`].
    Load,
    /// Finished.
    Done(Result<T, Error>),
}

/// What a driver passes to [`Machine::step`].
#[derive(Debug)]
pub enum Input {
    /// The first step.
    Start,
    /// The results of the last [`Step::Send`], aligned with its requests.
    Answers(Vec<Result<Answer, Error>>),
    /// The pause of the last [`Step::Wait`] is over.
    Woke,
    /// The caller's function answered the last [`Step::Decide`] (or failed).
    Decided(Result<crate::logic::recipe::Update, Error>),
    /// The caller's loader answered the last [`Step::Load`] (or failed).
    Loaded(Result<crate::logic::recipe::Fresh, Error>),
}

/// A multi-step behaviour.
pub trait Machine {
    /// What it ends with.
    type Output;
    /// What the caller's function is shown at a [`Step::Decide`].
    type View;
    /// Take the next step after `input`.
    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Self::Output, Self::View>;

    /// Whether the machine reads no clock and ends with the answers of its first send step
    /// (a plain call): a driver may pass it no time ([`Now::default`]) and hand its one
    /// answer straight to the caller.
    fn oneshot(&self) -> bool {
        false
    }
}

/// An input a machine did not expect at this point (a driver bug): an error, never a panic.
pub(crate) fn out_of_order<T, V>(machine: &str, input: &Input) -> Step<T, V> {
    Step::Done(Err(Error::Client {
        server: String::new(),
        message: format!(
            "{machine}: input {} out of order (a driver bug)",
            match input {
                Input::Start => "Start",
                Input::Answers(_) => "Answers",
                Input::Woke => "Woke",
                Input::Decided(_) => "Decided",
                Input::Loaded(_) => "Loaded",
            }
        ),
    }))
}

fn wrong_answer(what: &str) -> Error {
    Error::Client {
        server: String::new(),
        message: format!("an answer of the wrong kind for {what} (a driver bug)"),
    }
}

impl Answer {
    /// The value of a [`Call::Get`].
    pub fn into_value(r: Result<Answer, Error>) -> Result<Option<Value>, Error> {
        match r? {
            Answer::Value(v) => Ok(v),
            _ => Err(wrong_answer("get")),
        }
    }

    /// The values of a [`Call::GetMulti`].
    pub fn into_values(r: Result<Answer, Error>) -> Result<Vec<Option<Value>>, Error> {
        match r? {
            Answer::Values(v) => Ok(v),
            _ => Err(wrong_answer("get_multi")),
        }
    }

    /// The outcome of a [`Call::Store`] or [`Call::CasDelete`].
    pub fn into_done(r: Result<Answer, Error>) -> Result<(), Error> {
        match r? {
            Answer::Done => Ok(()),
            _ => Err(wrong_answer("a store")),
        }
    }

    /// The unique of a [`Call::StoreReturningCas`].
    pub fn into_cas(r: Result<Answer, Error>) -> Result<u64, Error> {
        match r? {
            Answer::Cas(c) => Ok(c),
            _ => Err(wrong_answer("a store returning its unique")),
        }
    }

    /// The per-item outcomes of a [`Call::StoreItems`].
    pub fn into_items(r: Result<Answer, Error>) -> Result<Vec<Result<(), Error>>, Error> {
        match r? {
            Answer::Items(v) => Ok(v),
            _ => Err(wrong_answer("store_items")),
        }
    }

    /// Whether the key of a [`Call::Delete`] or [`Call::Touch`] existed.
    pub fn into_existed(r: Result<Answer, Error>) -> Result<bool, Error> {
        match r? {
            Answer::Existed(b) => Ok(b),
            _ => Err(wrong_answer("delete/touch")),
        }
    }

    /// The per-key outcomes of a [`Call::DeleteMulti`].
    pub fn into_existed_each(r: Result<Answer, Error>) -> Result<Vec<Result<bool, Error>>, Error> {
        match r? {
            Answer::ExistedEach(v) => Ok(v),
            _ => Err(wrong_answer("delete_multi")),
        }
    }

    /// The number of a [`Call::Arith`].
    pub fn into_number(r: Result<Answer, Error>) -> Result<Option<u64>, Error> {
        match r? {
            Answer::Number(n) => Ok(n),
            _ => Err(wrong_answer("incr/decr")),
        }
    }
}

/// The only answer of a one-request step.
pub(crate) fn single(answers: Vec<Result<Answer, Error>>) -> Result<Answer, Error> {
    answers
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(wrong_answer("a single request")))
}

/// The pause before the next attempt: [`crate::logic::recipe::backoff`] with this machine's
/// randomness, never past `deadline` (measured from `start`).
pub(crate) fn pause_before(
    attempt: u32,
    base: Duration,
    max: Duration,
    rng: &mut Rng,
    now: Duration,
    start: Duration,
    deadline: Duration,
) -> Duration {
    let left = deadline.saturating_sub(now.saturating_sub(start));
    crate::logic::recipe::backoff(attempt, base, max, rng.unit()).min(left)
}

#[cfg(test)]
pub(crate) mod script {
    //! Driving machines with scripted answers, for unit tests.
    use super::*;

    /// A cluster of `n` servers (never contacted).
    pub fn cluster(n: usize) -> Cluster {
        let servers: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", 40000 + i)).collect();
        Cluster::new(
            crate::Config::builder_for_tests(&servers)
                .build_config()
                .unwrap(),
        )
        .unwrap()
    }

    /// A cx at monotonic time `ms`.
    pub fn at(cluster: &Cluster, ms: u64) -> Cx<'_> {
        Cx {
            cluster,
            now: Now {
                mono: Duration::from_millis(ms),
                wall_ms: 1_700_000_000_000 + ms,
            },
        }
    }
}
