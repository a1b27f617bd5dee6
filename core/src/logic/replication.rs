//! Replication rules: where copies live, when a write or read succeeds, which copy wins, and
//! what read repair writes back. No I/O; the replicated clients ([`crate::ReplicatedClient`],
//! [`crate::blocking::ReplicatedClient`]) carry the decisions out.
//!
//! - Copies: a key lives on the first `replicas` distinct servers of its ketama preference
//!   list ([`crate::Ring::preference_list`]). A down server keeps its place in the list: its
//!   copies are missing, never moved (re-hashing breaks locks and serves stale data), unless
//!   the operator turned on [`Policy::failover`].
//! - Values carry the envelope ([`crate::envelope`]): a hybrid-logical-clock timestamp and the
//!   writer's id. The later stamp wins; a plain value (no envelope) is older than any
//!   enveloped one; deletes write tombstones that win like values and read as a miss.
//! - Read repair: after a read that asked every replica, each replica whose copy is missing
//!   gets the winner with `add` (which cannot overwrite a value written meanwhile) and each
//!   whose copy is older gets it with `cas` on the unique it was read with (which fails if
//!   the copy changed since). So a repair never overwrites a newer value.

use crate::envelope::{self, Decoded, Kind};
use crate::error::Error;
use crate::ops::Value;
use crate::protocol::text::StoreMode;
use std::fmt;

/// How far ahead of the local wall clock a timestamp read from a replica may be and still be
/// observed by the writer's clock: one corrupt or far-future value must not drag every later
/// write with it.
pub const MAX_OBSERVED_DRIFT_MS: u64 = 3_600_000;

/// Should a clock at wall time `wall_ms` observe timestamp `ts` read from a replica?
pub fn should_observe(ts: u64, wall_ms: u64) -> bool {
    ts != 0 && (ts >> envelope::COUNTER_BITS) <= wall_ms.saturating_add(MAX_OBSERVED_DRIFT_MS)
}

/// When a replicated write succeeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WritePolicy {
    /// Every replica that is not marked down must store it (the default). Down replicas are
    /// reported in the [`WriteReport`], and at least one replica must store it.
    #[default]
    All,
    /// At least this many replicas must store it.
    Quorum(usize),
    /// One replica storing it is enough.
    One,
}

/// How a replicated read chooses its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Ask every replica at once, return the latest copy, repair the others (the default).
    #[default]
    All,
    /// Like `All`, but fail unless at least this many replicas answered.
    Quorum(usize),
    /// Ask replicas one at a time in preference order and return the first hit. Cheapest;
    /// may return an older copy while replicas disagree, and repairs nothing.
    FirstHit,
}

/// A quorum spelled as the bindings and the CLI take it: `quorum` or `majority` (a majority of
/// `replicas`), `quorum:N`, or `N`. `None` when `s` is not a quorum at all.
fn parse_quorum(s: &str, replicas: usize, what: &str) -> Option<Result<usize, Error>> {
    if s == "quorum" || s == "majority" {
        return Some(Ok(replicas / 2 + 1));
    }
    let n = match s.strip_prefix("quorum:") {
        Some(n) => n,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s,
        None => return None,
    };
    Some(match n.parse::<usize>() {
        Ok(0) => Err(Error::Config(format!(
            "{what} {s:?}: a quorum is at least 1 replica"
        ))),
        Ok(q) => Ok(q),
        Err(_) => Err(Error::Config(format!(
            "{what} {s:?}: {n:?} is not a number of replicas"
        ))),
    })
}

/// Lower-cased, trimmed, `-` read as `_`: `First-Hit` is `first_hit`.
fn policy_word(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('-', "_")
}

impl WritePolicy {
    /// Parse a write policy as every binding, the CLI and the C ABI spell it: `all`, `one`
    /// (also `any`), `quorum`/`majority` (a majority of `replicas`), `quorum:W` or `W`.
    /// Whether W fits the replica count is [`Policy::validate`]'s check.
    pub fn parse(s: &str, replicas: usize) -> Result<WritePolicy, Error> {
        let w = policy_word(s);
        match w.as_str() {
            "all" => return Ok(WritePolicy::All),
            "one" | "any" => return Ok(WritePolicy::One),
            _ => {}
        }
        match parse_quorum(&w, replicas, "write policy") {
            Some(q) => q.map(WritePolicy::Quorum),
            None => Err(Error::Config(format!(
                "write policy {s:?}: expected all, one, quorum (a majority of the replicas), \
                 quorum:W or W (W replicas must store)"
            ))),
        }
    }
}

impl fmt::Display for WritePolicy {
    /// `all`, `one` or `quorum:W`, which [`WritePolicy::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WritePolicy::All => f.write_str("all"),
            WritePolicy::One => f.write_str("one"),
            WritePolicy::Quorum(n) => write!(f, "quorum:{n}"),
        }
    }
}

impl ReadPolicy {
    /// Parse a read policy as every binding, the CLI and the C ABI spell it: `all`,
    /// `first_hit` (also `first`, `firsthit`, `one`), `quorum`/`majority` (a majority of
    /// `replicas`), `quorum:R` or `R`.
    pub fn parse(s: &str, replicas: usize) -> Result<ReadPolicy, Error> {
        let w = policy_word(s);
        match w.as_str() {
            "all" => return Ok(ReadPolicy::All),
            "first_hit" | "first" | "firsthit" | "one" => return Ok(ReadPolicy::FirstHit),
            _ => {}
        }
        match parse_quorum(&w, replicas, "read policy") {
            Some(q) => q.map(ReadPolicy::Quorum),
            None => Err(Error::Config(format!(
                "read policy {s:?}: expected all, first_hit, quorum (a majority of the \
                 replicas), quorum:R or R (R replicas must answer)"
            ))),
        }
    }
}

impl fmt::Display for ReadPolicy {
    /// `all`, `first_hit` or `quorum:R`, which [`ReadPolicy::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadPolicy::All => f.write_str("all"),
            ReadPolicy::FirstHit => f.write_str("first_hit"),
            ReadPolicy::Quorum(n) => write!(f, "quorum:{n}"),
        }
    }
}

/// Replication settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Copies per key (1 = no replication, but values still carry the envelope).
    pub replicas: usize,
    /// When writes succeed.
    pub write: WritePolicy,
    /// How reads answer.
    pub read: ReadPolicy,
    /// Lifetime of delete tombstones in seconds: a replica that missed a delete cannot bring
    /// the value back within this time. Default one day.
    pub tombstone_ttl: u32,
    /// Twemproxy-style ejection: while a server is marked down, keys are placed on a ring
    /// built without it, so their copies go to other servers. Off by default, because moving
    /// keys breaks locks and serves stale data when the server returns.
    pub failover: bool,
    /// Write winners back to stale or missing replicas after reads. Default on.
    pub read_repair: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            replicas: 2,
            write: WritePolicy::All,
            read: ReadPolicy::All,
            tombstone_ttl: 86_400,
            failover: false,
            read_repair: true,
        }
    }
}

impl Policy {
    /// Check the policy against the number of servers.
    pub fn validate(&self, servers: usize) -> Result<(), Error> {
        if self.replicas == 0 || self.replicas > servers {
            return Err(Error::Config(format!(
                "replicas must be between 1 and the number of servers ({servers}), not {}",
                self.replicas
            )));
        }
        if let WritePolicy::Quorum(q) = self.write {
            if q == 0 || q > self.replicas {
                return Err(Error::Config(format!(
                    "write quorum must be between 1 and {}",
                    self.replicas
                )));
            }
        }
        if let ReadPolicy::Quorum(q) = self.read {
            if q == 0 || q > self.replicas {
                return Err(Error::Config(format!(
                    "read quorum must be between 1 and {}",
                    self.replicas
                )));
            }
        }
        Ok(())
    }
}

/// What a replicated write did.
#[derive(Debug, Clone, Default)]
pub struct WriteReport {
    /// `host:port` of the replicas that stored it.
    pub stored: Vec<String>,
    /// Replicas that did not, with why (including replicas skipped because they are down).
    pub failed: Vec<(String, Error)>,
}

/// Decide a write from its per-replica results, in preference order.
pub fn write_outcome(
    op: &'static str,
    policy: WritePolicy,
    results: Vec<(String, Result<(), Error>)>,
) -> Result<WriteReport, Error> {
    let mut report = WriteReport::default();
    for (server, r) in results {
        match r {
            Ok(()) => report.stored.push(server),
            Err(e) => report.failed.push((server, e)),
        }
    }
    let acked = report.stored.len();
    let live_failures = report
        .failed
        .iter()
        .filter(|(_, e)| !matches!(e, Error::ServerDown { .. }))
        .count();
    let required = match policy {
        WritePolicy::All => acked + live_failures,
        WritePolicy::Quorum(w) => w,
        WritePolicy::One => 1,
    }
    .max(1);
    if acked >= required {
        Ok(report)
    } else {
        Err(Error::Replication {
            op,
            acked,
            required,
            failures: report.failed,
        })
    }
}

/// A replicated value as read: the payload without the envelope, and what the envelope said.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The payload.
    pub data: bytes::Bytes,
    /// Its type, for bindings that decode typed values.
    pub value_type: envelope::ValueType,
    /// The serializer, for serialized objects.
    pub format: envelope::Format,
    /// The write's timestamp and writer (all zero for a plain value).
    pub stamp: envelope::Stamp,
    /// False when the value was written by a plain memcached client (no envelope).
    pub enveloped: bool,
    /// The memcached flags stored with it (meaningful for plain values).
    pub flags: u32,
}

impl Versioned {
    /// The version token of this value, used where a plain client uses the CAS unique (a
    /// replicated `gets`/`cas`): it changes with every write. For an enveloped value it is
    /// derived from the stamp; for a plain one, from its bytes and flags (FNV-1a). Never 0, and
    /// below 2^63 so that languages with signed 64-bit integers (PHP) hold it as an integer.
    pub fn version_token(&self) -> u64 {
        let t = if self.enveloped {
            self.stamp.ts ^ self.stamp.writer.rotate_left(32)
        } else {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in self.data.iter().chain(self.flags.to_le_bytes().iter()) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h
        };
        (t & (i64::MAX as u64)).max(1)
    }
}

/// A copy to write back to a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Position of the replica in the read's server list.
    pub replica: usize,
    /// `Add` for a missing copy, `Cas(unique)` for an older one.
    pub mode: StoreMode,
    /// The winner's remaining lifetime.
    pub ttl: u32,
}

/// The verdict on one key's copies.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The answer: `None` for a miss everywhere or a winning tombstone.
    pub value: Option<Versioned>,
    /// The winning copy's raw stored bytes (envelope included), for repairs.
    pub winner_raw: Option<bytes::Bytes>,
    /// The winning copy's timestamp, to feed the clock.
    pub winner_ts: u64,
    /// The winning copy's memcached flags, kept on repaired copies.
    pub winner_flags: u32,
    /// Replicas that answered.
    pub answered: usize,
    /// True when the replicas that answered did not all hold the same bytes.
    pub disagreement: bool,
    /// Positions of replicas whose copy was missing or older.
    pub stale: Vec<usize>,
    /// Write-backs to do.
    pub repairs: Vec<Repair>,
}

/// Resolve one key from the replies of its replicas (in preference order). `Err` entries
/// are replicas that did not answer. Fails when fewer replicas answered than `policy` needs.
pub fn resolve(
    policy: ReadPolicy,
    copies: &[Result<Option<Value>, Error>],
    repair: bool,
) -> Result<Resolved, Error> {
    let answered = copies.iter().filter(|c| c.is_ok()).count();
    let required = match policy {
        ReadPolicy::Quorum(r) => r,
        _ => 1,
    };
    if answered < required {
        let failures = copies
            .iter()
            .filter_map(|c| c.as_ref().err())
            .map(|e| (server_of(e), e.clone()))
            .collect();
        return Err(Error::Replication {
            op: "read",
            acked: answered,
            required,
            failures,
        });
    }
    fn data(c: &Result<Option<Value>, Error>) -> Option<&[u8]> {
        c.as_ref()
            .ok()
            .and_then(|v| v.as_ref())
            .map(|v| &v.data[..])
    }
    let best = envelope::winner(copies.iter().map(data));
    let mut out = Resolved {
        value: None,
        winner_raw: None,
        winner_ts: 0,
        winner_flags: 0,
        answered,
        disagreement: false,
        stale: Vec::new(),
        repairs: Vec::new(),
    };
    // No winner: every replica that answered missed.
    let Some(Ok(Some(win))) = best.map(|b| &copies[b]) else {
        return Ok(out);
    };
    let win_bytes = &win.data[..];
    for (i, c) in copies.iter().enumerate() {
        let Ok(copy) = c else { continue };
        let same = copy.as_ref().is_some_and(|v| v.data[..] == *win_bytes);
        if same {
            continue;
        }
        out.disagreement = true;
        out.stale.push(i);
        // The winner's remaining TTL: -1 means none (0 on the wire); unknown (text protocol)
        // or about to expire means no repair.
        let ttl = match win.ttl {
            Some(-1) => Some(0),
            Some(t) if t > 0 => Some(u32::try_from(t).unwrap_or(u32::MAX)),
            _ => None,
        };
        let mode = match copy {
            None => Some(StoreMode::Add),
            Some(v) => v.cas.map(StoreMode::Cas),
        };
        if let (true, Some(ttl), Some(mode)) = (repair, ttl, mode) {
            out.repairs.push(Repair {
                replica: i,
                mode,
                ttl,
            });
        }
    }
    out.winner_raw = Some(win.data.clone());
    out.winner_flags = win.flags;
    if let Decoded::Enveloped(env) = envelope::decode(&win.data) {
        out.winner_ts = env.stamp.ts;
    }
    out.value = decode_copy(win);
    Ok(out)
}

/// What a stored copy means to a reader: its payload and type, `None` for a tombstone. A
/// value without a valid envelope is a plain value (raw bytes, stamp zero).
pub fn decode_copy(v: &Value) -> Option<Versioned> {
    match envelope::decode(&v.data) {
        Decoded::Enveloped(env) if env.kind == Kind::Tombstone => None,
        Decoded::Enveloped(env) => Some(Versioned {
            data: v.data.slice(envelope::HEADER_LEN..),
            value_type: env.vtype,
            format: env.format,
            stamp: env.stamp,
            enveloped: true,
            flags: v.flags,
        }),
        Decoded::Plain(_) => Some(Versioned {
            data: v.data.clone(),
            value_type: envelope::ValueType::Bytes,
            format: envelope::Format::NONE,
            stamp: envelope::Stamp::PLAIN,
            enveloped: false,
            flags: v.flags,
        }),
    }
}

fn server_of(e: &Error) -> String {
    e.server().unwrap_or_default().to_string()
}

#[cfg(test)]
mod policy_parse_tests {
    use super::*;

    #[test]
    fn every_spelling_the_bindings_accept() {
        for (s, want) in [
            ("all", WritePolicy::All),
            ("ONE", WritePolicy::One),
            ("any", WritePolicy::One),
            ("quorum", WritePolicy::Quorum(3)),
            ("majority", WritePolicy::Quorum(3)),
            (" quorum:2 ", WritePolicy::Quorum(2)),
            ("4", WritePolicy::Quorum(4)),
        ] {
            assert_eq!(WritePolicy::parse(s, 5).unwrap(), want, "{s:?}");
            assert_eq!(WritePolicy::parse(&want.to_string(), 5).unwrap(), want);
        }
        for (s, want) in [
            ("all", ReadPolicy::All),
            ("first", ReadPolicy::FirstHit),
            ("First-Hit", ReadPolicy::FirstHit),
            ("firsthit", ReadPolicy::FirstHit),
            ("one", ReadPolicy::FirstHit),
            ("quorum", ReadPolicy::Quorum(2)),
            ("quorum:3", ReadPolicy::Quorum(3)),
            ("2", ReadPolicy::Quorum(2)),
        ] {
            assert_eq!(ReadPolicy::parse(s, 3).unwrap(), want, "{s:?}");
            assert_eq!(ReadPolicy::parse(&want.to_string(), 3).unwrap(), want);
        }
        for bad in ["most", "quorum:x", "quorum:0", "0", "", "quorum:"] {
            assert!(
                matches!(WritePolicy::parse(bad, 3), Err(Error::Config(_))),
                "{bad:?}"
            );
            assert!(ReadPolicy::parse(bad, 3).is_err(), "{bad:?}");
        }
        let msg = |r: Result<WritePolicy, Error>| r.unwrap_err().to_string();
        assert!(msg(WritePolicy::parse("most", 3)).contains("quorum:W"));
        assert!(msg(WritePolicy::parse("quorum:0", 3)).contains("at least 1"));
        let e = ReadPolicy::parse("quorum:x", 3).unwrap_err().to_string();
        assert!(e.contains("quorum:x"), "{e}");
    }
}
