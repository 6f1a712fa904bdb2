//! The waiter `as_completed` and `map_unordered` install: it queues the ids of completed
//! futures, in completion order, and wakes the consuming thread (Python's
//! `_AsCompletedWaiter`).
//!
//! # Protocol
//!
//! `ids` and `thread` live under one mutex. A notifier pushes the id and, if the queue was
//! empty and a consumer registered its thread, unparks it. The consumer registers its
//! thread (in `before_park`) only after checking, under the same lock, that the queue is
//! empty; so a push after that check sees the registration and unparks it: no lost
//! wake-up. `nonempty` mirrors `!ids.is_empty()` (written under the lock) so that the
//! consumer's spin loop polls an atomic, not the mutex.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::Instant;

use cfutures_core::blocking;
use cfutures_core::{Completion, FutureId, Waiter};

#[derive(Default)]
struct Inner {
    ids: Vec<FutureId>,
    thread: Option<Thread>,
}

#[derive(Default)]
pub(crate) struct QueueWaiter {
    inner: Mutex<Inner>,
    nonempty: AtomicBool,
}

impl QueueWaiter {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding this lock; a poisoned lock still guards valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the queued ids (completion order) into `out`; false if there were none.
    pub(crate) fn take(&self, out: &mut Vec<FutureId>) -> bool {
        // Acquire: pairs with the Release store in `notify`; an empty queue skips the lock.
        if !self.nonempty.load(Ordering::Acquire) {
            return false;
        }
        let mut g = self.lock();
        out.append(&mut g.ids);
        // Relaxed: written under the lock, which orders it with the pushes.
        self.nonempty.store(false, Ordering::Relaxed);
        !out.is_empty()
    }

    /// Takes the queued ids into `out`, blocking until there are some or `deadline` passes;
    /// false if it passed with none.
    pub(crate) fn take_until(&self, out: &mut Vec<FutureId>, deadline: Option<Instant>) -> bool {
        self.take(out) || (self.block(deadline) && self.take(out))
    }

    /// Blocks until something is queued or `deadline` passes; true if something is queued.
    fn block(&self, deadline: Option<Instant>) -> bool {
        blocking::block_until(
            deadline,
            // Acquire: see `take`.
            || self.nonempty.load(Ordering::Acquire),
            || {
                let mut g = self.lock();
                if !g.ids.is_empty() {
                    return false;
                }
                g.thread = Some(std::thread::current());
                true
            },
            || self.lock().thread = None,
        )
    }
}

impl Waiter for QueueWaiter {
    fn notify(&self, id: FutureId, _completion: Completion) {
        let wake = {
            let mut g = self.lock();
            g.ids.push(id);
            // Release: the consumer that sees `nonempty` then takes the lock anyway; Release
            // keeps the spin-loop check honest.
            self.nonempty.store(true, Ordering::Release);
            if g.ids.len() == 1 {
                g.thread.clone()
            } else {
                None
            }
        };
        if let Some(t) = wake {
            t.unpark();
        }
    }
}
