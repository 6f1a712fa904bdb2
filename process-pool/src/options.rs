//! Per-submission options: [`TaskOptions`], applied through the view
//! [`ProcessPoolExecutor::with`].

use std::time::Duration;

use cfutures_core::{Executor, Future, Submit, SubmitError};
use cfutures_remote::job::IntoJob;
use cfutures_remote::RemoteTask;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::retry::RetryPolicy;
use crate::ProcessPoolExecutor;

/// Options for the tasks submitted through [`ProcessPoolExecutor::with`]: each option left
/// unset is the pool's (its [`Builder`](crate::Builder)). One value composes what would
/// otherwise be a method per combination (`submit_fn_with_timeout_and_retry`, …).
///
/// Output capture is not among them: it is the pool's
/// ([`Builder::capture_output`](crate::Builder::capture_output)), because a worker's standard
/// output and error are set when it starts.
///
/// # Examples
///
/// ```
/// use cfutures_combinators::map;
/// use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, TaskOptions};
/// use std::time::Duration;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = ProcessPoolExecutor::new(2).unwrap();
/// let careful = TaskOptions::new()
///     .time_limit(Duration::from_secs(60))
///     .retry(RetryPolicy::new().attempts(4));
/// let f = pool.with(careful.clone()).submit_fn(square, 7).unwrap();
/// assert_eq!(*f.result().unwrap(), 49);
/// // The view is an executor too: `map` runs every chunk with these options.
/// let squares: Vec<u64> = map(pool.with(careful), square, 1..=4u64)
///     .unwrap()
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(squares, [1, 4, 9, 16]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TaskOptions {
    time_limit: Option<Option<Duration>>,
    retry: Option<Option<RetryPolicy>>,
}

impl TaskOptions {
    /// No option set: the pool's defaults.
    pub fn new() -> Self {
        TaskOptions::default()
    }

    /// A limit on each task's run time: past it, its worker is killed and replaced, and the
    /// task fails with [`TaskError::TimeLimit`](cfutures_core::TaskError::TimeLimit) (it is
    /// not retried). Over the pool's [`Builder::time_limit`](crate::Builder::time_limit).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(Some(limit));
        self
    }

    /// No time limit, whatever the pool's.
    pub fn no_time_limit(mut self) -> Self {
        self.time_limit = Some(None);
        self
    }

    /// Retries a task whose worker died, and quarantines it as poison: see [`RetryPolicy`].
    /// Over the pool's [`Builder::retry`](crate::Builder::retry).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(Some(policy));
        self
    }

    /// No retries, whatever the pool's policy: a death fails the task with
    /// [`TaskError::WorkerDied`](cfutures_core::TaskError::WorkerDied).
    pub fn no_retry(mut self) -> Self {
        self.retry = Some(None);
        self
    }
}

/// The options a job is queued with, the pool's defaults filled in.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) limit: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
}

impl TaskOptions {
    pub(crate) fn resolve(&self, pool: &Resolved) -> Resolved {
        Resolved {
            limit: self.time_limit.unwrap_or(pool.limit),
            retry: self.retry.clone().unwrap_or_else(|| pool.retry.clone()),
        }
    }
}

/// A [`ProcessPoolExecutor`] seen through [`TaskOptions`]: what is submitted through it runs
/// with those options. Made by [`ProcessPoolExecutor::with`]; it borrows the pool, and is
/// an executor of its own (`Submit`), so `map` and the other combinators accept it.
///
/// Its [`Executor`] methods (`shutdown`, `is_shutdown`) are the pool's.
#[derive(Debug)]
pub struct WithOptions<'a> {
    pub(crate) pool: &'a ProcessPoolExecutor,
    pub(crate) options: TaskOptions,
}

impl WithOptions<'_> {
    /// [`ProcessPoolExecutor::submit_fn`], with these options.
    ///
    /// # Errors
    ///
    /// As `submit_fn`; [`SubmitError::InvalidArgument`] for a [`RetryPolicy`] with 0
    /// attempts or `poison_after(0)`.
    pub fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        const { cfutures_remote::assert_zero_sized::<F>() };
        let _ = f;
        let opts = self.options.resolve(&self.pool.defaults());
        self.pool.submit_call::<F, A, R>(arg, opts)
    }

    /// Submits a [`RemoteTask`] with these options.
    ///
    /// # Errors
    ///
    /// As [`submit_fn`](Self::submit_fn).
    pub fn submit<T>(&self, task: T) -> Result<Future<T::Output>, SubmitError>
    where
        T: RemoteTask,
        T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        <Self as Submit<T>>::submit(self, task)
    }
}

impl Executor for WithOptions<'_> {
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.pool.shutdown(wait, cancel_futures)
    }
    fn is_shutdown(&self) -> bool {
        Executor::is_shutdown(self.pool)
    }
}

/// Every [`RemoteTask`] and `map` chunk, with the view's options.
impl<T: IntoJob> Submit<T> for WithOptions<'_> {
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        let opts = self.options.resolve(&self.pool.defaults());
        self.pool.submit_job(task, opts)
    }
}
