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
//! * [`Error`], [`TaskError`], [`SubmitError`]: cheap to clone, with predicates.
//! * [`Task`], [`Executor`], [`Submit`]: what executors implement; [`InlineExecutor`] is a
//!   complete example.
//! * [`Waitable`], [`Waiter`], [`AnyFuture`]: the type-erased hook `wait` and `as_completed`
//!   are built on.
//! * [`blocking`]: spin, yield, park — the hook pools use to avoid nested-wait deadlocks,
//!   and the detection of wait cycles ([`Error::Deadlock`]; name tasks with [`named`]).
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

pub mod blocking;
mod deadlock;
mod error;
mod executor;
mod future;
mod state;
mod sync;
mod task;
mod waiter;

pub use error::{
    panic_message, Broken, Deadlock, Error, InvalidState, SubmitError, TaskError, WaitLink,
    WorkerExit,
};
pub use executor::{Executor, InlineExecutor, Submit};
pub use future::{pending, Future, Promise, State};
pub use task::{
    discard_task, fallible, named, run_chunk, ChunkIter, ChunkOutput, Fallible, MapChunk, Named,
    PanicToError, Task,
};
pub use waiter::{AnyFuture, Completion, FutureId, Waitable, Waiter, WaiterKey};
