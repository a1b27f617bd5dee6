//! The ketama ring: which server owns a key, placed exactly as libmemcached places it.
//!
//! PHP (php-memcached), Python (pylibmc) and multiput processes that share a memcached fleet
//! must agree on where each key lives, or each reads misses the others' writes. Both of those
//! clients delegate placement to libmemcached, so this module reproduces libmemcached 1.1's
//! consistent hashing bit for bit. The contract is the ketama test vectors in the repository
//! (`docs/vectors/ring/ketama_*.json`, made by libmemcached itself with
//! `scripts/gen-ketama-vectors.sh`; format in `docs/vectors/ring/README.md`; checked by
//! `core/tests/vectors.rs`).
//!
//! # How a ring is built
//!
//! Every server is turned into a set of 32-bit *points* on a circle. A key is hashed onto the
//! same circle and belongs to the server owning the first point at or after it, going round to
//! the lowest point when the key hashes past the highest one. Adding or removing one server only
//! moves the keys in the arcs that its points own.
//!
//! 1. **Normalise.** Port 0 counts as 11211 and weight 0 as 1. Host strings are used exactly
//!    as configured (no DNS, no case folding).
//! 2. **Label.** A server is named on the ring by [`ServerSpec::label`]: the bare host when the
//!    port is 11211, `host:port` otherwise. This is libmemcached's rule; the original last.fm
//!    libketama keeps `:11211`, so "libketama compatible" rings are *not* libketama's rings for
//!    servers on the default port.
//! 3. **Point counts** ([`RingMode::LibketamaCompatible`]). With `n` servers whose weights sum
//!    to `W`, a server of weight `w` gets `floor(w/W * 160 / 4 * n) * 4` points, computed in
//!    32-bit floats, one rounding per operation, left to right. The float rounding is part of
//!    the contract: 25, 47, 50 (and a few more) equal servers get 156 points each rather than
//!    160, and weights 4,8,5,1,7 give 124,252,160,28,224 rather than the exact 128,256,160,32,224.
//!    The counts are not adjusted to add up to `160 * n`.
//! 4. **Point values.** Digest `i` of a server is `MD5(label + "-" + i)` (decimal `i`). In the
//!    weighted layout each digest yields four points, its four little-endian 32-bit words. In
//!    [`RingMode::KetamaMd5`] every server gets exactly 100 digests and only the first word of
//!    each is used.
//! 5. **Order.** Points are sorted by `(value, server index)`. When two servers produce the
//!    same value, the one listed first owns the keys that land on it, so **with ties the answer
//!    depends on the configured order** (which is the order the servers were added in PHP or
//!    Python).
//! 6. **Lookup.** A key's hash is the first little-endian word of `MD5(key)` ([`hash_key`]).
//!    The owner is the first point whose value is `>=` the hash (a lower bound), wrapping to
//!    the first point. With exactly one server, libmemcached skips the hash and returns it;
//!    [`Ring::server_for`] does the same.
//!
//! # Quirks kept on purpose
//!
//! - **`ketama_md5` with weights.** libmemcached switches a consistent ring to the weighted
//!   layout as soon as a server with weight > 1 is *added* while the mode is active. A
//!   [`RingMode::KetamaMd5`] ring whose servers include an effective weight > 1 is therefore
//!   built exactly like [`RingMode::LibketamaCompatible`] (see
//!   [`Ring::uses_weighted_layout`]). That models the usual order (options set, then servers
//!   added). If a PHP or Python client sets the distribution *after* adding weighted servers,
//!   libmemcached ignores the weights instead; model that client with all weights set to 1.
//! - **Membership changes.** A ring is built from the servers in it. A ring for a subset (for
//!   example the live servers after an ejection) is simply [`Ring::new`] on that subset, and its
//!   indices then refer to the subset's slice. `n` and `W` are recomputed, so the remaining
//!   servers' point counts can change too (51 → 50 equal servers takes everyone from 160 to 156
//!   points), which is what libmemcached does when it rebuilds its continuum.
//! - **Key prefixes** (php-memcached's `OPT_PREFIX_KEY`) are not hashed by libmemcached by
//!   default; hash the key without the prefix.
//!
//! # Preference lists and replicas
//!
//! [`Ring::preference_list`] returns the first `n` *distinct* servers met walking clockwise from
//! the key's point; its first element is always [`Ring::server_for`]. multiput uses it to place
//! replicas and to pick failover targets, so the second choice for a key is the server that
//! would own it if the first were removed from the ring (for equal point counts).
//!
//! # pymemcache's placement
//!
//! [`RingMode::Rendezvous`] is not a ring: it reproduces pymemcache's `HashClient` (what
//! Django's `PyMemcacheCache` uses), highest-random-weight hashing. Every server scores
//! [`hash_pymemcache`]`(label + "-" + key)`, its label being `host:port` (port always written,
//! 11211 when omitted; an IPv6 host without brackets); the highest score owns the key, a tie
//! going to the larger label. The preference list is the servers by descending score. Weights
//! are ignored. The contract is `docs/vectors/pymemcache/`, made with pymemcache itself.
//!
//! libmemcached's own replication (php-memcached `OPT_NUMBER_OF_REPLICAS`,
//! `MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS`) works differently: it writes replicas to the servers
//! that follow the primary *by index in the server list* (primary + 1, + 2, ... modulo the
//! count), not along the ring. The primary is the same in both schemes; the replicas are not.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

use crate::error::Error;
use crate::server::ServerSpec;

/// libmemcached's `MEMCACHED_POINTS_PER_SERVER_KETAMA`: the nominal point count of one server of
/// average weight in the weighted layout.
const POINTS_PER_SERVER_KETAMA: f32 = 160.0;

/// libmemcached's `MEMCACHED_POINTS_PER_SERVER`: the point count of every server in the
/// unweighted `ketama_md5` layout.
const POINTS_PER_SERVER_MD5: u32 = 100;

/// How keys are placed on servers. The two consistent modes hash keys with MD5; the modula
/// mode is libmemcached's default distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RingMode {
    /// libmemcached `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`; php-memcached
    /// `OPT_LIBKETAMA_COMPATIBLE => true`; pylibmc `{"ketama_weighted": True}`. Weighted layout,
    /// 160 points per server of average weight, four points per MD5 digest. The default.
    #[default]
    LibketamaCompatible,
    /// libmemcached `MEMCACHED_BEHAVIOR_KETAMA` with `MEMCACHED_HASH_MD5`; php-memcached
    /// `OPT_DISTRIBUTION => DISTRIBUTION_CONSISTENT` with `OPT_HASH => HASH_MD5`; pylibmc
    /// `{"ketama": True, "hash": "md5"}`. 100 points per server, one per digest. If any server
    /// has a weight above 1 the ring is built as [`RingMode::LibketamaCompatible`] (see the
    /// module docs).
    KetamaMd5,
    /// libmemcached's default distribution (`MEMCACHED_DISTRIBUTION_MODULA` with the default
    /// one-at-a-time hash): what php-memcached does without `OPT_LIBKETAMA_COMPATIBLE`
    /// (`OPT_DISTRIBUTION => DISTRIBUTION_MODULA`, `OPT_HASH => HASH_DEFAULT`) and pylibmc
    /// without behaviors (Django's `PyLibMCCache` by default). The owner is
    /// [`hash_one_at_a_time`]`(key) % n`; weights are ignored, and adding or removing a
    /// server moves most keys. For sharing keys with such clients; not consistent.
    Modula,
    /// pymemcache's `HashClient` placement (Django's `PyMemcacheCache`): rendezvous
    /// (highest-random-weight) hashing with pymemcache's murmur3 over `host:port-key`, see
    /// the module docs. Weights are ignored; removing a server moves only its own keys.
    Rendezvous,
}

impl RingMode {
    /// The configuration name: `libketama_compatible` or `ketama_md5`.
    pub fn as_str(self) -> &'static str {
        match self {
            RingMode::LibketamaCompatible => "libketama_compatible",
            RingMode::KetamaMd5 => "ketama_md5",
            RingMode::Modula => "modula",
            RingMode::Rendezvous => "rendezvous",
        }
    }
}

impl fmt::Display for RingMode {
    /// Writes [`RingMode::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RingMode {
    type Err = Error;

    /// Accepts `libketama_compatible`, `ketama_md5`, `modula` and `rendezvous` (alias
    /// `pymemcache`) (ASCII case and `-` for `_` tolerated).
    fn from_str(s: &str) -> Result<RingMode, Error> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        match norm.as_str() {
            "libketama_compatible" => Ok(RingMode::LibketamaCompatible),
            "ketama_md5" => Ok(RingMode::KetamaMd5),
            "modula" => Ok(RingMode::Modula),
            "rendezvous" | "pymemcache" => Ok(RingMode::Rendezvous),
            _ => Err(Error::Config(format!(
                "unknown ring mode {s:?}: expected \"libketama_compatible\" (php-memcached \
                 OPT_LIBKETAMA_COMPATIBLE, pylibmc ketama_weighted), \"ketama_md5\", \
                 \"modula\" (libmemcached's default distribution) or \"rendezvous\" \
                 (pymemcache's HashClient)"
            ))),
        }
    }
}

/// libmemcached's key distribution (`MEMCACHED_BEHAVIOR_DISTRIBUTION`), as PECL memcached's
/// `OPT_DISTRIBUTION`/`OPT_LIBKETAMA_COMPATIBLE` and pylibmc's behaviors set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// `MEMCACHED_DISTRIBUTION_MODULA`, libmemcached's default.
    Modula,
    /// `MEMCACHED_DISTRIBUTION_CONSISTENT` (ketama; pylibmc `ketama`).
    Consistent,
    /// `MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA_WEIGHTED` (`KETAMA_WEIGHTED`, PECL
    /// `OPT_LIBKETAMA_COMPATIBLE`, pylibmc `ketama_weighted`).
    ConsistentWeighted,
}

impl FromStr for Distribution {
    type Err = Error;

    /// `modula`; `consistent` (= `ketama`, `consistent_ketama`); `consistent_weighted` (=
    /// `ketama_weighted`, `consistent_ketama_weighted`, `libketama_compatible`).
    fn from_str(s: &str) -> Result<Distribution, Error> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "modula" => Ok(Distribution::Modula),
            "consistent" | "ketama" | "consistent_ketama" => Ok(Distribution::Consistent),
            "consistent_weighted"
            | "ketama_weighted"
            | "consistent_ketama_weighted"
            | "libketama_compatible" => Ok(Distribution::ConsistentWeighted),
            _ => Err(Error::Config(format!(
                "unknown libmemcached distribution {s:?}: expected modula, consistent or \
                 consistent_weighted"
            ))),
        }
    }
}

impl RingMode {
    /// The mode that places keys where libmemcached (PECL memcached, pylibmc) does under this
    /// distribution and key hash (`default`/`one_at_a_time`, `md5`, ...; libmemcached's
    /// names). The weighted distribution sets MD5 itself, so its hash does not matter. Any
    /// other pair is [`Error::Unsupported`]: such a client must not place keys elsewhere.
    pub fn from_libmemcached(distribution: Distribution, hash: &str) -> Result<RingMode, Error> {
        let hash = hash.trim().to_ascii_lowercase();
        match (distribution, hash.as_str()) {
            (Distribution::ConsistentWeighted, _) => Ok(RingMode::LibketamaCompatible),
            (Distribution::Consistent, "md5") => Ok(RingMode::KetamaMd5),
            (Distribution::Modula, "default" | "one_at_a_time") => Ok(RingMode::Modula),
            _ => Err(Error::Unsupported {
                server: String::new(),
                feature: "this libmemcached distribution and hash pair: multiput places keys as \
                          ketama weighted (libketama_compatible), consistent with the MD5 hash \
                          (ketama_md5) or modula with the default hash (modula)",
            }),
        }
    }
}

/// The hash of a key on the ring: the first four bytes of `MD5(key)` read little-endian.
///
/// The key is hashed as raw bytes, with no prefix and no Unicode normalisation.
pub fn hash_key(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// libmemcached's default key hash (`hashkit_one_at_a_time`, Bob Jenkins' one-at-a-time),
/// used by [`RingMode::Modula`]. libmemcached adds each key byte as a C `char`, which is
/// signed on x86-64 Linux: bytes >= 0x80 are sign-extended first. php-memcached's
/// `getServerByKey()` confirms it for non-ASCII keys (`docs/vectors/modula_*.json`).
pub fn hash_one_at_a_time(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key {
        h = h.wrapping_add(b as i8 as i32 as u32);
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// pymemcache's `murmur3_32` (seed 0) as its `RendezvousHash` applies it: to a Python `str`,
/// one unit per code point, each unit the code point's low byte, the length counted in code
/// points. `text` is UTF-8 decoded for that; bytes that are not UTF-8 are taken one unit per
/// byte (pymemcache itself would hash a `bytes` key's `repr`, which no other client shares).
pub fn hash_pymemcache(text: &[u8]) -> u32 {
    if text.is_ascii() {
        return murmur3_32(text);
    }
    let mut units = Vec::with_capacity(text.len());
    push_units(text, &mut units);
    murmur3_32(&units)
}

fn push_units(text: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(text) {
        Ok(s) => out.extend(s.chars().map(|c| c as u32 as u8)),
        Err(_) => out.extend_from_slice(text),
    }
}

/// MurmurHash3 x86 32-bit, seed 0 (Austin Appleby's reference algorithm).
fn murmur3_32(data: &[u8]) -> u32 {
    Murmur::default().feed(data).finish()
}

/// MurmurHash3 x86 32-bit (seed 0) fed in pieces: a server's label is hashed once, when the
/// ring is built, and each key continues from that state without copying.
#[derive(Debug, Clone, Copy, Default)]
struct Murmur {
    h: u32,
    /// Bytes of an unfinished 4-byte block, and how many.
    pending: [u8; 4],
    npending: usize,
    len: usize,
}

impl Murmur {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;

    fn mix(h: u32, block: [u8; 4]) -> u32 {
        let k = u32::from_le_bytes(block)
            .wrapping_mul(Self::C1)
            .rotate_left(15)
            .wrapping_mul(Self::C2);
        (h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64)
    }

    fn feed(mut self, mut data: &[u8]) -> Murmur {
        self.len += data.len();
        if self.npending > 0 {
            let take = (4 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 4 {
                return self;
            }
            self.h = Self::mix(self.h, self.pending);
            self.npending = 0;
        }
        let mut blocks = data.chunks_exact(4);
        for b in &mut blocks {
            self.h = Self::mix(self.h, [b[0], b[1], b[2], b[3]]);
        }
        let tail = blocks.remainder();
        self.pending[..tail.len()].copy_from_slice(tail);
        self.npending = tail.len();
        self
    }

    fn finish(self) -> u32 {
        let mut h = self.h;
        if self.npending > 0 {
            let mut k: u32 = 0;
            for (i, &b) in self.pending[..self.npending].iter().enumerate() {
                k |= u32::from(b) << (8 * i);
            }
            h ^= k
                .wrapping_mul(Self::C1)
                .rotate_left(15)
                .wrapping_mul(Self::C2);
        }
        h ^= self.len as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// The label pymemcache's `HashClient` gives a server: `host:port`, port always written.
fn pymemcache_label(s: &ServerSpec) -> Vec<u8> {
    let host = s.host.trim_start_matches('[').trim_end_matches(']');
    format!("{host}:{}-", s.effective_port()).into_bytes()
}

/// An immutable ketama ring over a list of servers.
///
/// Indices returned by lookups refer to the slice given to [`Ring::new`] (also available as
/// [`Ring::servers`]). Lookups are a binary search over the sorted points.
#[derive(Debug, Clone)]
pub struct Ring {
    servers: Vec<ServerSpec>,
    mode: RingMode,
    weighted: bool,
    /// Point values, sorted ascending (ties ordered by server index).
    values: Vec<u32>,
    /// `owners[i]` is the server index of the point `values[i]`.
    owners: Vec<u32>,
    /// Number of points each server received.
    counts: Vec<u32>,
    /// [`RingMode::Rendezvous`]: each server's `host:port-` label (scored with the key), and
    /// the hash state after it.
    labels: Vec<Vec<u8>>,
    label_states: Vec<Murmur>,
}

impl Ring {
    /// Builds the ring for `servers` (in configuration order) in `mode`.
    ///
    /// An empty slice gives an empty ring, on which every lookup returns `None`. To model a
    /// subset of the fleet (for example the live servers), build a ring from that subset; the
    /// indices it returns then refer to the subset.
    ///
    /// Building hashes one MD5 digest per four points (per point in the unweighted
    /// `ketama_md5` layout): about 40,000 digests and a few milliseconds for 1,000 servers.
    ///
    /// # Panics
    ///
    /// If `servers` has more than `u32::MAX` entries.
    pub fn new(servers: &[ServerSpec], mode: RingMode) -> Ring {
        assert!(
            u32::try_from(servers.len()).is_ok(),
            "a ring holds at most u32::MAX servers"
        );
        // libmemcached turns a consistent ring into the weighted layout when a server with
        // weight > 1 is added; the libketama-compatible mode is always weighted.
        let weighted = match mode {
            RingMode::LibketamaCompatible => true,
            RingMode::KetamaMd5 => servers.iter().any(|s| s.effective_weight() > 1),
            RingMode::Modula | RingMode::Rendezvous => false,
        };

        let counts: Vec<u32> = if matches!(mode, RingMode::Modula | RingMode::Rendezvous) {
            vec![0; servers.len()]
        } else if weighted {
            weighted_point_counts(servers)
        } else {
            vec![POINTS_PER_SERVER_MD5; servers.len()]
        };

        let total: usize = counts.iter().map(|&c| c as usize).sum();
        // Each point packed as `value << 32 | server index`: sorting the u64s sorts by
        // (value, index), which is the tie rule, and is cheaper than sorting tuples.
        let mut points: Vec<u64> = Vec::with_capacity(total);
        let mut label: Vec<u8> = Vec::with_capacity(64);
        for (index, (server, &count)) in servers.iter().zip(&counts).enumerate() {
            let index = index as u64;
            label.clear();
            label.extend_from_slice(server.label().as_bytes());
            label.push(b'-');
            let stem = label.len();
            let digests = if weighted { count / 4 } else { count };
            for i in 0..digests {
                label.truncate(stem);
                push_decimal(&mut label, i);
                let d = Md5::digest(&label);
                if weighted {
                    for word in d.chunks_exact(4) {
                        let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                        points.push(u64::from(value) << 32 | index);
                    }
                } else {
                    let value = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                    points.push(u64::from(value) << 32 | index);
                }
            }
        }
        points.sort_unstable();
        let values = points.iter().map(|&p| (p >> 32) as u32).collect();
        let owners = points.iter().map(|&p| p as u32).collect();

        let labels: Vec<Vec<u8>> = if mode == RingMode::Rendezvous {
            servers.iter().map(pymemcache_label).collect()
        } else {
            Vec::new()
        };
        let label_states = labels
            .iter()
            .map(|l| {
                let mut units = Vec::with_capacity(l.len());
                push_units(l, &mut units);
                Murmur::default().feed(&units)
            })
            .collect();
        Ring {
            servers: servers.to_vec(),
            mode,
            weighted,
            values,
            owners,
            counts,
            labels,
            label_states,
        }
    }

    /// [`RingMode::Rendezvous`]: server `i`'s score for `key` (pymemcache's murmur3 of
    /// `host:port-key`).
    fn score(&self, i: usize, key: &[u8]) -> u32 {
        let state = self.label_states[i];
        if key.is_ascii() {
            return state.feed(key).finish();
        }
        let mut units = Vec::with_capacity(key.len());
        push_units(key, &mut units);
        state.feed(&units).finish()
    }

    /// [`RingMode::Rendezvous`]: whether server `a` with score `sa` beats `b` with `sb`
    /// (pymemcache: the higher score; on a tie the larger label).
    fn beats(&self, a: usize, sa: u32, b: usize, sb: u32) -> bool {
        sa > sb || (sa == sb && self.labels[a] > self.labels[b])
    }

    /// The mode the ring was built with.
    pub fn mode(&self) -> RingMode {
        self.mode
    }

    /// True when the points use the weighted layout (four points per digest, counts by weight):
    /// always in [`RingMode::LibketamaCompatible`], and in [`RingMode::KetamaMd5`] when some
    /// server has an effective weight above 1.
    pub fn uses_weighted_layout(&self) -> bool {
        self.weighted
    }

    /// The servers, in the order given to [`Ring::new`]; lookups return indices into this slice.
    pub fn servers(&self) -> &[ServerSpec] {
        &self.servers
    }

    /// The number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// True when the ring has no servers.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// How many points each server has on the ring, by server index (diagnostics).
    pub fn points_per_server(&self) -> &[u32] {
        &self.counts
    }

    /// The total number of points on the ring.
    pub fn total_points(&self) -> usize {
        self.values.len()
    }

    /// The sorted points as `(value, server index)` pairs (diagnostics).
    pub fn points(&self) -> impl ExactSizeIterator<Item = (u32, usize)> + '_ {
        self.values
            .iter()
            .zip(&self.owners)
            .map(|(&v, &o)| (v, o as usize))
    }

    /// The server that owns `key`: an index into [`Ring::servers`], `None` only when the ring is
    /// empty. With one server the key is not hashed, as in libmemcached.
    pub fn server_for(&self, key: &[u8]) -> Option<usize> {
        match self.servers.len() {
            0 => None,
            1 => Some(0),
            n if self.mode == RingMode::Modula => Some(hash_one_at_a_time(key) as usize % n),
            n if self.mode == RingMode::Rendezvous => {
                let mut best = (0, self.score(0, key));
                for i in 1..n {
                    let s = self.score(i, key);
                    if self.beats(i, s, best.0, best.1) {
                        best = (i, s);
                    }
                }
                Some(best.0)
            }
            _ => self.server_for_hash(hash_key(key)),
        }
    }

    /// The server owning the ring position `hash` (as computed by [`hash_key`]): the owner of
    /// the first point `>= hash`, wrapping to the first point. `None` when the ring is empty.
    /// In [`RingMode::Modula`], `hash` is a [`hash_one_at_a_time`] value and the owner is
    /// `hash % n`. [`RingMode::Rendezvous`] has no key hash to go by (each server scores the
    /// key itself): `None`; use [`Ring::server_for`].
    pub fn server_for_hash(&self, hash: u32) -> Option<usize> {
        if self.mode == RingMode::Rendezvous {
            return None;
        }
        if self.mode == RingMode::Modula {
            return (!self.servers.is_empty()).then(|| hash as usize % self.servers.len());
        }
        self.first_point_at(hash).map(|i| self.owners[i] as usize)
    }

    /// The index into the points of the first point `>= hash`, with wraparound.
    fn first_point_at(&self, hash: u32) -> Option<usize> {
        if self.values.is_empty() {
            return None;
        }
        let i = self.values.partition_point(|&v| v < hash);
        Some(if i == self.values.len() { 0 } else { i })
    }

    /// The first `n` distinct servers met walking the ring clockwise from `key`'s position.
    ///
    /// The first element equals [`Ring::server_for`]. The result has `min(n, len())` elements,
    /// so an `n` above the server count lists every server once. Servers that have no points at
    /// all (possible only with extreme weight ratios) are never met on the walk; they are
    /// appended at the end, in list order, when `n` asks for them.
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n.min(self.servers.len()));
        self.preference_list_into(key, n, &mut out);
        out
    }

    /// Like [`Ring::preference_list`], but fills `out` (cleared first) so a caller on a hot path
    /// can reuse one buffer. Allocates only when `n > 16` (a bitmap of visited servers).
    pub fn preference_list_into(&self, key: &[u8], n: usize, out: &mut Vec<usize>) {
        out.clear();
        let want = n.min(self.servers.len());
        if want == 0 {
            return;
        }
        if self.servers.len() == 1 {
            out.push(0);
            return;
        }
        if self.mode == RingMode::Modula {
            // The owner, then the servers after it in list order (libmemcached's replica
            // placement in this distribution), wrapping.
            let n = self.servers.len();
            let first = hash_one_at_a_time(key) as usize % n;
            out.extend((0..want).map(|i| (first + i) % n));
            return;
        }
        if self.mode == RingMode::Rendezvous {
            // The servers by descending score (pymemcache's owner first, then the owner it
            // would pick if that one were removed, and so on).
            let mut scored: Vec<(usize, u32)> = (0..self.servers.len())
                .map(|i| (i, self.score(i, key)))
                .collect();
            scored.sort_unstable_by(|&(a, sa), &(b, sb)| {
                sb.cmp(&sa)
                    .then_with(|| self.labels[b].cmp(&self.labels[a]))
            });
            out.extend(scored.iter().take(want).map(|&(i, _)| i));
            return;
        }
        let Some(start) = self.first_point_at(hash_key(key)) else {
            return;
        };
        let len = self.values.len();
        let mut seen = if want > 16 {
            vec![0u64; self.servers.len().div_ceil(64)]
        } else {
            Vec::new()
        };
        for step in 0..len {
            let mut at = start + step;
            if at >= len {
                at -= len;
            }
            let owner = self.owners[at] as usize;
            let new = if seen.is_empty() {
                !out.contains(&owner)
            } else {
                let (word, bit) = (owner / 64, 1u64 << (owner % 64));
                let fresh = seen[word] & bit == 0;
                seen[word] |= bit;
                fresh
            };
            if new {
                out.push(owner);
                if out.len() == want {
                    return;
                }
            }
        }
        // Every point was visited: the servers still missing own no points.
        for (index, &count) in self.counts.iter().enumerate() {
            if out.len() == want {
                break;
            }
            if count == 0 && !out.contains(&index) {
                out.push(index);
            }
        }
    }
}

/// Appends `n` in decimal (no padding), as libmemcached's `snprintf("%u")` writes it.
fn push_decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Point counts of the weighted layout, in f32 exactly as libmemcached computes them.
fn weighted_point_counts(servers: &[ServerSpec]) -> Vec<u32> {
    // libmemcached sums into a uint32_t; u64 avoids its wraparound on absurd weights and gives
    // the same float for every realistic configuration.
    let total: u64 = servers
        .iter()
        .map(|s| u64::from(s.effective_weight()))
        .sum();
    let n = servers.len() as f32;
    servers
        .iter()
        .map(|s| {
            let pct: f32 = s.effective_weight() as f32 / total as f32;
            let x: f32 = pct * POINTS_PER_SERVER_KETAMA / 4.0 * n + 1e-10_f32;
            (x.floor() as u32) * 4
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equal(n: usize) -> Vec<ServerSpec> {
        (0..n)
            .map(|i| ServerSpec::new(format!("10.0.{}.{}", i / 250, i % 250 + 1), 11211))
            .collect()
    }

    #[test]
    fn decimal_suffix() {
        for n in [0u32, 7, 10, 99, 100, 12345, u32::MAX] {
            let mut buf = b"x-".to_vec();
            push_decimal(&mut buf, n);
            assert_eq!(buf, format!("x-{n}").into_bytes());
        }
    }

    #[test]
    fn mode_names() {
        for mode in [RingMode::LibketamaCompatible, RingMode::KetamaMd5] {
            assert_eq!(mode.to_string().parse::<RingMode>().unwrap(), mode);
        }
        assert_eq!(RingMode::default(), RingMode::LibketamaCompatible);
        assert_eq!(
            RingMode::LibketamaCompatible.to_string(),
            "libketama_compatible"
        );
        assert_eq!(RingMode::KetamaMd5.to_string(), "ketama_md5");
        assert_eq!(
            "Ketama-MD5".parse::<RingMode>().unwrap(),
            RingMode::KetamaMd5
        );
        assert!(matches!(
            "ketama".parse::<RingMode>(),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn murmur3_matches_the_reference_and_can_be_fed_in_pieces() {
        // Reference values of MurmurHash3_x86_32 with seed 0.
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
        let data = b"127.0.0.1:11211-user:42:session:\x01\xfftail";
        for cut in 0..=data.len() {
            for cut2 in cut..=data.len() {
                let m = Murmur::default()
                    .feed(&data[..cut])
                    .feed(&data[cut..cut2])
                    .feed(&data[cut2..]);
                assert_eq!(m.finish(), murmur3_32(data), "cuts {cut} {cut2}");
            }
        }
        // pymemcache hashes a str by code point (low byte), not by UTF-8 byte.
        assert_eq!(hash_pymemcache("é".as_bytes()), murmur3_32(&[0xe9]));
        assert_eq!(hash_pymemcache("日".as_bytes()), murmur3_32(&[0xe5]));
    }

    #[test]
    fn libmemcached_settings_map_to_the_mode_that_places_keys_like_it() {
        use Distribution::*;
        let m = |d, h| RingMode::from_libmemcached(d, h).map_err(|e| e.kind());
        assert_eq!(
            m(ConsistentWeighted, "default"),
            Ok(RingMode::LibketamaCompatible)
        );
        assert_eq!(
            m(ConsistentWeighted, "crc"),
            Ok(RingMode::LibketamaCompatible)
        );
        assert_eq!(m(Consistent, "MD5"), Ok(RingMode::KetamaMd5));
        assert_eq!(m(Modula, "default"), Ok(RingMode::Modula));
        assert_eq!(m(Modula, "one_at_a_time"), Ok(RingMode::Modula));
        for (d, h) in [
            (Consistent, "default"),
            (Modula, "md5"),
            (Consistent, "murmur"),
        ] {
            assert_eq!(m(d, h), Err(crate::ErrorKind::Unsupported), "{d:?} {h}");
        }
        assert_eq!("ketama".parse::<Distribution>().unwrap(), Consistent);
        assert_eq!(
            "ketama_weighted".parse::<Distribution>().unwrap(),
            ConsistentWeighted
        );
        assert!("virtual_bucket".parse::<Distribution>().is_err());
    }

    #[test]
    fn label_rule() {
        assert_eq!(ServerSpec::new("192.0.2.11", 11211).label(), "192.0.2.11");
        assert_eq!(ServerSpec::new("192.0.2.11", 0).label(), "192.0.2.11");
        assert_eq!(
            ServerSpec::new("198.51.100.21", 11212).label(),
            "198.51.100.21:11212"
        );
        // A server on 11211 and the same host written with port 0 land on the same points.
        let a = Ring::new(
            &[ServerSpec::new("h", 11211), ServerSpec::new("x", 1)],
            RingMode::default(),
        );
        let b = Ring::new(
            &[ServerSpec::new("h", 0), ServerSpec::new("x", 1)],
            RingMode::default(),
        );
        assert!(a.points().eq(b.points()));
    }

    #[test]
    fn first_point_comes_from_label_dash_zero() {
        let ring = Ring::new(&[ServerSpec::new("192.0.2.11", 11211)], RingMode::default());
        let d = Md5::digest(b"192.0.2.11-0");
        let words: Vec<u32> = d
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let values: Vec<u32> = ring.points().map(|(v, _)| v).collect();
        for w in words {
            assert!(values.binary_search(&w).is_ok());
        }
    }

    #[test]
    fn weighted_counts_use_f32() {
        let servers: Vec<ServerSpec> = [4, 8, 5, 1, 7]
            .iter()
            .enumerate()
            .map(|(i, &w)| ServerSpec::new(format!("203.0.113.{}", 31 + i), 11211).with_weight(w))
            .collect();
        let ring = Ring::new(&servers, RingMode::LibketamaCompatible);
        assert_eq!(ring.points_per_server(), &[124, 252, 160, 28, 224]);
        assert_eq!(ring.total_points(), 124 + 252 + 160 + 28 + 224);
        // ketama_md5 with a weight > 1 switches to the weighted layout.
        let md5 = Ring::new(&servers, RingMode::KetamaMd5);
        assert!(md5.uses_weighted_layout());
        assert_eq!(md5.points_per_server(), ring.points_per_server());
        assert!(md5.points().eq(ring.points()));
    }

    #[test]
    fn equal_servers_get_156_at_some_counts() {
        let odd = [25, 47, 50, 55, 61, 71, 94, 100];
        for n in 2..=100 {
            let ring = Ring::new(&equal(n), RingMode::LibketamaCompatible);
            let expect = if odd.contains(&n) { 156 } else { 160 };
            assert!(
                ring.points_per_server().iter().all(|&c| c == expect),
                "{n} servers: {:?}",
                &ring.points_per_server()[..1]
            );
        }
        // Weight 0 means 1.
        let zero: Vec<ServerSpec> = equal(3).into_iter().map(|s| s.with_weight(0)).collect();
        assert_eq!(
            Ring::new(&zero, RingMode::default()).points_per_server(),
            &[160; 3]
        );
    }

    #[test]
    fn ketama_md5_unweighted_has_100_points() {
        let servers = equal(4);
        let ring = Ring::new(&servers, RingMode::KetamaMd5);
        assert!(!ring.uses_weighted_layout());
        assert_eq!(ring.points_per_server(), &[100; 4]);
        assert_eq!(ring.total_points(), 400);
        let first = Md5::digest(b"10.0.0.1-0");
        let v = u32::from_le_bytes([first[0], first[1], first[2], first[3]]);
        assert!(ring.points().any(|p| p == (v, 0)));
    }

    #[test]
    fn points_sorted_by_value_then_index() {
        // The same host twice produces identical points: the earlier index must come first.
        let servers = [ServerSpec::new("dup", 11211), ServerSpec::new("dup", 11211)];
        let ring = Ring::new(&servers, RingMode::default());
        let pts: Vec<(u32, usize)> = ring.points().collect();
        assert!(pts.windows(2).all(|w| w[0] <= w[1]));
        for key in ["a", "b", "c", "user:1", "wrap"] {
            assert_eq!(ring.server_for(key.as_bytes()), Some(0));
            assert_eq!(ring.preference_list(key.as_bytes(), 5), vec![0, 1]);
        }
    }

    #[test]
    fn lookup_is_lower_bound_with_wraparound() {
        let ring = Ring::new(&equal(3), RingMode::default());
        let pts: Vec<(u32, usize)> = ring.points().collect();
        let (first_v, first_o) = pts[0];
        let (last_v, _) = *pts.last().unwrap();
        assert_eq!(ring.server_for_hash(0), Some(first_o));
        assert_eq!(ring.server_for_hash(first_v), Some(first_o));
        if last_v < u32::MAX {
            assert_eq!(ring.server_for_hash(last_v + 1), Some(first_o));
        }
        for w in pts.windows(2) {
            if w[0].0 < w[1].0 {
                assert_eq!(ring.server_for_hash(w[0].0 + 1), Some(w[1].1));
                assert_eq!(ring.server_for_hash(w[1].0), Some(w[1].1));
            }
        }
    }

    #[test]
    fn empty_ring() {
        let ring = Ring::new(&[], RingMode::default());
        assert!(ring.is_empty());
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.server_for(b"k"), None);
        assert_eq!(ring.server_for_hash(7), None);
        assert!(ring.preference_list(b"k", 3).is_empty());
        assert!(ring.points_per_server().is_empty());
    }

    #[test]
    fn single_server() {
        let ring = Ring::new(&[ServerSpec::new("only", 1)], RingMode::default());
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.points_per_server(), &[160]);
        for key in ["", "a", "zzz"] {
            assert_eq!(ring.server_for(key.as_bytes()), Some(0));
            assert_eq!(ring.preference_list(key.as_bytes(), 3), vec![0]);
        }
        assert!(ring.preference_list(b"a", 0).is_empty());
    }

    #[test]
    fn preference_list_properties() {
        let servers = equal(40);
        let ring = Ring::new(&servers, RingMode::default());
        for k in 0..300 {
            let key = format!("key:{k}");
            let primary = ring.server_for(key.as_bytes()).unwrap();
            for n in [1, 2, 3, 17, 40, 60] {
                let list = ring.preference_list(key.as_bytes(), n);
                assert_eq!(list.len(), n.min(40));
                assert_eq!(list[0], primary);
                let mut sorted = list.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), list.len(), "duplicates in {list:?}");
            }
            // Shorter lists are prefixes of longer ones.
            let long = ring.preference_list(key.as_bytes(), 40);
            assert_eq!(ring.preference_list(key.as_bytes(), 3), long[..3]);
            assert_eq!(ring.preference_list(key.as_bytes(), 20), long[..20]);
        }
    }

    #[test]
    fn preference_list_follows_the_ring() {
        // The second choice is the owner once the first is removed (equal weights keep the
        // other servers' points unchanged from 4 to 3 servers: 160 each).
        let servers = equal(4);
        let ring = Ring::new(&servers, RingMode::default());
        for k in 0..500 {
            let key = format!("k{k}");
            let list = ring.preference_list(key.as_bytes(), 2);
            let rest: Vec<ServerSpec> = servers
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != list[0])
                .map(|(_, s)| s.clone())
                .collect();
            let smaller = Ring::new(&rest, RingMode::default());
            let owner = &rest[smaller.server_for(key.as_bytes()).unwrap()];
            assert_eq!(owner, &servers[list[1]]);
        }
    }

    #[test]
    fn zero_point_servers_are_appended() {
        // Weight ratio so extreme that the light server gets no points.
        let servers = [
            ServerSpec::new("heavy", 1).with_weight(10_000),
            ServerSpec::new("light", 2),
        ];
        let ring = Ring::new(&servers, RingMode::default());
        assert_eq!(ring.points_per_server()[1], 0);
        assert_eq!(ring.preference_list(b"x", 2), vec![0, 1]);
        assert_eq!(ring.preference_list(b"x", 1), vec![0]);
    }

    #[test]
    fn large_ring_builds() {
        let ring = Ring::new(&equal(1000), RingMode::default());
        assert_eq!(ring.len(), 1000);
        assert_eq!(
            ring.total_points(),
            ring.points_per_server()
                .iter()
                .map(|&c| c as usize)
                .sum::<usize>()
        );
        let list = ring.preference_list(b"k", 1000);
        assert_eq!(list.len(), 1000);
    }
}
