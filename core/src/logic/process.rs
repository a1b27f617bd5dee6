//! Per-process state: the fork generation and the `PerProcess` cell every client keeps its
//! connections, health and flights in. The generation is bumped in a fork child by the
//! driver layer's `pthread_atfork` hook ([`crate::fork`], which explains the rule) or by a
//! binding's own after-fork hook ([`note_fork`]); reading it is one atomic load.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The fork generation of this process: 0 in the original process, changed in every child
/// created by `fork()` after the first client was built (or after [`note_fork`]).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Tell multiput that this process is a fork child. Not needed after the C library's
/// `fork()` (multiput registers a `pthread_atfork` handler itself); for bindings that have
/// their own after-fork hook (Python's `os.register_at_fork`) and for processes created by a
/// raw `clone` system call. Calling it more than once per fork is harmless: the next call of
/// every client just opens fresh connections.
pub fn note_fork() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

struct Stamped<T> {
    generation: u64,
    value: T,
}

/// A value that belongs to one process: after a fork, the child gets a fresh one.
///
/// [`PerProcess::get`] returns the value of the calling process, building a new one when the
/// stored one was made before a fork. The parent's value is then handed to a `retire`
/// function (to close what can be closed without waiting) and leaked, never dropped: a
/// thread of the parent may have held one of its locks at the moment of the fork, and that
/// thread does not exist in the child, so neither its locks nor its data can be trusted.
/// The leak is one value per client per fork, in the child only.
pub(crate) struct PerProcess<T> {
    current: AtomicPtr<Stamped<T>>,
}

// SAFETY: the cell hands out `&T` to any thread; it owns a `T` and drops it on the thread that
// drops the cell, exactly like a `Box<T>` shared through an `Arc`.
unsafe impl<T: Send + Sync> Send for PerProcess<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for PerProcess<T> {}

impl<T> PerProcess<T> {
    /// A cell holding `value` for the current process. (The clients install the fork hook
    /// that moves the generation, `crate::fork::install`, before they build their cells.)
    pub fn new(value: T) -> Self {
        let b = Box::new(Stamped {
            generation: generation(),
            value,
        });
        PerProcess {
            current: AtomicPtr::new(Box::into_raw(b)),
        }
    }

    /// The value of the calling process. After a fork, `fresh` builds the child's value and
    /// `retire` is given the parent's (see the type's docs) before it is leaked.
    #[inline]
    pub fn get(&self, fresh: impl Fn() -> T, retire: impl Fn(&T)) -> &T {
        self.get_at(generation, fresh, retire)
    }

    /// [`PerProcess::get`] with the generation read from `now` (tests pass their own).
    #[inline]
    fn get_at(&self, now: impl Fn() -> u64, fresh: impl Fn() -> T, retire: impl Fn(&T)) -> &T {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: `current` always points to a live `Stamped<T>`: the pointer is replaced only
        // by `renew`, which leaks the old value instead of freeing it, and the value is freed
        // only in `drop`, which has `&mut self`.
        let cur = unsafe { &*p };
        if cur.generation == now() {
            return &cur.value;
        }
        self.renew(now, fresh, retire)
    }

    #[cold]
    fn renew(&self, now: impl Fn() -> u64, fresh: impl Fn() -> T, retire: impl Fn(&T)) -> &T {
        loop {
            let g = now();
            let p = self.current.load(Ordering::Acquire);
            // SAFETY: see `get`.
            let cur = unsafe { &*p };
            if cur.generation == g {
                return &cur.value;
            }
            let new = Box::into_raw(Box::new(Stamped {
                generation: g,
                value: fresh(),
            }));
            match self
                .current
                .compare_exchange(p, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // The parent's value: retired, then leaked on purpose (never freed).
                    retire(&cur.value);
                }
                Err(_) => {
                    // Another thread of the child won; ours was never shared.
                    // SAFETY: `new` came from `Box::into_raw` above and was not published.
                    drop(unsafe { Box::from_raw(new) });
                }
            }
        }
    }
}

impl<T> Drop for PerProcess<T> {
    fn drop(&mut self) {
        let p = *self.current.get_mut();
        // SAFETY: the pointer came from `Box::into_raw` and is still owned by this cell.
        let stamped = unsafe { Box::from_raw(p) };
        if stamped.generation != generation() {
            // Built by the parent before a fork and never renewed in this child: it is not
            // this process's to tear down (its connection tasks, its locks).
            std::mem::forget(stamped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_new_generation_gets_a_fresh_value_and_retires_the_old_one() {
        // The process-wide generation is left alone: other tests run in this process.
        let generation = std::sync::atomic::AtomicU64::new(super::generation());
        let now = || generation.load(Ordering::Relaxed);
        let cell = PerProcess::new(1u32);
        let made = AtomicUsize::new(0);
        let retired = AtomicUsize::new(0);
        let fresh = || {
            made.fetch_add(1, Ordering::Relaxed);
            2u32
        };
        let retire = |v: &u32| {
            assert_eq!(*v, 1);
            retired.fetch_add(1, Ordering::Relaxed);
        };
        assert_eq!(*cell.get_at(now, fresh, retire), 1);
        assert_eq!(made.load(Ordering::Relaxed), 0);
        generation.fetch_add(1, Ordering::Relaxed);
        assert_eq!(*cell.get_at(now, fresh, retire), 2);
        assert_eq!(*cell.get_at(now, fresh, retire), 2);
        assert_eq!(made.load(Ordering::Relaxed), 1);
        assert_eq!(retired.load(Ordering::Relaxed), 1);
    }
}
