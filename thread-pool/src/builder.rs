//! [`Builder`]: the options of a [`ThreadPoolExecutor`], and [`BuildError`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cfutures_core::TaskError;

use crate::shared::{Initializer, Shared};
use crate::ThreadPoolExecutor;

/// What an initializer returns: `()` (it can fail only by panicking) or `Result<(), E>`
/// (an `Err` breaks the pool, like a panic).
///
/// Implemented for `()` and for `Result<(), E>` where `E` converts into
/// `Box<dyn Error + Send + Sync>` (`std::io::Error`, your own errors, `String`, `&str`).
pub trait InitResult {
    /// The initializer's outcome as a `Result`.
    ///
    /// # Errors
    ///
    /// The initializer's failure.
    fn into_init_result(self) -> Result<(), TaskError>;
}

impl InitResult for () {
    fn into_init_result(self) -> Result<(), TaskError> {
        Ok(())
    }
}

impl<E> InitResult for Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn into_init_result(self) -> Result<(), TaskError> {
        self.map_err(|e| TaskError::from_boxed(e.into()))
    }
}

/// The options of a [`ThreadPoolExecutor`] (Python: the constructor's keyword arguments).
///
/// # Examples
///
/// ```
/// use cfutures_thread_pool::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::builder()
///     .max_workers(4)
///     .thread_name_prefix("download")
///     .initializer(|| println!("worker {:?} ready", std::thread::current().name()))
///     .build()
///     .unwrap();
/// let f = pool.submit(|| std::thread::current().name().unwrap().to_owned()).unwrap();
/// assert_eq!(f.result().unwrap(), "download_0");
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
    initializer: Option<Initializer>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

/// The default number of workers, as Python 3.13: `min(32, cpus + 4)`, where `cpus` is the
/// number of CPUs this process may use.
pub fn default_max_workers() -> usize {
    32.min(cfutures_core::blocking::cpus() + 4)
}

impl Builder {
    /// A builder with Python's defaults: [`default_max_workers`], the prefix
    /// `ThreadPoolExecutor-N`, no initializer.
    pub fn new() -> Self {
        Builder {
            max_workers: None,
            thread_name_prefix: None,
            initializer: None,
        }
    }

    /// The most threads the pool runs tasks on at once (default: `min(32, cpus + 4)`).
    ///
    /// Threads start lazily, one per submit while none is idle. A worker blocked on a future
    /// does not count (see the crate doc, "Nested waits").
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Names the threads `<prefix>_0`, `<prefix>_1`, … (default prefix:
    /// `ThreadPoolExecutor-N`, with `N` counting pools created without a prefix).
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Runs `f` first in every new worker thread. If it panics or returns `Err`, the pool is
    /// broken (Python: `BrokenThreadPool`): queued futures fail with
    /// [`Error::Broken`](cfutures_core::Error::Broken) carrying the cause, and later submits
    /// are refused with [`SubmitError::Broken`](cfutures_core::SubmitError::Broken).
    pub fn initializer<F, R>(mut self, f: F) -> Self
    where
        F: Fn() -> R + Send + Sync + 'static,
        R: InitResult,
    {
        self.initializer = Some(Arc::new(move || f().into_init_result()));
        self
    }

    /// Creates the pool. No thread starts until the first submit.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if `max_workers` is zero or the prefix contains a NUL byte.
    pub fn build(self) -> Result<ThreadPoolExecutor, BuildError> {
        static UNNAMED_POOLS: AtomicUsize = AtomicUsize::new(0);
        let max_workers = self.max_workers.unwrap_or_else(default_max_workers);
        if max_workers == 0 {
            return Err(BuildError(Kind::ZeroWorkers));
        }
        let prefix = match self.thread_name_prefix {
            Some(p) if p.contains('\0') => return Err(BuildError(Kind::NulInPrefix)),
            Some(p) if !p.is_empty() => p,
            // Relaxed: a unique number is all we need.
            _ => format!(
                "ThreadPoolExecutor-{}",
                UNNAMED_POOLS.fetch_add(1, Ordering::Relaxed)
            ),
        };
        Ok(ThreadPoolExecutor::from_shared(Shared::new(
            max_workers,
            prefix,
            self.initializer,
        )))
    }
}

/// Why a [`ThreadPoolExecutor`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    ZeroWorkers,
    NulInPrefix,
}

impl BuildError {
    /// True if `max_workers` was zero (Python: `ValueError("max_workers must be greater
    /// than 0")`).
    pub fn is_zero_workers(&self) -> bool {
        self.0 == Kind::ZeroWorkers
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Kind::ZeroWorkers => f.write_str("max_workers must be greater than 0"),
            Kind::NulInPrefix => f.write_str("thread_name_prefix must not contain a NUL byte"),
        }
    }
}

impl std::error::Error for BuildError {}
