//! The executor traits: [`Executor`] (lifecycle, object-safe) and [`Submit`] (what an
//! executor accepts), and [`InlineExecutor`], the model for writing your own.
//!
//! # Why two traits
//!
//! The thread pool accepts any closure; the process pool only what can be serialized. So
//! submission is generic over the task type: an executor implements `Submit<T>` for the
//! tasks it can run, and the compiler rejects the others (a closure given to a process
//! pool, a non-`Send` closure given to a thread pool). Lifecycle does not depend on the
//! task, so [`Executor`] stays object-safe: `Box<dyn Executor>` can shut down any pool.
//! `map`, `wait` and `as_completed` are written once, over these traits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::SubmitError;
use crate::future::{Future, Promise};
use crate::task::Task;

/// An executor's lifecycle (Python: `Executor.shutdown`). Object-safe.
pub trait Executor: Send + Sync {
    /// Stops accepting tasks. With `wait`, blocks until every accepted task is done; with
    /// `cancel_futures`, first cancels the tasks that have not started. Idempotent.
    fn shutdown(&self, wait: bool, cancel_futures: bool);
    /// True once `shutdown` was called (or the executor broke).
    fn is_shutdown(&self) -> bool;
}

/// Submission of tasks of type `T` (Python: `Executor.submit`).
///
/// # Implementing it for an executor that runs tasks on other threads
///
/// The task travels to another thread, and so does the [`Promise`] of its output. A
/// `Promise<R>` (like a [`Future<R>`]) is `Send` only when `R: Send + Sync`, because its
/// future hands out `&R` to any thread. So the bounds to copy are:
///
/// ```
/// use cfutures_core::{Executor, Future, Promise, Submit, SubmitError, Task};
///
/// struct ThreadPerTask;
/// # impl Executor for ThreadPerTask {
/// #     fn shutdown(&self, _wait: bool, _cancel_futures: bool) {}
/// #     fn is_shutdown(&self) -> bool { false }
/// # }
///
/// impl<T> Submit<T> for ThreadPerTask
/// where
///     T: Task + Send + 'static,         // the task moves to the worker thread
///     T::Output: Send + Sync + 'static, // and so does the Promise<T::Output>
/// {
///     fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
///         let promise = Promise::new();
///         let future = promise.future();
///         std::thread::spawn(move || promise.run(task)); // cancellation, panics, outcome
///         Ok(future)
///     }
/// }
///
/// let f = ThreadPerTask.submit(|| 6 * 7).unwrap();
/// assert_eq!(*f.result().unwrap(), 42);
/// ```
///
/// Without `T::Output: Send + Sync` the spawn does not compile (the error points at
/// `Promise<<T as Task>::Output>` not being `Send`):
///
/// ```compile_fail,E0277
/// use cfutures_core::{Executor, Future, Promise, Submit, SubmitError, Task};
///
/// struct ThreadPerTask;
/// # impl Executor for ThreadPerTask {
/// #     fn shutdown(&self, _wait: bool, _cancel_futures: bool) {}
/// #     fn is_shutdown(&self) -> bool { false }
/// # }
/// impl<T: Task + Send + 'static> Submit<T> for ThreadPerTask {
///     fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
///         let promise = Promise::new();
///         let future = promise.future();
///         std::thread::spawn(move || promise.run(task));
///         Ok(future)
///     }
/// }
/// ```
///
/// An executor that runs tasks on the caller's thread needs neither bound
/// ([`InlineExecutor`]).
///
/// # Errors
///
/// [`SubmitError::Shutdown`] after shutdown, [`SubmitError::Broken`] if the executor broke.
pub trait Submit<T: Task>: Executor {
    /// Schedules `task` and returns the future of its output.
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError>;
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        impl<E: Executor + ?Sized> Executor for $ty {
            fn shutdown(&self, wait: bool, cancel_futures: bool) {
                (**self).shutdown(wait, cancel_futures)
            }
            fn is_shutdown(&self) -> bool {
                (**self).is_shutdown()
            }
        }
        impl<T: Task, E: Submit<T> + ?Sized> Submit<T> for $ty {
            fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
                (**self).submit(task)
            }
        }
    )*};
}

forward!(&E, Box<E>, Arc<E>);

/// An executor that runs each task at once, on the caller's thread.
///
/// Useful in tests and as a fallback, and the model for writing your own executor: it
/// implements [`Executor`] and [`Submit`] in a dozen lines, using [`Promise::run`] to run
/// each task (which handles cancellation, panics and the outcome), and so works with every
/// combinator (`wait`, `as_completed`, `map`).
///
/// # Examples
///
/// ```
/// use cfutures_core::{Executor, InlineExecutor, Submit};
///
/// let ex = InlineExecutor::new();
/// let f = ex.submit(|| 6 * 7).unwrap();
/// assert!(f.done());
/// assert_eq!(*f.result().unwrap(), 42);
///
/// ex.shutdown(true, false);
/// assert!(ex.submit(|| 1).unwrap_err().is_shutdown());
/// ```
///
/// A non-`Send` task is fine here, but a pool that runs tasks on other threads rejects it at
/// compile time; the inline executor only requires what it needs. An executor that moves
/// tasks to other threads needs `T: Task + Send + 'static` and `T::Output: Send + Sync +
/// 'static` (the [`Promise`] travels with the task): see [`Submit`] for the model to copy.
#[derive(Debug, Default)]
pub struct InlineExecutor {
    shutdown: AtomicBool,
}

impl InlineExecutor {
    /// A new inline executor.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Executor for InlineExecutor {
    fn shutdown(&self, _wait: bool, _cancel_futures: bool) {
        // Relaxed: the flag guards no other data.
        self.shutdown.store(true, Ordering::Relaxed);
    }
    fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

impl<T: Task> Submit<T> for InlineExecutor {
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        if self.is_shutdown() {
            return Err(SubmitError::Shutdown);
        }
        let promise = Promise::new();
        let future = promise.future();
        promise.run(task);
        Ok(future)
    }
}
