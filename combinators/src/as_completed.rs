//! [`as_completed`]: iterate over futures as they complete (Python's
//! `concurrent.futures.as_completed`).

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_core::blocking::{self, WaitFor};
use cfutures_core::{Deadlock, FutureId, Waitable, Waiter, WaiterKey};

use crate::hash::IdMap;
use crate::progress::Progress;
use crate::queue::SlotQueueWaiter;

/// The `index` of a future that was complete when first seen.
const NOT_PENDING: u32 = u32::MAX;

/// How many pending futures `as_completed` looks at before installing its waiter on them:
/// a few hundred kilobytes of futures, which stay in cache in between.
const BLOCK: usize = 4096;

/// The error [`as_completed`] yields when it stops with futures still unfinished: its
/// timeout passed (Python's `TimeoutError('2 (of 5) futures unfinished')`), or — unlike
/// Python, which hangs — waiting would never end, because this thread runs a task that the
/// unfinished futures, directly or through other waiting tasks, wait on
/// ([`deadlock`](Self::deadlock)).
///
/// Converts into [`cfutures_core::Error::Timeout`] or [`cfutures_core::Error::Deadlock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    unfinished: usize,
    total: usize,
    deadlock: Option<Deadlock>,
}

impl TimedOut {
    /// How many futures had not completed.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }
    /// Out of how many distinct futures.
    pub fn total(&self) -> usize {
        self.total
    }
    /// True if the timeout passed (for symmetry with
    /// [`cfutures_core::Error::is_timeout`]); false for a [`deadlock`](Self::deadlock).
    pub fn is_timeout(&self) -> bool {
        self.deadlock.is_none()
    }
    /// True if it stopped because waiting would never end.
    pub fn is_deadlock(&self) -> bool {
        self.deadlock.is_some()
    }
    /// The wait cycle, if it stopped because waiting would never end.
    pub fn deadlock(&self) -> Option<&Deadlock> {
        self.deadlock.as_ref()
    }
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.deadlock {
            write!(f, "{d} (")?;
        }
        write!(
            f,
            "{} (of {}) futures unfinished",
            self.unfinished, self.total
        )?;
        if self.deadlock.is_some() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for TimedOut {}

impl From<TimedOut> for cfutures_core::Error {
    fn from(e: TimedOut) -> Self {
        match e.deadlock {
            Some(d) => cfutures_core::Error::Deadlock(d),
            None => cfutures_core::Error::Timeout,
        }
    }
}

/// Iterates over `futures` as they complete: each distinct future once, those already
/// complete first (in input order), then the others in completion order (Python's
/// `concurrent.futures.as_completed`).
///
/// Lazy, like Python's generator: nothing happens — the input is not read and the timeout
/// clock does not start — until the first [`next`](Iterator::next). With a `timeout`, once
/// it has passed and futures remain unfinished, the iterator yields one [`TimedOut`] error
/// ("`2 (of 5) futures unfinished`") and then ends. Without one, it waits as long as it
/// takes.
///
/// As in [`wait`](crate::wait), a future cancelled while still queued counts as complete
/// only once its executor notices. Duplicates are yielded once. Yielded handles are moved
/// out: the iterator keeps no reference to them. Dropping the iterator removes its waiter
/// from every future not yet yielded.
///
/// Progress: [`done`](AsCompleted::done), [`total`](AsCompleted::total) and
/// [`progress`](AsCompleted::progress).
///
/// Cost: O(n) for n futures in total.
///
/// # Examples
///
/// ```
/// use cfutures_combinators::as_completed;
/// use cfutures_core::{pending, Future};
/// use std::time::Duration;
///
/// let (promise, later) = pending::<u32>();
/// let now = Future::ready(1);
///
/// let mut it = as_completed([later, now], None);
/// // The already finished one comes first.
/// assert_eq!(*it.next().unwrap().unwrap().result().unwrap(), 1);
/// println!("{} done", it.progress()); // "1/2 done": a progress bar is one line
///
/// let t = std::thread::spawn(move || promise.set_result(2).unwrap());
/// // Then the others, as they complete.
/// assert_eq!(*it.next().unwrap().unwrap().result().unwrap(), 2);
/// assert!(it.next().is_none());
/// t.join().unwrap();
/// ```
///
/// A timeout:
///
/// ```
/// use cfutures_combinators::as_completed;
/// use cfutures_core::{pending, Future};
/// use std::time::Duration;
///
/// let (_promise, never) = pending::<u32>();
/// let fs = [Future::ready(1), never, Future::ready(3)];
/// let mut it = as_completed(fs, Some(Duration::from_millis(10)));
/// assert!(it.next().unwrap().is_ok());
/// assert!(it.next().unwrap().is_ok());
/// let err = it.next().unwrap().unwrap_err();
/// assert_eq!(err.to_string(), "1 (of 3) futures unfinished");
/// assert!(it.next().is_none());
/// ```
pub fn as_completed<I>(futures: I, timeout: Option<Duration>) -> AsCompleted<I::IntoIter>
where
    I: IntoIterator,
    I::Item: Waitable,
{
    AsCompleted {
        input: Some(futures.into_iter()),
        timeout,
        deadline: None,
        ready: VecDeque::new(),
        index: IdMap::default(),
        slots: Vec::new(),
        pending: 0,
        waiter: None,
        head: 0,
        scratch: Vec::new(),
        total: 0,
        yielded: 0,
        finished: false,
        scan_from: AtomicUsize::new(0),
    }
}

/// The iterator [`as_completed`] returns.
pub struct AsCompleted<I>
where
    I: Iterator,
    I::Item: Waitable,
{
    /// The input, until the first `next()`.
    input: Option<I>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// Complete, not yet yielded.
    ready: VecDeque<I::Item>,
    /// Every distinct future, by address: its index in `slots`, or `NOT_PENDING` if it was
    /// complete when first seen.
    index: IdMap<usize, u32>,
    /// The futures that were pending when first seen, in input order: `Some` (with its
    /// waiter's key, once installed) until it moves to `ready`.
    slots: Vec<Option<(I::Item, Option<WaiterKey>)>>,
    pending: usize,
    waiter: Option<Arc<SlotQueueWaiter>>,
    /// How far this iterator has read the waiter's queue.
    head: usize,
    scratch: Vec<usize>,
    total: usize,
    yielded: usize,
    finished: bool,
    /// Every slot before this one is empty (yielded): where listing the pending futures
    /// for a wait-cycle search starts. Only that listing touches it (see `next`).
    scan_from: AtomicUsize,
}

impl<I> AsCompleted<I>
where
    I: Iterator,
    I::Item: Waitable,
{
    /// How many futures were yielded so far.
    pub fn done(&self) -> usize {
        self.yielded
    }

    /// How many distinct futures there are; 0 until the first `next()` reads the input.
    pub fn total(&self) -> usize {
        self.total
    }

    /// [`done`](Self::done) of [`total`](Self::total).
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.yielded,
            total: self.total,
        }
    }

    fn start(&mut self, input: I) {
        self.deadline = self.timeout.and_then(blocking::deadline_after);
        let (lower, upper) = input.size_hint();
        self.index.reserve(lower);
        self.slots.reserve(lower);
        // The waiter needs a slot per installation, so its size before the first one: the
        // input's upper bound when that is close to its lower one, else the length of the
        // input once read. (A bound that turns out too small costs a move to a larger
        // waiter: see `move_to_new_waiter`.)
        match upper {
            Some(upper) if upper <= lower.saturating_mul(2).max(1 << 16) => {
                self.install_all(input, upper)
            }
            _ => {
                let all: Vec<I::Item> = input.collect();
                let n = all.len();
                self.install_all(all.into_iter(), n);
            }
        }
        self.total = self.index.len();
    }

    /// Reads the input once: a duplicate is skipped, a future already complete goes to
    /// `ready`, a pending one gets a slot; every [`BLOCK`] pending futures, the waiter is
    /// installed on them.
    ///
    /// Looking is a plain load, so the CPU overlaps the cache misses of a whole block; the
    /// installations (locked instructions, which would take those misses one at a time)
    /// then find the block in cache. And the look runs ahead of the installations: when
    /// another thread completes the futures in input order as this one installs (a pool
    /// draining a queue), the two do not end up on the same cache lines in lockstep.
    fn install_all(&mut self, input: impl Iterator<Item = I::Item>, mut capacity: usize) {
        let mut waiter = self.new_waiter(capacity);
        // Slots from `start` on are not installed yet.
        let mut start = 0;
        for f in input {
            let Entry::Vacant(v) = self.index.entry(f.id().as_usize()) else {
                continue;
            };
            if f.completion().is_some() {
                v.insert(NOT_PENDING);
                self.ready.push_back(f);
                continue;
            }
            v.insert(u32::try_from(self.slots.len()).expect("fewer than 2^32 futures"));
            if self.slots.len() == capacity {
                // More pending futures than the size hint promised.
                self.install_from(start, &waiter);
                start = self.slots.len();
                capacity = capacity.saturating_mul(2).max(16);
                waiter = self.move_to_new_waiter(capacity);
            }
            self.slots.push(Some((f, None)));
            if self.slots.len() - start == BLOCK {
                self.install_from(start, &waiter);
                start = self.slots.len();
            }
        }
        self.install_from(start, &waiter);
    }

    /// Installs `waiter` on the futures in `slots[start..]`; one that completed since it was
    /// looked at goes to `ready`.
    fn install_from(&mut self, start: usize, waiter: &Arc<dyn Waiter>) {
        for slot in &mut self.slots[start..] {
            let Some((f, key)) = slot else {
                continue;
            };
            match f.install_waiter(waiter) {
                Ok(k) => {
                    *key = Some(k);
                    self.pending += 1;
                }
                Err(_) => self.ready.push_back(slot.take().expect("checked above").0),
            }
        }
    }

    fn new_waiter(&mut self, capacity: usize) -> Arc<dyn Waiter> {
        let waiter = Arc::new(SlotQueueWaiter::new(capacity));
        self.waiter = Some(waiter.clone());
        self.head = 0;
        waiter
    }

    /// Moves every installation to a new waiter with `capacity` slots (more than
    /// `slots.len()`); futures that complete meanwhile go to `ready`. Whatever the old
    /// waiter was told is dropped with it: each future is checked again by its new
    /// installation.
    fn move_to_new_waiter(&mut self, capacity: usize) -> Arc<dyn Waiter> {
        for (f, key) in self.slots.iter_mut().flatten() {
            if let Some(old) = key.take() {
                f.remove_waiter(old);
            }
        }
        let waiter = self.new_waiter(capacity);
        self.pending = 0;
        self.install_from(0, &waiter);
        waiter
    }

    /// Moves the futures the waiter reported into `ready`.
    fn collect(&mut self) {
        for id in self.scratch.drain(..) {
            let Some(&i) = self.index.get(&id) else {
                continue;
            };
            if let Some(slot) = self.slots.get_mut(i as usize) {
                if let Some((f, _key)) = slot.take() {
                    self.pending -= 1;
                    self.ready.push_back(f);
                }
            }
        }
    }

    /// Removes the waiter from every future still pending and forgets them.
    fn finish(&mut self) {
        self.finished = true;
        for (f, key) in self.slots.drain(..).flatten() {
            if let Some(key) = key {
                f.remove_waiter(key);
            }
        }
        self.index = IdMap::default();
        self.pending = 0;
    }
}

impl<I> Iterator for AsCompleted<I>
where
    I: Iterator,
    I::Item: Waitable,
{
    type Item = Result<I::Item, TimedOut>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(input) = self.input.take() {
            self.start(input);
        }
        loop {
            if let Some(f) = self.ready.pop_front() {
                self.yielded += 1;
                return Some(Ok(f));
            }
            if self.finished || self.pending == 0 {
                return None;
            }
            let waiter = self.waiter.as_ref().expect("started");
            // What this thread waits on: any of the pending futures (listed only if a wait
            // cycle is looked for: see `blocking::block_on`).
            // Slots only ever empty, so the listing remembers where the first full one
            // was, and a search over a long iteration does not rescan the yielded ones.
            let (slots, scan_from) = (&self.slots, &self.scan_from);
            let pending = |visit: &mut dyn FnMut(FutureId) -> bool| {
                // Relaxed: a hint; every value stored is a valid one.
                let start = scan_from.load(Ordering::Relaxed);
                let mut first = None;
                for (i, slot) in slots.iter().enumerate().skip(start) {
                    if let Some((f, _)) = slot {
                        first.get_or_insert(i);
                        if !visit(f.id()) {
                            break;
                        }
                    }
                }
                if let Some(i) = first {
                    scan_from.fetch_max(i, Ordering::Relaxed);
                }
            };
            let got = waiter.take_until(
                &mut self.head,
                &mut self.scratch,
                self.deadline,
                WaitFor::Any(&pending),
            );
            if got != Ok(true) {
                let err = TimedOut {
                    unfinished: self.pending,
                    total: self.total,
                    deadlock: got.err(),
                };
                self.finish();
                return Some(Err(err));
            }
            self.collect();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.input.is_some() {
            (0, None)
        } else if self.finished {
            (self.ready.len(), Some(self.ready.len()))
        } else {
            // Each pending future yields itself, or all of them yield one timeout error.
            (
                self.ready.len() + self.pending.min(1),
                Some(self.ready.len() + self.pending),
            )
        }
    }
}

impl<I> FusedIterator for AsCompleted<I>
where
    I: Iterator,
    I::Item: Waitable,
{
}

impl<I> Drop for AsCompleted<I>
where
    I: Iterator,
    I::Item: Waitable,
{
    fn drop(&mut self) {
        self.finish();
    }
}

impl<I> fmt::Debug for AsCompleted<I>
where
    I: Iterator,
    I::Item: Waitable,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("started", &self.input.is_none())
            .field("done", &self.yielded)
            .field("total", &self.total)
            .field("pending", &self.pending)
            .finish()
    }
}
