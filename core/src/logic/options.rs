//! Per-call options.

use std::time::Duration;

/// Options of a store: expiration and client flags.
///
/// A bare number converts into it as the TTL, so `client.set("k", "v", 60)` stores for a minute
/// and `client.set("k", "v", StoreOptions::ttl(60).flags(2))` also sets flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// memcached's exptime: 0 never expires, up to 30 days is relative seconds, more is a Unix
    /// timestamp (that is memcached's rule, passed through as is).
    pub ttl: u32,
    /// Client flags stored with the value (type/serializer bits, by convention).
    pub flags: u32,
}

impl StoreOptions {
    /// Options with this TTL and no flags.
    pub fn ttl(ttl: u32) -> Self {
        StoreOptions { ttl, flags: 0 }
    }

    /// Set the client flags.
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
}

impl From<u32> for StoreOptions {
    fn from(ttl: u32) -> Self {
        StoreOptions::ttl(ttl)
    }
}

impl From<Duration> for StoreOptions {
    /// Whole seconds, rounded up so a sub-second TTL does not become "never expires".
    fn from(d: Duration) -> Self {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        StoreOptions::ttl(u32::try_from(secs).unwrap_or(u32::MAX))
    }
}
