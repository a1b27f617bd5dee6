//! Fork safety: what a client holds for one process is never used by another.
//!
//! uwsgi without `lazy-apps`, `gunicorn --preload`, Celery's prefork pool, `multiprocessing`
//! with the fork start method and PHP's `pcntl_fork` all fork after the application's client
//! has connected. A child that reuses its parent's sockets reads replies meant for the parent
//! (another key's value, another user's session) and desynchronises the parent's connections;
//! pylibmc and PECL memcached do exactly that.
//!
//! The rule here: every piece of state that belongs to one process (pooled connections,
//! connection tasks, per-server health and counters, in-process single flights) lives in a
//! `PerProcess` cell, stamped with the process's fork [`generation`]. A `fork()` bumps the
//! generation in the child (a `pthread_atfork` handler, registered when the first client is
//! built, so every binding gets it without doing anything). The child's first call then sees
//! a stale stamp and builds fresh state: its own connections, opened on first use, and a
//! clean health record. The parent's state is never used by the child: idle sockets the child
//! can take without waiting are closed (`close(2)` on a descriptor the parent still holds
//! sends nothing to the server), everything else is left alone, since a lock or a connection
//! task of the parent may have been in use by a thread that does not exist in the child.
//! Nothing is ever written to a parent's socket by the child, and the parent's own state does
//! not change, so the parent keeps working.
//!
//! The generation is one relaxed-cost atomic load per call; no `getpid()` system call.

//! The generation and the per-process cell are the logic layer's
//! ([`crate::logic::process`], re-exported here); this module registers the hook.

pub(crate) use crate::logic::process::PerProcess;
pub use crate::logic::process::{generation, note_fork};

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock.
    note_fork();
}

/// Register the `pthread_atfork` child handler, once per process.
pub(crate) fn install() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: registering a handler with no prepare/parent hooks; the child hook only
            // performs an atomic add, which is async-signal-safe as a fork handler must be.
            unsafe {
                libc::pthread_atfork(None, None, Some(after_fork_in_child));
            }
        });
    }
}
