//! [`wait`]: block until some or all of a set of futures complete (Python's
//! `concurrent.futures.wait`).

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use cfutures_core::blocking::{self, WaitFor};
use cfutures_core::{Completion, Deadlock, FutureId, Waitable, Waiter, WaiterKey};

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

impl ReturnWhen {
    /// Whether one future completing as `c` is enough to return (for `AllCompleted`, only
    /// the last one is).
    fn satisfied_by(self, c: Completion) -> bool {
        match self {
            ReturnWhen::FirstCompleted => true,
            ReturnWhen::FirstException => c == Completion::Failed,
            ReturnWhen::AllCompleted => false,
        }
    }
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
    /// Set when `wait` returned early because waiting would never end: this thread runs a
    /// task that a future in `not_done`, directly or through other waiting tasks, waits on
    /// (a wait cycle; see [`cfutures_core::Error::Deadlock`]). Python hangs.
    pub deadlock: Option<Deadlock>,
}

impl<F> Default for DoneAndNotDone<F> {
    fn default() -> Self {
        DoneAndNotDone {
            done: FutureSet::default(),
            not_done: FutureSet::default(),
            deadlock: None,
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
        let fire = last || self.return_when.satisfied_by(completion);
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
///   complete, including the empty input) it returns at once, without blocking.
/// * "Complete" means finished (with a value or a failure), or cancelled **and noticed by
///   its executor**. A future cancelled while still queued is `done()` but stays in
///   `not_done` until its executor notices (Python's `CANCELLED` vs
///   `CANCELLED_AND_NOTIFIED`).
/// * A timeout is not an error: it returns what is done so far.
/// * Unlike Python, a wait that would never end — called from a task that the futures
///   waited on, directly or through other waiting tasks, wait on themselves — returns at
///   once with what is done so far and [`DoneAndNotDone::deadlock`] set.
/// * [`ReturnWhen::FirstException`] with no failure waits for all; futures that finished
///   with a value before the failure are in `done` too. [`ReturnWhen::FirstCompleted`] may
///   return more than one done future.
///
/// The handles can be any [`Waitable`] that is `Eq + Hash`: [`Future<T>`] for one result
/// type, or [`AnyFuture`] to mix result types and executors.
///
/// Cost: O(n) for n futures: one set built from the input (it becomes `done`), one pass
/// that installs a waiter on each pending future (a complete one costs a load: no lock, no
/// allocation), and — unless all completed — one to remove the waiters and move the
/// unfinished futures to `not_done`.
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

    // 1. Dedup into the set that becomes `done` (Python: `fs = set(fs)`). Hashing is by
    //    address: this does not look at the futures' state.
    let iter = futures.into_iter();
    let mut all = FutureSet::with_capacity_and_hasher(iter.size_hint().0, Default::default());
    all.extend(iter);
    if all.is_empty() {
        return DoneAndNotDone::default();
    }

    // 2. ALL_COMPLETED needs no waiter: wait for each future in turn (a done one costs a
    //    load). Each wait is short or parks once (the others complete meanwhile), so this
    //    is O(n) in total, and it avoids installing and notifying a waiter on every
    //    future. A future cancelled but not yet noticed is `done()` yet not complete for
    //    waiting: those (rare) fall through to the waiter path below.
    if return_when == ReturnWhen::AllCompleted {
        let mut unnoticed = false;
        for f in &all {
            match f.try_wait_deadline(deadline) {
                Ok(true) => {}
                // Timed out: return what is done now.
                Ok(false) => return split(all, &[]),
                Err(cycle) => {
                    let mut r = split(all, &[]);
                    r.deadlock = Some(cycle);
                    return r;
                }
            }
            unnoticed |= f.completion().is_none();
        }
        if !unnoticed {
            return DoneAndNotDone {
                done: all,
                not_done: FutureSet::default(),
                deadlock: None,
            };
        }
    }

    // 3. One pass: install one waiter on every future not complete, and count the complete
    //    ones (installing looks at the state first, so those take no lock and no
    //    notification). Once the condition holds the rest need no waiter: they are sorted
    //    at the end. So a `return_when` already satisfied by the futures as given returns
    //    at once, as Python's check before installing anything, having installed only on
    //    the futures before the first that satisfied it.
    let waiter = Arc::new(WaitWaiter {
        thread: std::thread::current(),
        return_when,
        remaining: AtomicUsize::new(all.len()),
        fired: AtomicBool::new(false),
    });
    let as_dyn: Arc<dyn Waiter> = waiter.clone();
    // (position in `all`'s iteration order, key) of each installation.
    let mut keys: Vec<(usize, WaiterKey)> = Vec::new();
    let mut complete = 0;
    let mut satisfied = false;
    for (pos, f) in all.iter().enumerate() {
        // Acquire: see `notify`.
        if waiter.fired.load(Ordering::Acquire) {
            break;
        }
        // A complete future refuses the installation with its completion, without a lock.
        match f.install_waiter(&as_dyn) {
            Ok(key) => {
                if keys.capacity() == 0 {
                    keys.reserve(all.len() - pos);
                }
                keys.push((pos, key));
            }
            Err(c) => {
                complete += 1;
                satisfied = return_when.satisfied_by(c);
                if satisfied {
                    break;
                }
            }
        }
    }
    // The complete ones count as notified, all at once. `remaining` started at every
    // future, so no notification could have seen itself last while these were uncounted;
    // if this brings it to 0, every installation has notified already and all are done.
    if !satisfied && complete > 0 {
        // AcqRel: as a notification's decrement (see `notify`).
        satisfied = waiter.remaining.fetch_sub(complete, Ordering::AcqRel) == complete;
    }

    // 4. Block until fired or the deadline. The futures still pending are what this thread
    //    waits on (listed only if a wait cycle is looked for: see `blocking::block_on`).
    let mut cycle = None;
    if !satisfied {
        let pending = |visit: &mut dyn FnMut(FutureId) -> bool| {
            for f in all.iter().filter(|f| f.completion().is_none()) {
                if !visit(f.id()) {
                    break;
                }
            }
        };
        let wait_for = match return_when {
            ReturnWhen::AllCompleted => WaitFor::All(&pending),
            // FIRST_EXCEPTION may end at any failure: for cycles it counts as "any".
            ReturnWhen::FirstCompleted | ReturnWhen::FirstException => WaitFor::Any(&pending),
        };
        cycle = blocking::block_on(
            deadline,
            wait_for,
            || waiter.fired.load(Ordering::Acquire),
            || !waiter.fired.load(Ordering::Acquire),
            || {},
        )
        .err();
    }

    // 5. All notified (every installation already fired and freed its slot): all done.
    //    Otherwise remove the waiter from each future and sort by completion.
    if waiter.remaining.load(Ordering::Acquire) == 0 {
        return DoneAndNotDone {
            done: all,
            not_done: FutureSet::default(),
            deadlock: None,
        };
    }
    let mut r = split(all, &keys);
    r.deadlock = cycle;
    r
}

/// Removes the waiter installations in `keys` (position in `all`'s iteration order, key),
/// then splits `all` into the complete futures and the others.
fn split<F>(mut all: FutureSet<F>, keys: &[(usize, WaiterKey)]) -> DoneAndNotDone<F>
where
    F: Waitable + Clone + Eq + Hash,
{
    let mut not_done = FutureSet::default();
    let mut keys = keys.iter().peekable();
    for (pos, f) in all.iter().enumerate() {
        if let Some((_, key)) = keys.next_if(|(p, _)| *p == pos) {
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
        deadlock: None,
    }
}
