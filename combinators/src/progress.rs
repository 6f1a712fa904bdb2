//! [`Progress`]: how many done out of how many.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use cfutures_core::{Completion, FutureId, Waiter};

/// How many are done out of how many: what [`AsCompleted`](crate::AsCompleted),
/// [`Map`](crate::Map) and [`MapUnordered`](crate::MapUnordered) report, so a progress bar
/// is one line.
///
/// Displays as `done/total`.
///
/// # Examples
///
/// ```
/// use cfutures_combinators::Progress;
///
/// let p = Progress { done: 3, total: 4 };
/// assert_eq!(p.to_string(), "3/4");
/// assert_eq!(p.fraction(), 0.75);
/// assert_eq!(p.remaining(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Progress {
    /// How many are done.
    pub done: usize,
    /// Out of how many.
    pub total: usize,
}

impl Progress {
    /// `done / total`, or 1.0 when `total` is zero.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }

    /// `total - done`.
    pub fn remaining(&self) -> usize {
        self.total.saturating_sub(self.done)
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.done, self.total)
    }
}

/// How many items of a `map` are done: a [`Waiter`] installed on each chunk's future (in
/// the future itself, so counting costs no allocation per chunk), adding the chunk's length
/// when it completes.
///
/// Every chunk has `chunksize` items but the last, which may be short: its future's address
/// and length are recorded (before the waiter is installed on it) so that its completion
/// adds the right amount.
#[derive(Debug)]
pub(crate) struct ChunkCount {
    chunksize: usize,
    /// The short chunk's future's address (0: none), and its length.
    short_id: AtomicUsize,
    short_len: AtomicUsize,
    done: AtomicUsize,
}

impl ChunkCount {
    pub(crate) fn new(chunksize: usize) -> Self {
        ChunkCount {
            chunksize,
            short_id: AtomicUsize::new(0),
            short_len: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    /// Items done so far.
    pub(crate) fn done(&self) -> usize {
        // Relaxed: a progress figure orders nothing.
        self.done.load(Ordering::Relaxed)
    }

    /// `len` more items are done (a refused chunk).
    pub(crate) fn add(&self, len: usize) {
        // Relaxed: a counter.
        self.done.fetch_add(len, Ordering::Relaxed);
    }

    /// Records the short chunk, before the waiter is installed on its future.
    pub(crate) fn set_short(&self, id: FutureId, len: usize) {
        // Relaxed, then Release on the id: a notifier that sees the id (Acquire) sees the
        // length. The installation that follows orders both before any notification.
        self.short_len.store(len, Ordering::Relaxed);
        self.short_id.store(id.as_usize(), Ordering::Release);
    }

    /// The chunk whose future is `id` is done.
    pub(crate) fn completed(&self, id: FutureId) {
        // Acquire: see `set_short`. (Only the short chunk's future has this address while
        // it is alive, and a future notifies before it can be freed.)
        let len = if self.short_id.load(Ordering::Acquire) == id.as_usize() {
            self.short_len.load(Ordering::Relaxed)
        } else {
            self.chunksize
        };
        self.add(len);
    }
}

impl Waiter for ChunkCount {
    fn notify(&self, id: FutureId, _completion: Completion) {
        self.completed(id);
    }
}
