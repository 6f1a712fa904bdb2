//! [`Builder`]: the options of a [`ThreadPoolExecutor`], and [`BuildError`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cfutures_core::{panics, InvalidArgument, TaskError};

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
    quiet_panics: bool,
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
            .field("quiet_panics", &self.quiet_panics)
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
            quiet_panics: false,
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

    /// Keeps the panic hook quiet for this pool's tasks (default: `false`, the hook prints).
    ///
    /// A task that panics always fails its future with [`TaskError::Panic`], which holds
    /// the message and the location (`file:line:column`). Whether the panic is *also*
    /// printed when it happens is up to the panic hook: by default Rust's hook prints
    /// `thread '<name>' panicked at <file:line:column>: <message>` on standard error, for
    /// a pool's task as for any thread. With `quiet_panics(true)` it prints nothing for a
    /// panic inside one of this pool's tasks — as in Python, where the exception shows up
    /// only when `result()` raises it. (See [`cfutures_core::panics`]; a panic hook the
    /// program installs later replaces this behaviour.)
    ///
    /// ```
    /// use cfutures_thread_pool::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::builder().quiet_panics(true).build().unwrap();
    /// let f = pool.submit(|| -> u8 { panic!("nothing printed") }).unwrap();
    /// let err = f.result().unwrap_err(); // the panic shows up here, with its location
    /// assert!(err.to_string().contains("nothing printed"));
    /// ```
    pub fn quiet_panics(mut self, quiet: bool) -> Self {
        self.quiet_panics = quiet;
        self
    }

    /// Creates the pool. No thread starts until the first submit.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if `max_workers` is zero ([`InvalidArgument::zero_workers`], the error
    /// every cfutures pool gives for it) or the prefix contains a NUL byte.
    pub fn build(self) -> Result<ThreadPoolExecutor, BuildError> {
        static UNNAMED_POOLS: AtomicUsize = AtomicUsize::new(0);
        let max_workers = self.max_workers.unwrap_or_else(default_max_workers);
        if max_workers == 0 {
            return Err(InvalidArgument::zero_workers());
        }
        // Task panics are recorded with their location (see `cfutures_core::panics`).
        panics::install_hook();
        let initializer = if self.quiet_panics {
            // Each worker marks itself quiet once its own initializer succeeded (a failing
            // initializer is printed as usual: it breaks the pool).
            let user = self.initializer;
            Some(Arc::new(move || {
                if let Some(init) = &user {
                    init()?;
                }
                panics::set_quiet(true);
                Ok(())
            }) as Initializer)
        } else {
            self.initializer
        };
        let prefix = match self.thread_name_prefix {
            Some(p) if p.contains('\0') => {
                return Err(InvalidArgument::new(
                    "thread_name_prefix must not contain a NUL byte",
                ))
            }
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
            initializer,
        )))
    }
}

/// Why a [`ThreadPoolExecutor`] could not be built: an argument out of range
/// ([`InvalidArgument`]; [`is_zero_workers`](InvalidArgument::is_zero_workers) for
/// `max_workers(0)`, Python's `ValueError("max_workers must be greater than 0")`).
///
/// The same type as the process pool's zero-worker error, with the same message.
pub type BuildError = InvalidArgument;
