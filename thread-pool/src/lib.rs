//! Python's `concurrent.futures.ThreadPoolExecutor`, in Rust.
//!
//! ```
//! use cfutures_thread_pool::ThreadPoolExecutor;
//!
//! let pool = ThreadPoolExecutor::new(4).unwrap();
//! let futures: Vec<_> = (0..10u64).map(|i| pool.submit(move || i * i).unwrap()).collect();
//! let total: u64 = futures.iter().map(|f| *f.result().unwrap()).sum();
//! assert_eq!(total, 285);
//! // Dropping the pool is `shutdown(wait = true)`: Python's `with` block.
//! ```
//!
//! # Python parity
//!
//! * [`ThreadPoolExecutor::new`] and [`ThreadPoolExecutor::builder`]: `max_workers` (default
//!   `min(32, cpus + 4)`, zero is an error), `thread_name_prefix` (threads are named
//!   `<prefix>_0`, `<prefix>_1`, …), `initializer`.
//! * Threads start lazily: one new thread per submit while none is idle, up to
//!   `max_workers`; an idle thread is reused first (Python 3.12's idle accounting).
//!   Threads are not retired while the pool lives (except surplus compensating threads,
//!   below, which are joined as they retire, not kept until shutdown).
//! * A task that panics fails only its own future, with the panic message and its location,
//!   `file:line:column` ([`TaskError::Panic`](cfutures_core::TaskError::Panic)), as in the
//!   process pool; the worker survives. The panic hook prints the panic when it happens,
//!   as for any thread, unless the pool was built with
//!   [`quiet_panics(true)`](Builder::quiet_panics) (Python prints nothing until
//!   `result()`). Tasks made with [`fallible`](cfutures_core::fallible) fail with the
//!   error they return.
//! * An initializer that panics or returns `Err` breaks the pool (`BrokenThreadPool`):
//!   queued futures fail with [`Error::Broken`](cfutures_core::Error::Broken), whose
//!   [`cause`](cfutures_core::Broken::cause) is the initializer's failure, and later submits
//!   are refused with [`SubmitError::Broken`].
//! * [`shutdown(wait, cancel_futures)`](ThreadPoolExecutor::shutdown): idempotent, from any
//!   thread, including from a task of the same pool. Later submits are refused with
//!   [`SubmitError::Shutdown`].
//!
//! ```
//! use cfutures_thread_pool::ThreadPoolExecutor;
//!
//! let pool = ThreadPoolExecutor::new(2).unwrap();
//! let f = pool.submit(|| -> u32 { panic!("boom") }).unwrap();
//! let err = f.result().unwrap_err();
//! assert_eq!(err.task_error().unwrap().panic_message(), Some("boom"));
//! assert_eq!(*pool.submit(|| 1).unwrap().result().unwrap(), 1); // the pool carries on
//!
//! pool.shutdown(true, false);
//! assert!(pool.submit(|| 2).unwrap_err().is_shutdown());
//! ```
//!
//! # Better than Python
//!
//! * `shutdown(cancel_futures = true)` *notifies* the cancelled futures, so `wait` and
//!   `as_completed` on them return (Python leaves them `CANCELLED` but not notified, and a
//!   `wait` without timeout hangs).
//! * Nested waits do not deadlock (below), and a real wait cycle (task `a` waits on `b`,
//!   `b` on `a`) fails the wait that closes it at once with
//!   [`Error::Deadlock`](cfutures_core::Error::Deadlock) instead of hanging (see
//!   [`cfutures_core::blocking`], "Deadlocks").
//! * No task can kill a worker: a panic is caught, and so is whatever a task leaves behind
//!   (a panic payload or a result whose `Drop` panics, a done-callback or waiter that
//!   panics); a worker that unwinds anyway is replaced.
//! * Waiting is fast: idle workers spin briefly, then yield, then park; a submit never makes a
//!   wake-up system call while a worker is spinning.
//!
//! # Nested waits
//!
//! A task that waits for another task of the same pool deadlocks Python's pool when every
//! worker is busy waiting (the tutorial example: a pool of one worker whose task submits
//! `pow(5, 2)` and waits for it). Here it does not:
//!
//! ```
//! use cfutures_thread_pool::ThreadPoolExecutor;
//! use std::sync::Arc;
//!
//! let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
//! let p = pool.clone();
//! let outer = pool.submit(move || {
//!     let inner = p.submit(|| 5u32.pow(2)).unwrap();
//!     *inner.result().unwrap() + 1
//! }).unwrap();
//! assert_eq!(*outer.result().unwrap(), 26);
//! ```
//!
//! **How:** each worker installs a [`BlockingHook`](cfutures_core::blocking::BlockingHook).
//! When a task is about to park on a future — `result`, `wait`, `exception`, and the
//! combinators' `wait` / `as_completed`, all of which block through core — after core's
//! short spin and yield, the worker counts as *blocked*, and if tasks are queued and no
//! worker is idle, the pool starts a **compensating thread**. `max_workers` therefore
//! bounds the threads that run tasks *and are not blocked on a future*; once the waits end,
//! surplus threads retire as soon as they run out of work.
//!
//! **Why a compensating thread, not running the queued task inline on the waiting worker:**
//! an inline task runs on top of the waiting task's stack, so (1) the waiting task cannot
//! resume until the inline one finishes, even if the future it waits for completed long
//! before (an unrelated long task delays it without bound); (2) a lock the waiting task
//! holds is held while the inline task runs, and `std::sync::Mutex` is not re-entrant, so an
//! inline task that takes it deadlocks the thread against itself; (3) thread-locals and
//! panics of the two tasks mix; (4) chains of nested waits grow the stack. A compensating
//! thread has none of these problems. It costs a thread start (tens of microseconds) only
//! when a worker really parks while tasks wait, and — since the hook runs only after
//! spinning and yielding — never on short waits. This is the approach of tokio's
//! `block_in_place` and of Go's scheduler.
//!
//! A worker waiting on a future that is *running* elsewhere (not queued) starts nothing;
//! a later submit may then start a thread, since the blocked worker does not count.
//! Blocking by other means (a channel, a mutex, `sleep`) is not seen, as in Python.
//!
//! A wait no thread can end — a cycle, `a` waiting on `b` while `b` waits on `a` — is not
//! compensated but reported: the wait that closes it fails at once.
//!
//! ```
//! use cfutures_core::{named, Future};
//! use cfutures_thread_pool::ThreadPoolExecutor;
//! use std::sync::mpsc;
//!
//! let pool = ThreadPoolExecutor::new(2).unwrap();
//! let (give_a, get_a) = mpsc::channel::<Future<String>>();
//! let (give_b, get_b) = mpsc::channel::<Future<String>>();
//! let wait_on = |other: mpsc::Receiver<Future<String>>| {
//!     move || match other.recv().unwrap().result() {
//!         Ok(_) => "the other one gave up".to_owned(),
//!         // One of the two: "deadlock: future #… (task 'a') waits on …".
//!         Err(e) => e.to_string(),
//!     }
//! };
//! let a = pool.submit(named("a", wait_on(get_b))).unwrap();
//! let b = pool.submit(named("b", wait_on(get_a))).unwrap();
//! give_a.send(a.clone()).unwrap();
//! give_b.send(b.clone()).unwrap();
//! let said = [a.result().unwrap().clone(), b.result().unwrap().clone()];
//! assert_eq!(said.iter().filter(|s| s.starts_with("deadlock")).count(), 1);
//! ```
//!
//! # Watching the pool
//!
//! [`max_workers`](ThreadPoolExecutor::max_workers),
//! [`live_threads`](ThreadPoolExecutor::live_threads),
//! [`idle_threads`](ThreadPoolExecutor::idle_threads),
//! [`queued_tasks`](ThreadPoolExecutor::queued_tasks),
//! [`running_tasks`](ThreadPoolExecutor::running_tasks) and
//! [`blocked_threads`](ThreadPoolExecutor::blocked_threads) are snapshots: cheap, and
//! possibly stale by the time you read them.
//!
//! # Events and statistics
//!
//! [`events`](ThreadPoolExecutor::events) subscribes to what the pool does (task submitted,
//! started on which thread, finished with its outcome and run time; threads started; the
//! pool broken or shut down), and [`stats`](ThreadPoolExecutor::stats) gives counts and
//! run-time percentiles at any time. Python offers neither. Nearly free while nobody
//! subscribes: one relaxed atomic load per submit and two per task (as it starts and as it
//! ends), and counts that each worker keeps for itself.
//!
//! # Generic code
//!
//! [`ThreadPoolExecutor`] implements [`Executor`] and [`Submit<T>`] for every task `T` (any
//! `FnOnce() -> R + Send + 'static`, [`fallible`](cfutures_core::fallible) closures,
//! [`MapChunk`](cfutures_core::MapChunk)), so it works with every combinator and with code
//! written against the traits. Tasks must be `Send`:
//!
//! ```compile_fail
//! use cfutures_thread_pool::ThreadPoolExecutor;
//! let pool = ThreadPoolExecutor::new(1).unwrap();
//! let rc = std::rc::Rc::new(1);
//! pool.submit(move || *rc + 1); // Rc is not Send
//! ```

mod builder;
mod job;
mod shared;

use std::fmt;
use std::sync::Arc;

use cfutures_core::events::{Events, Stats, WorkerId};
use cfutures_core::{Executor, Future, Submit, SubmitError, Task};

pub use builder::{default_max_workers, BuildError, Builder, InitResult};
use job::{RawJob, TaskJob};
use shared::{Refused, Shared};

/// A pool of threads that runs tasks and gives their results as [`Future`]s (Python:
/// `concurrent.futures.ThreadPoolExecutor`).
///
/// Dropping the pool shuts it down and waits for every queued and running task
/// (`shutdown(wait = true, cancel_futures = false)`, Python's `with` block). To share it
/// between threads (or with its own tasks), put it in an [`Arc`].
///
/// See the [crate documentation](crate) for the semantics.
pub struct ThreadPoolExecutor {
    shared: Arc<Shared>,
}

impl ThreadPoolExecutor {
    /// A pool of at most `max_workers` threads (started lazily), with default options.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if `max_workers` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_thread_pool::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(2).unwrap();
    /// assert_eq!(pool.max_workers(), 2);
    /// assert_eq!(pool.live_threads(), 0); // lazily started
    /// assert!(ThreadPoolExecutor::new(0).unwrap_err().is_zero_workers());
    /// ```
    pub fn new(max_workers: usize) -> Result<Self, BuildError> {
        Builder::new().max_workers(max_workers).build()
    }

    /// A [`Builder`] to set `max_workers`, `thread_name_prefix` and `initializer`.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        ThreadPoolExecutor { shared }
    }

    /// Schedules `task` and returns the future of its output (Python: `submit`).
    ///
    /// `task` is any `FnOnce() -> R + Send + 'static`, a [`fallible`](cfutures_core::fallible)
    /// closure, or any other [`Task`]. A panic in the task fails its future with
    /// [`TaskError::Panic`](cfutures_core::TaskError::Panic); the worker survives.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Shutdown`] after [`shutdown`](Self::shutdown);
    /// [`SubmitError::Broken`] if an initializer failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_core::fallible;
    /// use cfutures_thread_pool::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(2).unwrap();
    /// let ok = pool.submit(|| "21".parse::<u32>().unwrap() * 2).unwrap();
    /// let bad = pool.submit(fallible(|| "x".parse::<u32>())).unwrap();
    /// assert_eq!(*ok.result().unwrap(), 42);
    /// assert!(bad.exception().unwrap().is_some());
    /// ```
    pub fn submit<T>(&self, task: T) -> Result<Future<T::Output>, SubmitError>
    where
        T: Task + Send + 'static,
        T::Output: Send + Sync + 'static,
    {
        let (promise, future) = cfutures_core::pending();
        let id = future.id();
        match self
            .shared
            .submit(RawJob::new(TaskJob { promise, task }), id)
        {
            Ok(()) => Ok(future),
            Err(Refused::Shutdown) => Err(SubmitError::Shutdown),
            Err(Refused::Broken(b)) => Err(SubmitError::Broken(b)),
        }
    }

    /// Stops accepting tasks (Python: `shutdown(wait, cancel_futures)`). Idempotent; callable
    /// from any thread, including from a task of this pool.
    ///
    /// * `cancel_futures`: cancels every task that has not started. Unlike Python, the
    ///   cancelled futures are *notified*: `wait` and `as_completed` count them as done.
    ///   Their done-callbacks run in this thread.
    /// * `wait`: blocks until every queued (not cancelled) and running task has finished and
    ///   every worker thread has exited (and been joined). Without it, the work still
    ///   completes in the background.
    ///
    /// **From a task of this pool**, `wait` cannot wait for the calling task itself, which is
    /// still running: it waits until every queued task has run and every *other* worker
    /// has exited (or is itself waiting in `shutdown`), then returns; the caller's thread
    /// exits when its task returns. While waiting, the caller counts as blocked, so queued
    /// tasks get a thread even in a pool of one.
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_thread_pool::ThreadPoolExecutor;
    /// use std::sync::Arc;
    ///
    /// let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    /// let p = pool.clone();
    /// let f = pool.submit(move || p.shutdown(true, false)).unwrap();
    /// f.result().unwrap(); // returned: no deadlock
    /// assert!(pool.submit(|| ()).unwrap_err().is_shutdown());
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.shared.shutdown(wait, cancel_futures);
    }

    /// True once [`shutdown`](Self::shutdown) was called or the pool broke.
    pub fn is_shutdown(&self) -> bool {
        self.shared.is_closed()
    }

    /// The most threads that run tasks at once (not counting workers blocked on a future).
    pub fn max_workers(&self) -> usize {
        self.shared.max_workers()
    }

    /// Worker threads alive now (including threads being started, and compensating threads).
    pub fn live_threads(&self) -> usize {
        self.shared.live_threads()
    }

    /// Worker threads waiting for work.
    pub fn idle_threads(&self) -> usize {
        self.shared.counts().idle
    }

    /// Tasks submitted and not yet started (including cancelled ones not yet dequeued).
    pub fn queued_tasks(&self) -> usize {
        self.shared.queued_tasks()
    }

    /// Tasks running now (including those blocked on a future).
    pub fn running_tasks(&self) -> usize {
        self.shared.counts().running
    }

    /// Worker threads whose task is parked on a future (see "Nested waits" in the crate doc).
    pub fn blocked_threads(&self) -> usize {
        self.shared.counts().blocked
    }

    /// Subscribes to this pool's events: `Submitted`, `Started` (on which worker thread),
    /// `Finished` (outcome and run time), `WorkerStarted`, `WorkerDied` (a worker whose loop
    /// unwound, replaced), `Broken` (an initializer failed), and `Shutdown`, the last one,
    /// once the pool is shut down (or broken) and every worker has exited; the stream ends
    /// after it. See [`cfutures_core::events`] for the order of a task's events and the
    /// buffering (a subscriber that does not keep up loses events and counts them; the
    /// pool never waits for it).
    ///
    /// Workers are numbered from 0 in the order they start; worker `n` is the thread named
    /// [`worker_name(n)`](Self::worker_name). Tasks are named by their futures' ids
    /// ([`Future::id`]).
    ///
    /// **Cost**: while nobody subscribes, one relaxed atomic load per submit and two per
    /// task run (as it starts, and again as it ends, so that a subscriber that comes while a
    /// task runs gets its `Finished`). With a subscriber, each event is built and sent (a
    /// channel per subscriber, capped in length), and every task is timed.
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_core::events::{Event, TaskOutcome};
    /// use cfutures_thread_pool::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(2).unwrap();
    /// let events = pool.events();
    /// let f = pool.submit(|| 6 * 7).unwrap();
    /// assert_eq!(*f.result().unwrap(), 42);
    /// pool.shutdown(true, false);
    /// let seen: Vec<Event> = events.into_iter().collect(); // ends after `Shutdown`
    /// let finished = seen.iter().find(|e| e.outcome().is_some()).unwrap();
    /// assert_eq!(finished.task(), Some(f.id()));
    /// assert_eq!(finished.outcome(), Some(TaskOutcome::Ok));
    /// assert!(matches!(seen.last(), Some(Event::Shutdown { .. })));
    /// ```
    pub fn events(&self) -> Events {
        self.shared.events()
    }

    /// A snapshot of what the pool has done: tasks submitted, queued, running, done
    /// (succeeded, failed, cancelled), workers started and their own counts, and run-time
    /// percentiles. Kept whether or not anyone subscribes to [`events`](Self::events).
    ///
    /// Counts are exact once the pool is idle; read while tasks run, the numbers are not
    /// one instant's state. Run times: while a subscriber listens every task is timed,
    /// otherwise one task in 32 per worker, from each worker's first (timing costs as much
    /// as a no-op task), so `run_times.count` counts the timed tasks and the percentiles are
    /// those of a sample.
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_core::fallible;
    /// use cfutures_thread_pool::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(2).unwrap();
    /// pool.submit(|| 1).unwrap().result().unwrap();
    /// pool.submit(fallible(|| "x".parse::<u8>())).unwrap().exception().unwrap();
    /// pool.shutdown(true, false);
    /// let s = pool.stats();
    /// assert_eq!((s.submitted, s.succeeded, s.failed, s.queued, s.running), (2, 1, 1, 0, 0));
    /// assert_eq!(s.workers.iter().map(|w| w.finished).sum::<u64>(), 2);
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The name of worker `worker`'s thread (`<thread_name_prefix>_<worker>`), as events
    /// number workers.
    pub fn worker_name(&self, worker: WorkerId) -> String {
        format!("{}_{}", self.shared.prefix(), worker)
    }

    /// Threads this pool has started so far (for tests).
    #[doc(hidden)]
    pub fn started_threads(&self) -> usize {
        self.shared.started_threads()
    }

    /// Join handles the pool holds: threads started and not yet joined (for tests).
    #[doc(hidden)]
    pub fn thread_handles(&self) -> usize {
        self.shared.thread_handles()
    }
}

impl Default for ThreadPoolExecutor {
    /// A pool with [`default_max_workers`] workers and default options.
    fn default() -> Self {
        Builder::new()
            .build()
            .expect("the default options are valid")
    }
}

impl Drop for ThreadPoolExecutor {
    /// `shutdown(wait = true, cancel_futures = false)`.
    fn drop(&mut self) {
        self.shared.shutdown(true, false);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.shared.counts();
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.max_workers())
            .field("live_threads", &self.live_threads())
            .field("idle_threads", &c.idle)
            .field("running_tasks", &c.running)
            .field("queued_tasks", &self.queued_tasks())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

impl Executor for ThreadPoolExecutor {
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        ThreadPoolExecutor::shutdown(self, wait, cancel_futures)
    }
    fn is_shutdown(&self) -> bool {
        ThreadPoolExecutor::is_shutdown(self)
    }
}

impl<T> Submit<T> for ThreadPoolExecutor
where
    T: Task + Send + 'static,
    T::Output: Send + Sync + 'static,
{
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        ThreadPoolExecutor::submit(self, task)
    }
}
