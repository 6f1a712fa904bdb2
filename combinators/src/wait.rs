//! [`wait`]: block until some or all of a set of futures complete (Python's
//! `concurrent.futures.wait`).

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use cfutures_core::blocking;
use cfutures_core::{Completion, FutureId, Waitable, Waiter, WaiterKey};

use crate::hash::FutureSet;

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any future completes (or is cancelled and its executor noticed).
    FirstCompleted,
    /// As soon as any future fails; if none fails, when all have completed.
    FirstException,
    /// When all futures have completed. The default, as in Python.
    #[default]
    AllCompleted,
}

/// What [`wait`] returns: the futures that completed and those that did not (Python's
/// `DoneAndNotDoneFutures` named tuple). Together they are exactly the distinct futures
/// that were passed in.
///
/// The sets are [`FutureSet`]s: `HashSet`s with a hasher suited to futures (see
/// [`FutureHasher`](crate::FutureHasher)); `contains`, `len`, iteration and the set
/// operations work as usual, and `.into_iter().collect::<HashSet<_>>()` gives a
/// `std` default-hasher set if you need one.
#[derive(Debug)]
pub struct DoneAndNotDone<F> {
    /// Futures that finished (with a value or a failure), or were cancelled and their
    /// executor noticed.
    pub done: FutureSet<F>,
    /// The others: pending, running, or cancelled but not yet noticed by their executor.
    pub not_done: FutureSet<F>,
}

impl<F> Default for DoneAndNotDone<F> {
    fn default() -> Self {
        DoneAndNotDone {
            done: FutureSet::default(),
            not_done: FutureSet::default(),
        }
    }
}

/// Python's `_FirstCompletedWaiter` and `_AllCompletedWaiter` in one: counts completions and
/// fires (sets `fired`, unparks the waiting thread) when the condition is met.
struct WaitWaiter {
    thread: Thread,
    return_when: ReturnWhen,
    /// Futures not yet notified; 0 means all of them completed.
    remaining: AtomicUsize,
    fired: AtomicBool,
}

impl Waiter for WaitWaiter {
    fn notify(&self, _id: FutureId, completion: Completion) {
        // AcqRel: the last decrement must see the earlier ones; the waiting thread reads
        // `remaining` with Acquire after `fired`.
        let last = self.remaining.fetch_sub(1, Ordering::AcqRel) == 1;
        let fire = last
            || match self.return_when {
                ReturnWhen::FirstCompleted => true,
                ReturnWhen::FirstException => completion == Completion::Failed,
                ReturnWhen::AllCompleted => false,
            };
        // AcqRel on the swap: Release publishes the decrement above to the waiting thread,
        // which loads `fired` with Acquire; only the first firing unparks.
        if fire && !self.fired.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

/// Waits for `futures` to complete as `return_when` says, at most `timeout`; returns which
/// are done and which are not (Python's `concurrent.futures.wait`).
///
/// Python's rules, exactly:
///
/// * Duplicates collapse: each distinct future appears once in the result.
/// * Futures already complete count; if that satisfies `return_when` (or everything is
///   complete, including the empty input) it returns at once without installing anything.
/// * "Complete" means finished (with a value or a failure), or cancelled **and noticed by
///   its executor**. A future cancelled while still queued is `done()` but stays in
///   `not_done` until its executor notices (Python's `CANCELLED` vs
///   `CANCELLED_AND_NOTIFIED`).
/// * A timeout is not an error: it returns what is done so far.
/// * [`ReturnWhen::FirstException`] with no failure waits for all; futures that finished
///   with a value before the failure are in `done` too. [`ReturnWhen::FirstCompleted`] may
///   return more than one done future.
///
/// The handles can be any [`Waitable`] that is `Eq + Hash`: [`Future<T>`] for one result
/// type, or [`AnyFuture`] to mix result types and executors.
///
/// Cost: O(n) for n futures: one set built from the input (it becomes `done`), one pass to
/// look, one to install a waiter on each pending future, and — unless all completed — one
/// to remove the waiters and move the unfinished futures to `not_done`.
///
/// [`Future<T>`]: cfutures_core::Future
/// [`AnyFuture`]: cfutures_core::AnyFuture
///
/// # Examples
///
/// ```
/// use cfutures_combinators::{wait, ReturnWhen};
/// use cfutures_core::{pending, Future};
/// use std::time::Duration;
///
/// let ready = Future::ready(1);
/// let (promise, slow) = pending::<i32>();
///
/// // A timeout just returns what is done.
/// let r = wait([ready.clone(), slow.clone()], Some(Duration::from_millis(10)), ReturnWhen::AllCompleted);
/// assert!(r.done.contains(&ready) && r.not_done.contains(&slow));
///
/// let t = std::thread::spawn(move || promise.set_result(2).unwrap());
/// let r = wait([ready, slow], None, ReturnWhen::AllCompleted);
/// assert_eq!(r.done.len(), 2);
/// assert!(r.not_done.is_empty());
/// t.join().unwrap();
/// ```
///
/// Futures of different result types, together:
///
/// ```
/// use cfutures_combinators::{wait, ReturnWhen};
/// use cfutures_core::{AnyFuture, Future};
///
/// let a = Future::ready(1u8).erase();
/// let b = Future::ready("two").erase();
/// let r = wait([a, b], None, ReturnWhen::FirstCompleted);
/// assert_eq!(r.done.len(), 2);
/// ```
pub fn wait<I, F>(
    futures: I,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> DoneAndNotDone<F>
where
    I: IntoIterator<Item = F>,
    F: Waitable + Clone + Eq + Hash,
{
    let deadline = timeout.and_then(blocking::deadline_after);

    // 1. Dedup into the set that becomes `done` (Python: `fs = set(fs)`), then look: which
    //    are complete already. `was_done` follows the set's iteration order, which is
    //    stable while the set is not modified.
    let iter = futures.into_iter();
    let mut all = FutureSet::with_capacity_and_hasher(iter.size_hint().0, Default::default());
    all.extend(iter);
    let mut was_done = Vec::with_capacity(all.len());
    let (mut n_done, mut any_failed) = (0, false);
    for f in &all {
        let c = f.completion();
        any_failed |= c == Some(Completion::Failed);
        n_done += usize::from(c.is_some());
        was_done.push(c.is_some());
    }
    let mut n_pending = all.len() - n_done;

    // 2. Fast returns (Python: still under the locks, before installing waiters).
    if n_pending == 0 {
        return DoneAndNotDone {
            done: all,
            not_done: FutureSet::default(),
        };
    }
    let satisfied = match return_when {
        ReturnWhen::FirstCompleted => n_done > 0,
        ReturnWhen::FirstException => any_failed,
        ReturnWhen::AllCompleted => false,
    };
    if satisfied {
        return split(all, &[]);
    }

    // 3a. ALL_COMPLETED needs no waiter: wait for each pending future in turn. Each wait
    //     is short or parks once (the others complete meanwhile), so this is O(n) in total,
    //     and it avoids the cost of installing and notifying a waiter on every future.
    //     A future cancelled but not yet noticed is `done()` yet not complete for waiting:
    //     those (rare) fall through to the waiter path below.
    if return_when == ReturnWhen::AllCompleted {
        let mut unnoticed = false;
        for (f, &done) in all.iter().zip(&was_done) {
            if done {
                continue;
            }
            if !f.wait_deadline(deadline) {
                // Timed out: return what is done now.
                return split(all, &[]);
            }
            unnoticed |= f.completion().is_none();
        }
        if !unnoticed {
            return DoneAndNotDone {
                done: all,
                not_done: FutureSet::default(),
            };
        }
        n_pending = 0;
        for (f, done) in all.iter().zip(was_done.iter_mut()) {
            *done = f.completion().is_some();
            n_pending += usize::from(!*done);
        }
        if n_pending == 0 {
            return DoneAndNotDone {
                done: all,
                not_done: FutureSet::default(),
            };
        }
    }

    // 3. Install one waiter on every pending future. A future that completed since step 1
    //    is counted as if it had notified.
    let waiter = Arc::new(WaitWaiter {
        thread: std::thread::current(),
        return_when,
        remaining: AtomicUsize::new(n_pending),
        fired: AtomicBool::new(false),
    });
    let as_dyn: Arc<dyn Waiter> = waiter.clone();
    let mut keys: Vec<Option<WaiterKey>> = Vec::with_capacity(all.len());
    for (f, &done) in all.iter().zip(&was_done) {
        // Acquire: see `notify`. Once fired, the rest need no waiter: they are sorted below.
        if done || waiter.fired.load(Ordering::Acquire) {
            keys.push(None);
            continue;
        }
        match f.install_waiter(&as_dyn) {
            Ok(key) => keys.push(Some(key)),
            Err(c) => {
                keys.push(None);
                waiter.notify(f.id(), c);
            }
        }
    }

    // 4. Block until fired or the deadline.
    blocking::block_until(
        deadline,
        || waiter.fired.load(Ordering::Acquire),
        || !waiter.fired.load(Ordering::Acquire),
        || {},
    );

    // 5. All notified (every installation already fired and freed its slot): all done.
    //    Otherwise remove the waiter from each future and sort by completion.
    if waiter.remaining.load(Ordering::Acquire) == 0 {
        return DoneAndNotDone {
            done: all,
            not_done: FutureSet::default(),
        };
    }
    split(all, &keys)
}

/// Removes the waiter installations in `keys` (in `all`'s iteration order; may be shorter),
/// then splits `all` into the complete futures and the others.
fn split<F>(mut all: FutureSet<F>, keys: &[Option<WaiterKey>]) -> DoneAndNotDone<F>
where
    F: Waitable + Clone + Eq + Hash,
{
    let mut not_done = FutureSet::default();
    let mut keys = keys.iter();
    for f in &all {
        if let Some(Some(key)) = keys.next() {
            f.remove_waiter(*key);
        }
        if f.completion().is_none() {
            not_done.insert(f.clone());
        }
    }
    for f in &not_done {
        all.remove(f);
    }
    DoneAndNotDone {
        done: all,
        not_done,
    }
}
