//! Counters a client keeps per server: readable at any time, cheap to update (relaxed atomics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one server.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    repairs: AtomicU64,
    stale: AtomicU64,
}

/// A snapshot of counters (of one server, or summed over all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Reads that found the key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Stores the server confirmed.
    pub sets: u64,
    /// Calls that failed on the server's side (timeouts, broken connections, refused
    /// connections, protocol violations, server errors).
    pub errors: u64,
    /// Of those, timeouts.
    pub timeouts: u64,
    /// Times the server was marked down.
    pub down_events: u64,
    /// Replicated reads that wrote the winning value back to this server.
    pub repairs: u64,
    /// Replicated reads where this server's copy was missing or older than the winner.
    pub stale: u64,
    /// Replicated reads whose replicas disagreed (in the total only: one per read).
    pub disagreements: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.sets += o.sets;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.down_events += o.down_events;
        self.repairs += o.repairs;
        self.stale += o.stale;
        self.disagreements += o.disagreements;
    }
}

impl ServerMetrics {
    /// Count a read's result.
    pub fn read(&self, hit: bool) {
        if hit { &self.hits } else { &self.misses }.fetch_add(1, Relaxed);
    }

    /// Count a confirmed store.
    pub fn set(&self) {
        self.sets.fetch_add(1, Relaxed);
    }

    /// Count a server-side failure.
    pub fn error(&self, timeout: bool) {
        self.errors.fetch_add(1, Relaxed);
        if timeout {
            self.timeouts.fetch_add(1, Relaxed);
        }
    }

    /// Count a repair written to this server.
    pub fn repair(&self) {
        self.repairs.fetch_add(1, Relaxed);
    }

    /// Count a stale or missing copy found on this server.
    pub fn stale(&self) {
        self.stale.fetch_add(1, Relaxed);
    }

    /// A snapshot; `down_events` comes from the server's health.
    pub fn snapshot(&self, down_events: u64) -> Counters {
        Counters {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            sets: self.sets.load(Relaxed),
            errors: self.errors.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            down_events,
            repairs: self.repairs.load(Relaxed),
            stale: self.stale.load(Relaxed),
            disagreements: 0,
        }
    }
}

/// Every server's counters and their total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// `(host:port, counters)` in configuration order.
    pub servers: Vec<(String, Counters)>,
    /// The sum over servers, plus replica disagreements.
    pub total: Counters,
}
