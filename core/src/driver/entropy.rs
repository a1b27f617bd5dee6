//! The drivers' randomness: writer ids and lock owner tokens. The logic layer draws none
//! (its machines take seeds); hosts without OS randomness (WASM) bring their own.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering as MemOrder};

/// A new random, non-zero writer id for a client instance.
///
/// Source: std's `RandomState`, whose SipHash keys come from the operating system's random
/// generator (getrandom and its equivalents), hashing a process-wide counter, the process id and
/// the thread id. No extra dependency, and no clock read. Two ids collide with probability
/// about n²/2⁶⁵ for n clients; a collision only matters when the two also stamp the same
/// timestamp, and even then the raw-bytes tie-break keeps every reader agreeing.
///
/// On targets without OS randomness (`wasm32-unknown-unknown`), std's keys are fixed, so this
/// function would give every instance the same id sequence: there, the binding must supply the
/// id from the platform's generator (JS `crypto.getRandomValues`), non-zero.
pub fn new_writer_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut h = RandomState::new().build_hasher();
        COUNTER.fetch_add(1, MemOrder::Relaxed).hash(&mut h);
        // No process id on wasm32-unknown-unknown (it panics there), and RandomState's keys
        // are fixed: WASM hosts must supply their own random writer id.
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        std::process::id().hash(&mut h);
        std::thread::current().id().hash(&mut h);
        let id = h.finish();
        if id != 0 {
            return id;
        }
    }
}

/// A lock owner token: unique per process and call (a random process part and a counter).
pub fn owner_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let p = *PROCESS.get_or_init(new_writer_id);
    crate::logic::recipe::owner_token_from(p, NEXT.fetch_add(1, MemOrder::Relaxed))
}
