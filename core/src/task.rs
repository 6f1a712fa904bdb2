//! What executors run: [`Task`], the fallible adapter [`Fallible`], and [`MapChunk`], the
//! batch task `map` submits.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::TaskError;

/// Something that runs once and produces an output: what an executor accepts.
///
/// Every `FnOnce() -> R` is a task whose output is `R` (it cannot fail except by panicking;
/// executors catch panics). To fail a future the way a Python exception does — so that
/// [`Future::exception`](crate::Future::exception) and `FIRST_EXCEPTION` see it — return a
/// `Result` through [`fallible`], or implement `Task` for your own type and return
/// `Err(TaskError)` from [`run`](Task::run).
pub trait Task {
    /// What the task produces.
    type Output;
    /// Runs the task.
    ///
    /// # Errors
    ///
    /// The task's failure, which becomes the future's failure.
    fn run(self) -> Result<Self::Output, TaskError>;
}

impl<F, R> Task for F
where
    F: FnOnce() -> R,
{
    type Output = R;
    fn run(self) -> Result<R, TaskError> {
        Ok(self())
    }
}

/// A closure returning `Result<R, E>` whose `Err` fails the future (instead of becoming a
/// `Future<Result<R, E>>`). Made by [`fallible`].
#[derive(Clone, Copy, Debug)]
pub struct Fallible<F>(pub F);

impl<F, R, E> Task for Fallible<F>
where
    F: FnOnce() -> Result<R, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    type Output = R;
    fn run(self) -> Result<R, TaskError> {
        (self.0)().map_err(|e| TaskError::from_boxed(e.into()))
    }
}

/// Makes a task whose `Err` fails its future: the future holds `R`, and the error is
/// available from `exception()` and as [`Error::Failed`](crate::Error::Failed) from `result()`.
///
/// Any error convertible to `Box<dyn Error + Send + Sync>` works (`std::io::Error`, your own
/// error types, `String`, `&str`).
///
/// # Examples
///
/// ```
/// use cfutures_core::{fallible, InlineExecutor, Submit};
///
/// let ex = InlineExecutor::new();
/// let ok = ex.submit(fallible(|| "42".parse::<u32>())).unwrap();
/// let bad = ex.submit(fallible(|| "forty-two".parse::<u32>())).unwrap();
/// assert_eq!(*ok.result().unwrap(), 42);
/// let err = bad.exception().unwrap().expect("it failed");
/// assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
/// ```
pub fn fallible<F, R, E>(f: F) -> Fallible<F>
where
    F: FnOnce() -> Result<R, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    Fallible(f)
}

/// A batch of `map` items run as one task: `f` applied to each item, each item's panic
/// caught on its own, so one failing item fails only its own slot.
///
/// `map` with `chunksize` submits these; an executor that accepts `MapChunk` (the thread
/// pool accepts any task; the process pool sends one chunk as one message) works with
/// `map`.
#[derive(Debug)]
pub struct MapChunk<F, A> {
    f: Arc<F>,
    items: Vec<A>,
}

impl<F, A> MapChunk<F, A> {
    /// A chunk of `items` for `f`.
    pub fn new(f: Arc<F>, items: Vec<A>) -> Self {
        MapChunk { f, items }
    }
    /// The function.
    pub fn function(&self) -> &Arc<F> {
        &self.f
    }
    /// The items.
    pub fn items(&self) -> &[A] {
        &self.items
    }
    /// The function and the items.
    pub fn into_parts(self) -> (Arc<F>, Vec<A>) {
        (self.f, self.items)
    }
}

impl<F, A, R> Task for MapChunk<F, A>
where
    F: Fn(A) -> R,
{
    type Output = Vec<Result<R, TaskError>>;
    fn run(self) -> Result<Self::Output, TaskError> {
        let f = &*self.f;
        Ok(self
            .items
            .into_iter()
            .map(|a| panic::catch_unwind(AssertUnwindSafe(|| f(a))).map_err(TaskError::from_panic))
            .collect())
    }
}
