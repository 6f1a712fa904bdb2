//! The hook `wait` and `as_completed` use to be told when any of a set of futures completes
//! (Python's `_Waiter`), type-erased so that futures of different result types, from
//! different executors, can be waited on together.
//!
//! A [`Waiter`] is installed on each future with [`Waitable::install_waiter`] (O(1)), is
//! called once per future with [`Waiter::notify`] when that future *completes for waiting*,
//! and is removed with [`Waitable::remove_waiter`] (O(1)) when the caller stops waiting.
//!
//! "Completes for waiting" is Python's rule: the future finished (with a value or a
//! failure), or it was cancelled **and its executor noticed** (the executor called
//! [`Promise::set_running_or_notify_cancel`](crate::Promise::set_running_or_notify_cancel),
//! or dropped the promise). A future cancelled while still queued reports `done()`, but
//! `wait` counts it as not done until then.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use crate::error::Deadlock;
use crate::future::State;

/// A future's identity: equal for handles to the same future, stable while a handle lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FutureId(pub(crate) usize);

impl FutureId {
    /// The identity as a number (an address; for hashing and logs).
    pub fn as_usize(self) -> usize {
        self.0
    }
}

impl fmt::Display for FutureId {
    /// `#` and the identity in hex (as [`Error::Deadlock`](crate::Error::Deadlock) names
    /// futures).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:x}", self.0)
    }
}

/// How a future completed, for waiting (Python: `add_result`, `add_exception`,
/// `add_cancelled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Completion {
    /// It finished with a value.
    Succeeded,
    /// It finished with a failure (the task failed, or its executor broke).
    Failed,
    /// It was cancelled and its executor noticed.
    Cancelled,
}

/// Told when a future it is installed on completes. Called at most once per installation,
/// outside the future's locks, in the completing thread: keep it short and never block.
pub trait Waiter: Send + Sync {
    /// The future `id` completed as `completion`.
    fn notify(&self, id: FutureId, completion: Completion);
}

/// Identifies one installation of a waiter on one future, for [`Waitable::remove_waiter`].
///
/// 16 bytes, and `Option<WaiterKey>` too (the index is never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaiterKey {
    /// The slot's index plus one (or the inline marker).
    pub(crate) index: std::num::NonZeroU32,
    pub(crate) token: u64,
}

/// An object-safe view of any [`Future<T>`](crate::Future): what `wait` and `as_completed`
/// need, whatever `T` is.
pub trait Waitable: Send + Sync {
    /// The future's identity.
    fn id(&self) -> FutureId;
    /// Its state.
    fn state(&self) -> State;
    /// `Some` once it completed for waiting (see the module doc), else `None`.
    fn completion(&self) -> Option<Completion>;
    /// Installs `waiter`, unless the future already completed for waiting: then gives that
    /// completion and installs nothing. Atomic with respect to completion: either the
    /// waiter is installed and will be notified, or the completion is returned.
    fn install_waiter(&self, waiter: &Arc<dyn Waiter>) -> Result<WaiterKey, Completion>;
    /// Removes an installation; does nothing if it already fired or was removed.
    ///
    /// A completion that was already under way when this is called may still call
    /// [`Waiter::notify`] (once) after it returns: the completing thread takes the waiters
    /// out under the future's lock and notifies them after releasing it. A waiter must
    /// therefore tolerate one late notification after its removal.
    fn remove_waiter(&self, key: WaiterKey);
    /// Cancels the future if it has not started (see [`Future::cancel`](crate::Future::cancel)).
    fn cancel(&self) -> bool;
    /// Blocks until it is done (finished or cancelled) or the deadline passes; true if done.
    fn wait_deadline(&self, deadline: Option<Instant>) -> bool;
    /// [`wait_deadline`](Self::wait_deadline), telling a wait that would never end apart:
    /// [`Deadlock`] if this thread runs a task that the future, directly or through other
    /// waiting tasks, waits on (see [`crate::blocking`], "Deadlocks").
    ///
    /// The default calls `wait_deadline` (no detection); [`Future`](crate::Future)
    /// detects.
    ///
    /// # Errors
    ///
    /// [`Deadlock`], at once, instead of parking.
    fn try_wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, Deadlock> {
        Ok(self.wait_deadline(deadline))
    }
}

/// A reference to a waitable is one too, so `wait(&futures, ..)` and
/// `as_completed(&futures, ..)` work on borrowed futures (yielding the references).
impl<W: Waitable + ?Sized> Waitable for &W {
    fn id(&self) -> FutureId {
        (**self).id()
    }
    fn state(&self) -> State {
        (**self).state()
    }
    fn completion(&self) -> Option<Completion> {
        (**self).completion()
    }
    fn install_waiter(&self, waiter: &Arc<dyn Waiter>) -> Result<WaiterKey, Completion> {
        (**self).install_waiter(waiter)
    }
    fn remove_waiter(&self, key: WaiterKey) {
        (**self).remove_waiter(key)
    }
    fn cancel(&self) -> bool {
        (**self).cancel()
    }
    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        (**self).wait_deadline(deadline)
    }
}

/// A type-erased, cloneable future handle: compare, hash, wait on and cancel futures of any
/// result type together.
#[derive(Clone)]
pub struct AnyFuture(Arc<dyn Waitable>);

impl AnyFuture {
    /// Erases any waitable (usually a [`Future<T>`](crate::Future)).
    pub fn new(w: impl Waitable + 'static) -> Self {
        AnyFuture(Arc::new(w))
    }
}

impl std::ops::Deref for AnyFuture {
    type Target = dyn Waitable;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Waitable for AnyFuture {
    fn id(&self) -> FutureId {
        self.0.id()
    }
    fn state(&self) -> State {
        self.0.state()
    }
    fn completion(&self) -> Option<Completion> {
        self.0.completion()
    }
    fn install_waiter(&self, waiter: &Arc<dyn Waiter>) -> Result<WaiterKey, Completion> {
        self.0.install_waiter(waiter)
    }
    fn remove_waiter(&self, key: WaiterKey) {
        self.0.remove_waiter(key)
    }
    fn cancel(&self) -> bool {
        self.0.cancel()
    }
    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        self.0.wait_deadline(deadline)
    }
    fn try_wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, Deadlock> {
        self.0.try_wait_deadline(deadline)
    }
}

impl<T: Send + Sync + 'static> From<crate::Future<T>> for AnyFuture {
    fn from(f: crate::Future<T>) -> Self {
        AnyFuture::new(f)
    }
}

impl PartialEq for AnyFuture {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}
impl Eq for AnyFuture {}
impl Hash for AnyFuture {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state)
    }
}
impl fmt::Debug for AnyFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyFuture")
            .field("id", &format_args!("{:#x}", self.id().0))
            .field("state", &self.state())
            .finish()
    }
}
