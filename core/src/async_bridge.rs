//! `async`/`await` on a cfutures [`Future`]: the bridge to every async runtime (Python's
//! `asyncio.wrap_future`), with no runtime dependency.
//!
//! * `future.await` ([`IntoFuture`] for [`Future<T>`], `T: Clone`) gives
//!   `Result<T, Error>`: the value is **moved out** when this is the last handle and the
//!   executor has let go of it (the usual `pool.submit(f)?.await`), and **cloned**
//!   otherwise — never a wait.
//! * `(&future).await` ([`IntoFuture`] for `&Future<T>`, any `T`) gives `Result<&T, Error>`,
//!   borrowing from the handle as [`Future::result`] does: no `Clone` needed, no copy.
//!
//! The other way round — a blocking task from async code, Python's `loop.run_in_executor` —
//! is `pool.submit(task)?.await`: the task runs on the pool's thread (or process), and the
//! async task awaiting it is woken when it is done, without blocking the runtime's thread.
//!
//! ```
//! use cfutures_core::{InlineExecutor, Submit};
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     // Any executor works (tokio, async-std, futures::executor::block_on); this is the
//! #     // smallest: poll, park until woken, poll again.
//! #     use std::task::{Context, Poll, Wake, Waker};
//! #     struct Unpark(std::thread::Thread);
//! #     impl Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
//! #     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) { return v }
//! #         std::thread::park();
//! #     }
//! # }
//!
//! let pool = InlineExecutor::new(); // or a thread pool, a process pool
//! block_on(async {
//!     let n: u64 = pool.submit(|| 6 * 7).unwrap().await.unwrap();
//!     assert_eq!(n, 42);
//!
//!     let f = pool.submit(|| vec![1, 2, 3]).unwrap();
//!     let v: &Vec<i32> = (&f).await.unwrap(); // borrowed: lives as long as `f`
//!     assert_eq!(v.len(), 3);
//! });
//! ```
//!
//! # Dropping the awaiting side
//!
//! Dropping an `.await` before it completes (a `select!` branch that lost, a timeout, an
//! aborted task) **does not cancel** the cfutures future: the task still runs, as with
//! `result_timeout`; only the waker registration is removed. To cancel a task that has not
//! started when the awaiting side goes away, ask for it with
//! [`Future::cancel_on_drop`] (or [`Await::cancel_on_drop`], [`AwaitRef::cancel_on_drop`]).
//!
//! # How
//!
//! Each poll that finds the future not done registers the task's [`Waker`] with the future,
//! in the same registry and under the same lock as a thread parked in `result()` (so a
//! completion cannot slip between the check and the registration: the loom model
//! `core/tests/loom.rs` checks it); a later poll with another waker replaces it in place.
//! The future wakes it when it is done — finished, or cancelled — the moment `result()`
//! would return.

use std::fmt;
use std::future::IntoFuture;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::future::Future;
use crate::waiter::WaiterKey;

/// The waker registration of one awaiting side, shared by [`Await`] and [`AwaitRef`].
struct Registration {
    /// The slot and the waker in it (kept to skip re-registering the same waker).
    slot: Option<(WaiterKey, Waker)>,
    cancel_on_drop: bool,
}

impl Registration {
    const fn new() -> Self {
        Registration {
            slot: None,
            cancel_on_drop: false,
        }
    }

    /// Ready once `future` is done; otherwise registers (or keeps) `cx`'s waker.
    fn poll_done<T>(&mut self, future: &Future<T>, cx: &mut Context<'_>) -> Poll<()> {
        if future.done() {
            // Completion took every waker out of the registry: nothing to remove.
            self.slot = None;
            return Poll::Ready(());
        }
        if let Some((_, w)) = &self.slot {
            if w.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let old = self.slot.take().map(|(k, _)| k);
        match future.register_waker(old, cx.waker()) {
            Some(key) => {
                self.slot = Some((key, cx.waker().clone()));
                Poll::Pending
            }
            // Done between the check and the registration.
            None => Poll::Ready(()),
        }
    }

    /// The awaiting side went away: remove the waker and, if asked, cancel.
    fn release<T>(&mut self, future: &Future<T>) {
        if let Some((key, _)) = self.slot.take() {
            if !future.done() {
                future.remove_waker(key);
            }
        }
        if self.cancel_on_drop && !future.done() {
            future.cancel();
        }
    }
}

/// `future.await`: a [`std::future::Future`] giving the value by value (moved out when this
/// is the last handle, else cloned). Made by [`IntoFuture`] for [`Future<T>`].
///
/// Dropping it before it completes does not cancel the task unless
/// [`cancel_on_drop`](Self::cancel_on_drop) was called. See the
/// [crate documentation](crate#asyncawait).
#[must_use = "an Await does nothing unless awaited"]
pub struct Await<T> {
    /// `None` once the value was moved out.
    future: Option<Future<T>>,
    reg: Registration,
}

impl<T> Await<T> {
    /// Cancels the task, if it has not started, when this is dropped before completing.
    pub fn cancel_on_drop(mut self) -> Self {
        self.reg.cancel_on_drop = true;
        self
    }

    /// The cfutures future being awaited.
    ///
    /// # Panics
    ///
    /// If the value was already moved out (after this completed).
    pub fn future(&self) -> &Future<T> {
        self.future
            .as_ref()
            .expect("Await::future after the value was moved out")
    }
}

impl<T: Clone> std::future::Future for Await<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let future = this
            .future
            .as_mut()
            .expect("Await polled after it completed");
        if this.reg.poll_done(future, cx).is_pending() {
            return Poll::Pending;
        }
        let out = match future.try_take() {
            Some(out) => out,
            None => future.outcome_now().cloned(),
        };
        this.future = None;
        Poll::Ready(out)
    }
}

impl<T> Drop for Await<T> {
    fn drop(&mut self) {
        if let Some(f) = &self.future {
            self.reg.release(f);
        }
    }
}

impl<T> fmt::Debug for Await<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Await")
            .field("future", &self.future)
            .field("cancel_on_drop", &self.reg.cancel_on_drop)
            .finish()
    }
}

/// `(&future).await`: a [`std::future::Future`] giving a reference to the value, which
/// lives as long as the handle. Made by [`IntoFuture`] for `&Future<T>`.
///
/// Dropping it before it completes does not cancel the task unless
/// [`cancel_on_drop`](Self::cancel_on_drop) was called.
#[must_use = "an AwaitRef does nothing unless awaited"]
pub struct AwaitRef<'a, T> {
    future: &'a Future<T>,
    reg: Registration,
}

impl<T> AwaitRef<'_, T> {
    /// Cancels the task, if it has not started, when this is dropped before completing.
    pub fn cancel_on_drop(mut self) -> Self {
        self.reg.cancel_on_drop = true;
        self
    }
}

impl<'a, T> std::future::Future for AwaitRef<'a, T> {
    type Output = Result<&'a T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let future: &'a Future<T> = this.future;
        match this.reg.poll_done(future, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(future.outcome_now()),
        }
    }
}

impl<T> Drop for AwaitRef<'_, T> {
    fn drop(&mut self) {
        self.reg.release(self.future);
    }
}

impl<T> fmt::Debug for AwaitRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitRef")
            .field("future", self.future)
            .field("cancel_on_drop", &self.reg.cancel_on_drop)
            .finish()
    }
}

/// `future.await` gives `Result<T, Error>`: see the [crate documentation](crate#asyncawait).
impl<T: Clone> IntoFuture for Future<T> {
    type Output = Result<T, Error>;
    type IntoFuture = Await<T>;

    fn into_future(self) -> Await<T> {
        Await {
            future: Some(self),
            reg: Registration::new(),
        }
    }
}

/// `(&future).await` gives `Result<&T, Error>`, for any `T`.
impl<'a, T> IntoFuture for &'a Future<T> {
    type Output = Result<&'a T, Error>;
    type IntoFuture = AwaitRef<'a, T>;

    fn into_future(self) -> AwaitRef<'a, T> {
        AwaitRef {
            future: self,
            reg: Registration::new(),
        }
    }
}

impl<T> Future<T> {
    /// An awaitable that, unlike a plain `.await`, cancels the task if it has not started
    /// when the awaiting side is dropped before completing (a lost `select!` branch, a
    /// timeout, an aborted async task).
    ///
    /// ```
    /// use cfutures_core::pending;
    /// use std::future::Future as _;
    /// use std::sync::Arc;
    /// use std::task::{Context, Wake, Waker};
    ///
    /// struct Nobody;
    /// impl Wake for Nobody {
    ///     fn wake(self: Arc<Self>) {}
    /// }
    /// let waker = Waker::from(Arc::new(Nobody));
    ///
    /// let (promise, future) = pending::<u32>();
    /// let mut awaiting = Box::pin(future.clone().cancel_on_drop());
    /// assert!(awaiting.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    /// drop(awaiting); // the async side gave up
    /// assert!(future.cancelled());
    /// assert!(!promise.set_running_or_notify_cancel()); // the executor skips the task
    /// ```
    pub fn cancel_on_drop(self) -> Await<T> {
        Await {
            future: Some(self),
            reg: Registration {
                slot: None,
                cancel_on_drop: true,
            },
        }
    }
}
