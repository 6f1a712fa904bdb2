//! Error types: [`Error`] (why a future has no value), [`TaskError`] (what a task did wrong),
//! [`Broken`], [`InvalidState`], [`InvalidArgument`] and [`SubmitError`].
//!
//! Every error is cheap to clone (payloads live behind `Arc`), so every waiter on a future
//! gets the same error.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a future did not give a value: the error type of [`Future::result`](crate::Future::result).
///
/// Use the predicates (`is_cancelled()`, `is_timeout()`, …) rather than matching when
/// you only need to know the kind: the enum is `#[non_exhaustive]`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The future was cancelled before it started (Python: `CancelledError`).
    #[error("the future was cancelled")]
    Cancelled,
    /// The wait timed out; the future may still complete later (Python: `TimeoutError`).
    #[error("timed out waiting for the future")]
    Timeout,
    /// The task ran and failed: it panicked, returned an error, or its worker died
    /// (Python: the exception stored on the future).
    #[error("task failed: {0}")]
    Failed(TaskError),
    /// The executor broke and could not run the task (Python: `BrokenExecutor`,
    /// `BrokenThreadPool`, `BrokenProcessPool`), or the promise was dropped without a result.
    #[error("{0}")]
    Broken(Broken),
    /// An operation was not allowed in the future's current state (Python: `InvalidStateError`).
    #[error("{0}")]
    InvalidState(InvalidState),
    /// An argument was out of range, so nothing ran (Python: `ValueError`): a `chunksize` of
    /// 0 given to `map_vec`, say.
    #[error("{0}")]
    InvalidArgument(InvalidArgument),
    /// The wait would never end: the thread is running a future's task, and the future it
    /// was about to park on cannot complete until this thread's own task does — directly or
    /// through other tasks parked the same way (a wait cycle). Python hangs; here the wait
    /// that closes the cycle fails at once, and only that one: the others complete as the
    /// failing task returns. The future itself is unaffected (it may still complete).
    ///
    /// **Detected:** cycles among threads that run a cfutures future's task (tasks run by
    /// [`Promise::run`](crate::Promise::run) / `run_then`: every cfutures executor, in
    /// any pool, or the caller's own thread through [`InlineExecutor`](crate::InlineExecutor))
    /// and park on another future through core: [`Future::result`](crate::Future::result),
    /// `exception`, `wait`, and the combinators' `wait`, `as_completed`, `map` and
    /// `map_unordered`, with or without a timeout. **Not detected:** a thread that runs no
    /// future (it cannot be part of a cycle); a task that blocks by other means (a channel,
    /// a mutex, `sleep`) on something a parked task would provide; process-pool tasks (they
    /// run in other processes and cannot wait on futures). See [`blocking`](crate::blocking),
    /// "Deadlocks".
    #[error("{0}")]
    Deadlock(Deadlock),
}

impl Error {
    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }
    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }
    /// True for [`Error::Failed`]: the task itself failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, Error::Failed(_))
    }
    /// True for [`Error::Broken`].
    pub fn is_broken(&self) -> bool {
        matches!(self, Error::Broken(_))
    }
    /// True for [`Error::InvalidState`].
    pub fn is_invalid_state(&self) -> bool {
        matches!(self, Error::InvalidState(_))
    }
    /// True for [`Error::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Error::InvalidArgument(_))
    }
    /// True for [`Error::Deadlock`]: waiting would have closed a wait cycle.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, Error::Deadlock(_))
    }
    /// The cycle, for [`Error::Deadlock`].
    pub fn deadlock(&self) -> Option<&Deadlock> {
        match self {
            Error::Deadlock(d) => Some(d),
            _ => None,
        }
    }
    /// The task's error, for [`Error::Failed`].
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            Error::Failed(e) => Some(e),
            _ => None,
        }
    }
    /// Converts into the task's error, for [`Error::Failed`]; otherwise gives `self` back.
    pub fn into_task_error(self) -> Result<TaskError, Error> {
        match self {
            Error::Failed(e) => Ok(e),
            other => Err(other),
        }
    }
}

impl From<TaskError> for Error {
    fn from(e: TaskError) -> Self {
        Error::Failed(e)
    }
}

impl From<Broken> for Error {
    fn from(e: Broken) -> Self {
        Error::Broken(e)
    }
}

impl From<InvalidArgument> for Error {
    fn from(e: InvalidArgument) -> Self {
        Error::InvalidArgument(e)
    }
}

impl From<InvalidState> for Error {
    fn from(e: InvalidState) -> Self {
        Error::InvalidState(e)
    }
}

impl From<Deadlock> for Error {
    fn from(e: Deadlock) -> Self {
        Error::Deadlock(e)
    }
}

/// A wait cycle: the error of a wait that would never end ([`Error::Deadlock`]).
///
/// [`cycle`](Self::cycle) lists the futures around the cycle, starting with the one the
/// failing wait's thread runs: each one's task waits on the next, and the last one's on the
/// first. Displayed as `deadlock: future #… (task 'a') waits on #… (task 'b'), which waits
/// on #…`; tasks are named with [`named`](crate::named).
///
/// # Examples
///
/// ```
/// use cfutures_core::{named, pending};
///
/// // The smallest cycle: a task that waits on its own future.
/// let (promise, own) = pending::<u32>();
/// let me = own.clone();
/// promise.run(named("selfish", move || {
///     let err = me.result().unwrap_err(); // Python: hangs for ever
///     assert!(err.is_deadlock());
///     assert_eq!(err.deadlock().unwrap().cycle()[0].task_name(), Some("selfish"));
///     assert!(err.to_string().ends_with("(task 'selfish') waits on itself"));
///     0
/// }));
/// assert_eq!(*own.result().unwrap(), 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlock(Arc<[WaitLink]>);

/// One future in a [`Deadlock`]'s cycle: its id and, if given, its task's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitLink {
    future: crate::FutureId,
    task: Option<Arc<str>>,
}

impl WaitLink {
    pub(crate) fn new(future: crate::FutureId, task: Option<Arc<str>>) -> Self {
        WaitLink { future, task }
    }
    /// The future (compare with [`Future::id`](crate::Future::id)).
    pub fn future(&self) -> crate::FutureId {
        self.future
    }
    /// Its task's name, if it was given one with [`named`](crate::named).
    pub fn task_name(&self) -> Option<&str> {
        self.task.as_deref()
    }
}

impl fmt::Display for WaitLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.future)?;
        if let Some(t) = &self.task {
            write!(f, " (task '{t}')")?;
        }
        Ok(())
    }
}

impl Deadlock {
    pub(crate) fn new(cycle: Vec<WaitLink>) -> Self {
        Deadlock(cycle.into())
    }
    /// The futures around the cycle (never empty): the first is run by the thread whose
    /// wait failed; each one's task waits on the next; the last one's on the first.
    pub fn cycle(&self) -> &[WaitLink] {
        &self.0
    }
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((first, rest)) = self.0.split_first() else {
            return f.write_str("deadlock");
        };
        write!(f, "deadlock: future {first}")?;
        if rest.is_empty() {
            return f.write_str(" waits on itself");
        }
        for (i, link) in rest.iter().enumerate() {
            let which = if i == 0 { "" } else { ", which" };
            write!(f, "{which} waits on {link}")?;
        }
        write!(f, ", which waits on {}", first.future)
    }
}

impl std::error::Error for Deadlock {}

/// How a worker process ended (used by [`TaskError::WorkerDied`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum WorkerExit {
    /// The process exited with this code (e.g. `std::process::exit(3)`).
    Code(i32),
    /// The process was killed by this signal (e.g. 9 for SIGKILL, 11 for SIGSEGV).
    Signal(i32),
    /// The exit status could not be determined.
    Unknown,
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerExit::Code(c) => write!(f, "exit code {c}"),
            WorkerExit::Signal(s) => write!(f, "signal {s}{}", signal_name(*s)),
            WorkerExit::Unknown => f.write_str("unknown exit status"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// One worker process that died while it ran a task: its pid and how it ended. A task that
/// killed several is [`TaskError::Quarantined`], which lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkerDeath {
    /// The worker's process id.
    pub pid: u32,
    /// How it ended.
    pub exit: WorkerExit,
}

impl fmt::Display for WorkerDeath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker process {} ({})", self.pid, self.exit)
    }
}

/// What a task printed (its standard output and standard error, interleaved as written),
/// kept by an executor that captures output: the *last* bytes, up to the executor's limit.
/// It comes with the task's failure ([`TaskError::output`]), so that a task that died, or
/// panicked, arrives with what it printed just before.
///
/// Cheap to clone (the bytes are behind an `Arc`).
///
/// ```
/// use cfutures_core::{TaskError, TaskOutput};
///
/// let out = TaskOutput::new(&b"loading...\nparsing row 41\n"[..], 1_000_000);
/// let e = TaskError::msg("bad row").with_output(out);
/// assert!(e.is_error()); // the predicates see the error itself
/// let out = e.output().unwrap();
/// assert!(out.is_truncated()); // 1,000,000 bytes were printed, the last 26 kept
/// assert!(out.text().ends_with("parsing row 41\n"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TaskOutput {
    bytes: Arc<[u8]>,
    total: u64,
}

impl TaskOutput {
    /// What was kept (`bytes`: the last ones) of the `total` bytes the task printed. A
    /// `total` below `bytes.len()` is taken as `bytes.len()`.
    pub fn new(bytes: impl Into<Arc<[u8]>>, total: u64) -> Self {
        let bytes = bytes.into();
        let total = total.max(bytes.len() as u64);
        TaskOutput { bytes, total }
    }
    /// The bytes kept: the last ones the task printed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The bytes kept, as text (invalid UTF-8 replaced; a character cut by the limit at the
    /// start shows as a replacement character).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
    /// How many bytes the task printed in all (kept or not).
    pub fn total_len(&self) -> u64 {
        self.total
    }
    /// True if the task printed more than was kept (the first bytes were dropped).
    pub fn is_truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }
    /// True if the task printed nothing.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl fmt::Debug for TaskOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskOutput")
            .field("text", &self.text())
            .field("total", &self.total)
            .finish()
    }
}

impl fmt::Display for TaskOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// How much of a [`TaskError::WithOutput`]'s output its `Display` shows (the end of it).
const OUTPUT_SHOWN: usize = 1024;

/// What a task did wrong: the error a failed future holds (Python: the stored exception).
///
/// Cheap to clone. Use the predicates (`is_panic()`, `is_error()`, …) or match on the
/// variants (the enum is `#[non_exhaustive]`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked. The worker survived.
    Panic {
        /// The panic message (the payload if it was a string, else a placeholder).
        message: Arc<str>,
        /// Where it panicked (`file:line:column`), when the executor could capture it.
        location: Option<Arc<str>>,
    },
    /// The task returned an error (see [`fallible`](crate::fallible)).
    Error(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// The task returned an error in another process; it crossed as its type name and message.
    Remote {
        /// The Rust type name of the original error.
        type_name: Arc<str>,
        /// The original error's `Display` text.
        message: Arc<str>,
    },
    /// The worker process running the task died.
    WorkerDied {
        /// The worker's process id.
        pid: u32,
        /// How it ended.
        exit: WorkerExit,
    },
    /// The task ran past its time limit and was stopped.
    TimeLimit {
        /// The limit it exceeded.
        limit: Duration,
    },
    /// The task, its argument or its result could not be encoded or decoded on the way
    /// to or from a worker.
    Codec {
        /// What failed, and why.
        message: Arc<str>,
    },
    /// The task is *poison*: the worker processes that ran it died, each time (the process
    /// pool's `RetryPolicy` retries a task whose worker died, and quarantines it once it has
    /// killed `poison_after` of them). It is never run again, and its deaths are not held
    /// against the pool. Dask calls this `KilledWorker`.
    ///
    /// [`is_worker_died`](Self::is_worker_died) is `false` for it: use
    /// [`is_quarantined`](Self::is_quarantined) and [`deaths`](Self::deaths).
    Quarantined {
        /// Each death, in order: pid and signal or exit code.
        deaths: Arc<[WorkerDeath]>,
    },
    /// The worker running the task was declared lost: it stopped answering (its heartbeats
    /// stopped: it was killed, its machine or network failed) while the task was on it. The
    /// task may or may not have run; it is not run again. Transport-neutral: `rank` is the
    /// worker's number in its executor (an MPI rank for `cfutures-mpi`), `host` the machine
    /// it ran on.
    WorkerLost {
        /// The worker's number (its MPI rank).
        rank: u32,
        /// The host it ran on.
        host: Arc<str>,
        /// Why it was declared lost (e.g. "no heartbeat for 1.0s").
        why: Arc<str>,
    },
    /// A failure with what the task printed before it (an executor that captures output,
    /// such as the process pool with `capture_output`). The predicates
    /// ([`is_panic`](Self::is_panic), …) and [`Display`](fmt::Display) see through it to the
    /// error; match on [`without_output`](Self::without_output) to see the variant itself.
    WithOutput {
        /// The failure.
        error: Arc<TaskError>,
        /// What the task printed, its last bytes.
        output: TaskOutput,
    },
}

impl TaskError {
    /// Wraps an error a task returned.
    pub fn new<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        TaskError::Error(Arc::new(error))
    }

    /// An error with only a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        TaskError::Error(Arc::new(MessageError(message.to_string())))
    }

    /// Converts a boxed error (what `?` on `Box<dyn Error>` produces).
    pub fn from_boxed(error: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        TaskError::Error(Arc::from(error))
    }

    /// Converts a panic payload caught with [`std::panic::catch_unwind`].
    ///
    /// The payload is dropped here, and a panic in its `Drop` (a payload whose drop panics,
    /// perhaps with another such payload) is caught: converting never unwinds.
    pub fn from_panic(payload: Box<dyn Any + Send + 'static>) -> Self {
        let message = panic_message(&*payload).into();
        drop_payload(payload);
        TaskError::Panic {
            message,
            location: None,
        }
    }

    /// True for [`TaskError::Panic`].
    pub fn is_panic(&self) -> bool {
        matches!(self.without_output(), TaskError::Panic { .. })
    }
    /// True for [`TaskError::Error`] and [`TaskError::Remote`]: the task returned an error.
    pub fn is_error(&self) -> bool {
        matches!(
            self.without_output(),
            TaskError::Error(_) | TaskError::Remote { .. }
        )
    }
    /// True for [`TaskError::WorkerDied`] (not for [`TaskError::Quarantined`]: see
    /// [`is_quarantined`](Self::is_quarantined)).
    pub fn is_worker_died(&self) -> bool {
        matches!(self.without_output(), TaskError::WorkerDied { .. })
    }
    /// True for [`TaskError::WorkerLost`].
    pub fn is_worker_lost(&self) -> bool {
        matches!(self.without_output(), TaskError::WorkerLost { .. })
    }
    /// True for [`TaskError::TimeLimit`].
    pub fn is_time_limit(&self) -> bool {
        matches!(self.without_output(), TaskError::TimeLimit { .. })
    }
    /// True for [`TaskError::Codec`].
    pub fn is_codec(&self) -> bool {
        matches!(self.without_output(), TaskError::Codec { .. })
    }
    /// True for [`TaskError::Quarantined`]: a poison task, which killed the workers that ran
    /// it.
    pub fn is_quarantined(&self) -> bool {
        matches!(self.without_output(), TaskError::Quarantined { .. })
    }
    /// The worker deaths, for [`TaskError::Quarantined`] (one per attempt that died, in
    /// order).
    pub fn deaths(&self) -> Option<&[WorkerDeath]> {
        match self.without_output() {
            TaskError::Quarantined { deaths } => Some(deaths),
            _ => None,
        }
    }
    /// The panic message, for [`TaskError::Panic`].
    pub fn panic_message(&self) -> Option<&str> {
        match self.without_output() {
            TaskError::Panic { message, .. } => Some(message),
            _ => None,
        }
    }
    /// The returned error as a concrete type, for [`TaskError::Error`].
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self.without_output() {
            TaskError::Error(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }
    /// What the task printed before it failed, for [`TaskError::WithOutput`].
    pub fn output(&self) -> Option<&TaskOutput> {
        match self {
            TaskError::WithOutput { output, .. } => Some(output),
            _ => None,
        }
    }
    /// The failure itself: the error inside a [`TaskError::WithOutput`], `self` otherwise.
    /// Match on this to see the variant whether output was captured or not.
    ///
    /// ```
    /// use cfutures_core::{TaskError, TaskOutput, WorkerExit};
    ///
    /// let died = TaskError::WorkerDied { pid: 42, exit: WorkerExit::Signal(11) };
    /// let e = died.with_output(TaskOutput::new(&b"about to crash\n"[..], 15));
    /// assert!(matches!(e.without_output(), TaskError::WorkerDied { pid: 42, .. }));
    /// assert!(e.is_worker_died());
    /// ```
    pub fn without_output(&self) -> &TaskError {
        let mut e = self;
        while let TaskError::WithOutput { error, .. } = e {
            e = error;
        }
        e
    }
    /// This failure with what the task printed attached ([`TaskError::WithOutput`]); an
    /// output attached before is replaced.
    pub fn with_output(self, output: TaskOutput) -> TaskError {
        let error = match self {
            TaskError::WithOutput { error, .. } => error,
            e => Arc::new(e),
        };
        TaskError::WithOutput { error, output }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panic {
                message,
                location: Some(loc),
            } => write!(f, "task panicked at {loc}: {message}"),
            TaskError::Panic { message, .. } => write!(f, "task panicked: {message}"),
            TaskError::Error(e) => fmt::Display::fmt(e, f),
            TaskError::Remote { type_name, message } => write!(f, "{message} ({type_name})"),
            TaskError::WorkerDied { pid, exit } => {
                write!(
                    f,
                    "worker process {pid} died while running the task: {exit}"
                )
            }
            TaskError::TimeLimit { limit } => {
                write!(f, "task exceeded its time limit of {limit:?}")
            }
            TaskError::WorkerLost { rank, host, why } => {
                write!(
                    f,
                    "worker rank {rank} on host {host} was lost while it had the task: {why}"
                )
            }
            TaskError::Codec { message } => write!(f, "encoding error: {message}"),
            TaskError::Quarantined { deaths } => {
                write!(
                    f,
                    "task quarantined: the worker processes that ran it died {} time{} (",
                    deaths.len(),
                    if deaths.len() == 1 { "" } else { "s" }
                )?;
                for (i, d) in deaths.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{}: {}", d.pid, d.exit)?;
                }
                f.write_str("); it is not run again")
            }
            TaskError::WithOutput { error, output } => {
                fmt::Display::fmt(error, f)?;
                let b = output.bytes();
                let shown = &b[b.len().saturating_sub(OUTPUT_SHOWN)..];
                if output.is_empty() {
                    return f.write_str(" (the task printed nothing)");
                }
                write!(
                    f,
                    "\n--- the last {} of the {} bytes the task printed ---\n{}",
                    shown.len(),
                    output.total_len(),
                    String::from_utf8_lossy(shown)
                )
            }
        }
    }
}

impl std::error::Error for TaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.without_output() {
            TaskError::Error(e) => e.source(),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct MessageError(String);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MessageError {}

/// How many nested panics [`drop_payload`] catches (a payload whose drop panics with a
/// payload whose drop panics, …) before it leaks the last payload instead.
const PAYLOAD_DROP_DEPTH: usize = 8;

/// Drops a caught panic payload without unwinding: a panic in the payload's `Drop` is caught
/// and its own payload dropped the same way; past [`PAYLOAD_DROP_DEPTH`] nested panics the
/// last payload is leaked. A payload is user data: its drop must not kill the thread that
/// caught it (a pool's worker).
pub(crate) fn drop_payload(payload: Box<dyn Any + Send + 'static>) {
    let mut payload = payload;
    for _ in 0..PAYLOAD_DROP_DEPTH {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// Logs a panic caught where no one can be told (a done-callback, a waiter's notification, a
/// result dropped by the executor) and drops its payload without unwinding.
pub(crate) fn log_caught_panic(what: fmt::Arguments<'_>, payload: Box<dyn Any + Send + 'static>) {
    crate::diag::report(
        crate::diag::Level::Error,
        format_args!("{what}: {}", panic_message(&*payload)),
    );
    drop_payload(payload);
}

/// The text of a panic payload: `&str` and `String` payloads as they are, anything else a
/// placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any> (a non-string panic payload)".to_owned()
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    //! `TaskError` crosses process boundaries; an [`TaskError::Error`] crosses as
    //! [`TaskError::Remote`] (its type name is not known at run time, so it reads
    //! `dyn Error`). Plain enum representation: postcard has no `deserialize_any`.
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    enum Wire {
        Panic {
            message: String,
            location: Option<String>,
        },
        Remote {
            type_name: String,
            message: String,
        },
        WorkerDied {
            pid: u32,
            exit: WorkerExit,
        },
        TimeLimit {
            limit: Duration,
        },
        Codec {
            message: String,
        },
        Quarantined {
            deaths: Vec<(u32, WorkerExit)>,
        },
        WithOutput {
            error: Box<TaskError>,
            output: Vec<u8>,
            total: u64,
        },
        // Last: postcard numbers variants by position.
        WorkerLost {
            rank: u32,
            host: String,
            why: String,
        },
    }

    impl Serialize for TaskError {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let w = match self {
                TaskError::Panic { message, location } => Wire::Panic {
                    message: message.to_string(),
                    location: location.as_ref().map(|l| l.to_string()),
                },
                TaskError::Error(e) => Wire::Remote {
                    type_name: "dyn Error".into(),
                    message: e.to_string(),
                },
                TaskError::Remote { type_name, message } => Wire::Remote {
                    type_name: type_name.to_string(),
                    message: message.to_string(),
                },
                TaskError::WorkerDied { pid, exit } => Wire::WorkerDied {
                    pid: *pid,
                    exit: *exit,
                },
                TaskError::TimeLimit { limit } => Wire::TimeLimit { limit: *limit },
                TaskError::Codec { message } => Wire::Codec {
                    message: message.to_string(),
                },
                TaskError::Quarantined { deaths } => Wire::Quarantined {
                    deaths: deaths.iter().map(|d| (d.pid, d.exit)).collect(),
                },
                TaskError::WorkerLost { rank, host, why } => Wire::WorkerLost {
                    rank: *rank,
                    host: host.to_string(),
                    why: why.to_string(),
                },
                TaskError::WithOutput { error, output } => Wire::WithOutput {
                    error: Box::new(TaskError::clone(error)),
                    output: output.bytes().to_vec(),
                    total: output.total_len(),
                },
            };
            w.serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for TaskError {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(match Wire::deserialize(d)? {
                Wire::Panic { message, location } => TaskError::Panic {
                    message: message.into(),
                    location: location.map(Into::into),
                },
                Wire::Remote { type_name, message } => TaskError::Remote {
                    type_name: type_name.into(),
                    message: message.into(),
                },
                Wire::WorkerDied { pid, exit } => TaskError::WorkerDied { pid, exit },
                Wire::TimeLimit { limit } => TaskError::TimeLimit { limit },
                Wire::Codec { message } => TaskError::Codec {
                    message: message.into(),
                },
                Wire::Quarantined { deaths } => TaskError::Quarantined {
                    deaths: deaths
                        .into_iter()
                        .map(|(pid, exit)| WorkerDeath { pid, exit })
                        .collect(),
                },
                Wire::WorkerLost { rank, host, why } => TaskError::WorkerLost {
                    rank,
                    host: host.into(),
                    why: why.into(),
                },
                Wire::WithOutput {
                    error,
                    output,
                    total,
                } => TaskError::WithOutput {
                    error: Arc::new(*error),
                    output: TaskOutput::new(output, total),
                },
            })
        }
    }
}

/// The executor broke (Python: `BrokenExecutor` and its subclasses), or the promise was
/// dropped without a result.
#[derive(Clone, Debug)]
pub struct Broken(Arc<BrokenInner>);

/// Behind an `Arc` so that `Error` (and every `Result<R, Error>`) stays small.
#[derive(Debug)]
struct BrokenInner {
    message: Arc<str>,
    cause: Option<TaskError>,
}

impl Broken {
    /// A broken-executor error with this message.
    pub fn new(message: impl Into<Arc<str>>) -> Self {
        Broken(Arc::new(BrokenInner {
            message: message.into(),
            cause: None,
        }))
    }
    /// The same, with the failure that broke the executor (e.g. the initializer's panic).
    pub fn with_cause(message: impl Into<Arc<str>>, cause: TaskError) -> Self {
        Broken(Arc::new(BrokenInner {
            message: message.into(),
            cause: Some(cause),
        }))
    }
    /// What broke.
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// The failure that broke the executor, when known.
    pub fn cause(&self) -> Option<&TaskError> {
        self.0.cause.as_ref()
    }
    pub(crate) fn promise_dropped() -> Self {
        Broken::new("the promise was dropped without setting a result (the executor lost the task)")
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())?;
        if let Some(c) = self.cause() {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Broken {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// An operation that the future's state does not allow (Python: `InvalidStateError`), such as
/// setting the result of a cancelled future.
#[derive(Clone, Debug)]
pub struct InvalidState {
    message: Arc<str>,
}

impl InvalidState {
    /// An invalid-state error with this message.
    pub fn new(message: impl Into<Arc<str>>) -> Self {
        InvalidState {
            message: message.into(),
        }
    }
    /// What was not allowed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for InvalidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid state: {}", self.message)
    }
}

impl std::error::Error for InvalidState {}

/// An argument out of its allowed range (Python: `ValueError`): the one error both pools
/// give for zero workers, and what `map` gives for a `chunksize` or `buffersize` of 0.
///
/// ```
/// use cfutures_core::InvalidArgument;
///
/// let e = InvalidArgument::zero_workers();
/// assert!(e.is_zero_workers());
/// assert_eq!(e.to_string(), "max_workers must be greater than 0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidArgument {
    kind: ArgumentKind,
    message: Arc<str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgumentKind {
    ZeroWorkers,
    Other,
}

impl InvalidArgument {
    /// An invalid-argument error with this message (say what the rule is: "chunksize must be
    /// >= 1").
    pub fn new(message: impl Into<Arc<str>>) -> Self {
        InvalidArgument {
            kind: ArgumentKind::Other,
            message: message.into(),
        }
    }
    /// A pool asked for zero workers (Python: `ValueError("max_workers must be greater
    /// than 0")`). Every cfutures pool gives this one error for it.
    pub fn zero_workers() -> Self {
        InvalidArgument {
            kind: ArgumentKind::ZeroWorkers,
            message: "max_workers must be greater than 0".into(),
        }
    }
    /// True if this is [`zero_workers`](Self::zero_workers).
    pub fn is_zero_workers(&self) -> bool {
        self.kind == ArgumentKind::ZeroWorkers
    }
    /// What was wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidArgument {}

/// Why an executor refused a task, or a call that submits tasks (`map`) refused its
/// arguments.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The executor was shut down (Python: `RuntimeError('cannot schedule new futures after
    /// shutdown')`).
    #[error("cannot schedule new futures after shutdown")]
    Shutdown,
    /// The executor is broken (Python: `BrokenExecutor`).
    #[error("{0}")]
    Broken(Broken),
    /// An argument of the call was out of range, so nothing was submitted (Python:
    /// `ValueError`): `map` with a `chunksize` or `buffersize` of 0.
    #[error("{0}")]
    InvalidArgument(InvalidArgument),
}

impl SubmitError {
    /// True for [`SubmitError::Shutdown`].
    pub fn is_shutdown(&self) -> bool {
        matches!(self, SubmitError::Shutdown)
    }
    /// True for [`SubmitError::Broken`].
    pub fn is_broken(&self) -> bool {
        matches!(self, SubmitError::Broken(_))
    }
    /// True for [`SubmitError::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, SubmitError::InvalidArgument(_))
    }
}

impl From<InvalidArgument> for SubmitError {
    fn from(e: InvalidArgument) -> Self {
        SubmitError::InvalidArgument(e)
    }
}

impl From<SubmitError> for Error {
    /// A refused submission seen as the outcome of a future that never ran: `Broken` (an
    /// invalid argument stays [`Error::InvalidArgument`]).
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Broken(b) => Error::Broken(b),
            SubmitError::InvalidArgument(a) => Error::InvalidArgument(a),
            SubmitError::Shutdown => {
                Error::Broken(Broken::new("cannot schedule new futures after shutdown"))
            }
        }
    }
}
