//! The foundation of cfutures: Python's `concurrent.futures` `Future`, in Rust.
//!
//! ```
//! use cfutures_core::{pending, Error};
//! use std::time::Duration;
//!
//! // An executor holds the Promise; the caller holds the Future.
//! let (promise, future) = pending::<String>();
//! assert!(!future.done());
//! assert!(future.result_timeout(Duration::ZERO).unwrap_err().is_timeout());
//!
//! std::thread::spawn(move || {
//!     assert!(promise.set_running_or_notify_cancel());
//!     promise.set_result("hello".to_owned()).unwrap();
//! });
//! assert_eq!(future.result().unwrap(), "hello");
//! ```
//!
//! # The pieces
//!
//! * [`Future<T>`]: the blocking handle — `cancel`, `cancelled`, `running`, `done`, `state`,
//!   `result` / `result_timeout`, `exception` / `exception_timeout`, `add_done_callback`,
//!   and `into_result` to move the value out.
//! * [`Promise<T>`]: the write side executors hold. Setting twice is impossible (setting
//!   consumes it); setting a cancelled future is an [`InvalidState`] error; **a promise
//!   dropped without a result fails its future with [`Error::Broken`]**, so nothing waits
//!   forever on an executor that lost a task.
//! * `future.await` and `(&future).await`: a [`Future`] is awaitable from any async runtime
//!   ([`Await`], [`AwaitRef`]; dropping the awaiting side does not cancel unless asked, with
//!   [`Future::cancel_on_drop`]). See the `async_bridge` section below.
//! * [`Error`], [`TaskError`], [`SubmitError`], [`InvalidArgument`]: cheap to clone, with
//!   predicates.
//! * [`Task`], [`Executor`], [`Submit`]: what executors implement; [`InlineExecutor`] is a
//!   complete example.
//! * [`Waitable`], [`Waiter`], [`AnyFuture`]: the type-erased hook `wait` and `as_completed`
//!   are built on.
//! * [`blocking`]: spin, yield, park — the hook pools use to avoid nested-wait deadlocks,
//!   and the detection of wait cycles ([`Error::Deadlock`]; name tasks with [`named`]).
//! * [`panics`]: a task's panic becomes a [`TaskError::Panic`] with its message and
//!   location; whether the panic hook prints it.
//! * [`events`]: what an executor did, as a stream ([`EventBus`], [`Events`], [`Event`]) and
//!   as a snapshot ([`StatsRecorder`], [`Stats`]) — the pools' `events()` and `stats()`.
//! * [`diag`]: what cfutures reports when there is no caller to tell (through `log` with the
//!   `log` feature, else on stderr).
//!
//! # async/await
//!
//! `future.await` gives `Result<T, Error>` (for `T: Clone`: the value moved out when this
//! is the last handle and the executor let go of it, cloned otherwise); `(&future).await`
//! gives `Result<&T, Error>` for any `T`. No runtime dependency: the awaiting task's waker
//! is registered with the future like a thread parked in `result()`, and woken when the
//! future is done. Submitting blocking work from async code (Python's
//! `loop.run_in_executor`) is `pool.submit(task)?.await`.
//!
//! ```
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
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
//! let (promise, future) = cfutures_core::pending::<String>();
//! std::thread::spawn(move || promise.set_result("from a thread".to_owned()).unwrap());
//! // In any async runtime (tokio, async-std, futures' block_on, ...):
//! let text = block_on(async { future.await.unwrap() });
//! assert_eq!(text, "from a thread");
//! ```
//!
//! # States
//!
//! `Pending → Running → Finished`, and `Pending → Cancelled`. A running or finished future
//! cannot be cancelled. A future cancelled while queued is `done()` at once, but `wait` and
//! `as_completed` count it as done only when its executor notices (Python's
//! `CANCELLED_AND_NOTIFIED`).
//!
//! # Failing a task
//!
//! A panic in a task becomes [`TaskError::Panic`]. To fail with an error instead, wrap a
//! closure returning `Result` in [`fallible`]: the future holds the `Ok` value, and the
//! `Err` is its exception.
//!
//! Tasks given to a pool that runs them on other threads must be `Send`:
//!
//! ```compile_fail,E0277
//! use cfutures_core::{Future, Submit, Task, Executor, SubmitError};
//! use std::rc::Rc;
//!
//! fn submit_to_threads<E, T>(ex: &E, task: T) -> Result<Future<T::Output>, SubmitError>
//! where
//!     E: Submit<T>,
//!     T: Task + Send + 'static,
//! {
//!     ex.submit(task)
//! }
//!
//! let ex = cfutures_core::InlineExecutor::new();
//! let rc = Rc::new(1);
//! submit_to_threads(&ex, move || *rc + 1); // Rc is not Send: rejected
//! ```
//!
//! And a [`Future`] of a non-`Sync` value is not shared across threads:
//!
//! ```compile_fail,E0277
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<cfutures_core::Future<std::cell::Cell<u8>>>();
//! ```

#![warn(missing_docs)]

mod async_bridge;
pub mod blocking;
mod deadlock;
pub mod diag;
mod error;
pub mod events;
mod executor;
mod future;
pub mod panics;
mod state;
mod state_arc;
mod sync;
mod task;
mod waiter;

pub use async_bridge::{Await, AwaitRef};
pub use error::{
    panic_message, Broken, Deadlock, Error, InvalidArgument, InvalidState, SubmitError, TaskError,
    TaskOutput, WaitLink, WorkerDeath, WorkerExit,
};
pub use events::{Event, EventBus, Events, Stats, StatsRecorder, TaskOutcome, WorkerId};
pub use executor::{Executor, InlineExecutor, Submit};
pub use future::{pending, Future, Promise, RunHooks, State};
pub use task::{
    discard_task, fallible, named, run_chunk, ChunkIter, ChunkOutput, Fallible, MapChunk, Named,
    PanicToError, Task,
};
pub use waiter::{AnyFuture, Completion, FutureId, Waitable, Waiter, WaiterKey};
