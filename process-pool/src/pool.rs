//! The parent side: [`ProcessPoolExecutor`], its [`Builder`], and the I/O thread.
//!
//! # Who touches what
//!
//! * `Shared::state` (one mutex): the queue of jobs not yet sent, and per worker the command
//!   pipe's write end, its output buffer and the jobs in its window (sent, in order). User
//!   threads take it to submit (and may write a frame straight into an idle worker's pipe,
//!   never blocking: the pipes are non-blocking and what does not fit waits in the buffer); the
//!   I/O thread takes it to account for results, deaths, and to refill windows.
//! * The I/O thread alone owns the result pipes, their input buffers, and the child
//!   processes (it spawns and reaps them all, so that `PR_SET_PDEATHSIG`, which follows the
//!   spawning *thread*, fires only when the pool is gone).
//! * Futures are completed, and user callbacks run, outside the lock.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cfutures_core::{
    Broken, ChunkOutput, Executor, Future, FutureId, MapChunk, Promise, Submit, SubmitError, Task,
    TaskError, WorkerExit,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::prim;
use crate::sys;
use crate::wire::{self, FnId, Tramp};
use crate::worker;

/// A task type that can run in a worker process: serializable, with a serializable output.
///
/// Implement it (an empty impl) for your task types; this opt-in marker is what lets the
/// pool accept both task types and `map` chunks through [`Submit`].
///
/// # Examples
///
/// ```
/// use cfutures_core::{Submit, Task, TaskError};
/// use cfutures_process_pool::{ProcessPoolExecutor, RemoteTask};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Fib(u32);
///
/// impl Task for Fib {
///     type Output = u64;
///     fn run(self) -> Result<u64, TaskError> {
///         let (mut a, mut b) = (0u64, 1u64);
///         for _ in 0..self.0 {
///             (a, b) = (b, a + b);
///         }
///         Ok(a)
///     }
/// }
/// impl RemoteTask for Fib {}
///
/// let pool = ProcessPoolExecutor::new(1).unwrap();
/// let f = pool.submit(Fib(50)).unwrap();
/// assert_eq!(*f.result().unwrap(), 12_586_269_025);
/// ```
pub trait RemoteTask: Task + Serialize + DeserializeOwned + Send + 'static {}

/// What happens when a worker process dies (killed, crashed, exited) while the pool runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerDeathPolicy {
    /// The task the worker was running fails with [`TaskError::WorkerDied`] (pid and exit
    /// code or signal); the worker is replaced; every other task carries on. The default.
    #[default]
    FailTask,
    /// Python's behaviour: the pool becomes broken, every pending and running future fails
    /// with its own [`Error::Broken`](cfutures_core::Error::Broken), later submits are
    /// refused.
    BreakPool,
}

/// Where the workers' standard output goes. It is never the protocol's pipe, so however
/// much a task prints, the pool is not disturbed.
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum WorkerOutput {
    /// To the parent's standard error (the default).
    #[default]
    Stderr,
    /// To the parent's standard output.
    Stdout,
    /// Discarded.
    Null,
    /// To this file.
    File(File),
}

/// Configures a [`ProcessPoolExecutor`] (Python's constructor arguments, and more).
///
/// # Examples
///
/// ```
/// use cfutures_process_pool::{ProcessPoolExecutor, WorkerDeathPolicy};
/// use std::time::Duration;
///
/// fn setup(level: u8) {
///     assert!(level > 0);
/// }
///
/// let pool = ProcessPoolExecutor::builder()
///     .max_workers(2)
///     .initializer(setup, 3u8)
///     .max_tasks_per_child(1000)
///     .on_worker_death(WorkerDeathPolicy::FailTask)
///     .time_limit(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// # drop(pool);
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    max_workers: Option<usize>,
    init: Option<(FnId, Vec<u8>)>,
    max_tasks_per_child: Option<u64>,
    policy: WorkerDeathPolicy,
    time_limit: Option<Duration>,
    output: WorkerOutput,
}

impl Builder {
    /// The number of worker processes (default: the number of CPUs).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// A function each worker runs with `arg` before its first task (Python: `initializer`,
    /// `initargs`). If it panics (or the worker dies in it), the pool becomes broken.
    ///
    /// `f` must be a fn item or a closure that captures nothing (checked at compile time).
    ///
    /// # Panics
    ///
    /// If `arg` cannot be encoded.
    pub fn initializer<F, A>(mut self, f: F, arg: A) -> Self
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        const { wire::assert_zero_sized::<F>() };
        let _ = f;
        let id = wire::fn_id(wire::run_init::<F, A> as Tramp)
            .unwrap_or_else(|e| panic!("initializer: {e}"));
        let mut payload = Vec::new();
        wire::encode_into(&arg, &mut payload).unwrap_or_else(|e| panic!("initializer: {e}"));
        self.init = Some((id, payload));
        self
    }

    /// Retire each worker after it ran `n` tasks, and start a fresh one (Python:
    /// `max_tasks_per_child`).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// What a worker's death does (default: [`WorkerDeathPolicy::FailTask`]).
    pub fn on_worker_death(mut self, policy: WorkerDeathPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A default limit on how long each task may run; a task past it has its worker killed
    /// and replaced, and fails with [`TaskError::TimeLimit`]. Per task:
    /// [`ProcessPoolExecutor::submit_with_timeout`].
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Where the workers' standard output goes (default: the parent's standard error).
    pub fn worker_output(mut self, output: WorkerOutput) -> Self {
        self.output = output;
        self
    }

    /// Creates the pool. Workers start on demand, when tasks arrive.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `max_workers` or `max_tasks_per_child` is 0; an I/O error if the
    /// pool's pipe or thread cannot be created or the executable cannot be identified.
    pub fn build(self) -> io::Result<ProcessPoolExecutor> {
        let max_workers = match self.max_workers {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "max_workers must be greater than 0",
                ))
            }
            Some(n) => n,
            None => cfutures_core::blocking::cpus(),
        };
        if self.max_tasks_per_child == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_tasks_per_child must be greater than 0",
            ));
        }
        let stdout = match self.output {
            WorkerOutput::Stderr => Some(sys::dup_above(2, 3)?),
            WorkerOutput::Stdout => None,
            WorkerOutput::Null => Some(File::options().write(true).open("/dev/null")?.into()),
            WorkerOutput::File(f) => Some(f.into()),
        };
        let (wake_r, wake_w) = sys::pipe()?;
        sys::set_nonblocking(wake_r.as_raw_fd())?;
        sys::set_nonblocking(wake_w.as_raw_fd())?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: Vec::new(),
                next_id: 1,
                shutdown: false,
                broken: None,
                cancel_heads: Vec::new(),
                forced: false,
            }),
            wake_w,
            wake_pending: AtomicBool::new(false),
            config: Config {
                max_workers,
                init: self.init,
                max_tasks_per_child: self.max_tasks_per_child,
                policy: self.policy,
                time_limit: self.time_limit,
                stdout,
                exe: sys::worker_executable()?.into_os_string(),
                argv0: std::env::args_os()
                    .next()
                    .unwrap_or_else(|| OsString::from("cfutures-worker")),
                env_value: worker::env_value()?,
            },
        });
        let s2 = shared.clone();
        let io = thread::Builder::new()
            .name("cfutures-process-pool-io".into())
            .spawn(move || Io::new(s2, wake_r).run())?;
        let io_thread = io.thread().id();
        Ok(ProcessPoolExecutor {
            shared,
            io: Mutex::new(Some(io)),
            io_thread,
        })
    }
}

struct Config {
    max_workers: usize,
    init: Option<(FnId, Vec<u8>)>,
    max_tasks_per_child: Option<u64>,
    policy: WorkerDeathPolicy,
    time_limit: Option<Duration>,
    stdout: Option<OwnedFd>,
    exe: OsString,
    argv0: OsString,
    env_value: String,
}

struct Shared {
    state: Mutex<State>,
    wake_w: OwnedFd,
    wake_pending: AtomicBool,
    config: Config,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock except on bugs; the state stays consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the I/O thread (at most one byte in flight).
    fn wake(&self) {
        // Relaxed would do for the flag alone; AcqRel orders it with the state the waker
        // changed under the lock (released already), and the I/O thread's reset.
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = sys::write(self.wake_w.as_raw_fd(), &[1]);
        }
    }
}

/// The type-erased promise of one job.
trait Slot: Send {
    fn future_id(&self) -> FutureId;
    fn is_cancelled(&self) -> bool;
    /// Marks it running (false: it was cancelled, and that is now noticed).
    fn start(&self) -> bool;
    fn cancel(&self);
    /// Completes the future; a [`Outcome::Frame`]'s payload is in `payloads`.
    fn finish(self: Box<Self>, outcome: Outcome, payloads: &[u8]);
}

enum Outcome {
    /// Encoded value (`true`) or encoded `TaskError` (`false`): where it is in the I/O
    /// thread's payload buffer (copied there from the result pipe's buffer, so that
    /// results cost no allocation of their own on the way to being decoded).
    Frame(bool, std::ops::Range<usize>),
    Failed(TaskError),
    Broken(Broken),
    Cancelled,
}

struct TypedSlot<R> {
    promise: Promise<R>,
    id: FutureId,
    decode: fn(&[u8]) -> Result<R, TaskError>,
}

impl<R: DeserializeOwned + Send + Sync + 'static> Slot for TypedSlot<R> {
    fn future_id(&self) -> FutureId {
        self.id
    }
    fn is_cancelled(&self) -> bool {
        self.promise.is_cancelled()
    }
    fn start(&self) -> bool {
        self.promise.set_running_or_notify_cancel()
    }
    fn cancel(&self) {
        self.promise.future().cancel();
    }
    fn finish(self: Box<Self>, outcome: Outcome, payloads: &[u8]) {
        let p = self.promise;
        let _ = match outcome {
            Outcome::Frame(true, r) => p.set_outcome((self.decode)(&payloads[r])),
            Outcome::Frame(false, r) => {
                p.set_exception(match wire::decode::<TaskError>(&payloads[r]) {
                    Ok(e) | Err(e) => e,
                })
            }
            Outcome::Failed(e) => p.set_exception(e),
            Outcome::Broken(b) => p.set_broken(b),
            Outcome::Cancelled => p.set_cancelled(),
        };
    }
}

struct Job {
    id: u64,
    frame: Vec<u8>,
    slot: Box<dyn Slot>,
    limit: Option<Duration>,
    /// Already marked running (it was in a worker that died before starting it).
    started: bool,
    /// `cancel` asked to stop it; it is killed as soon as it is the head of its window.
    cancel: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// The task with this id ran past its limit.
    TimeLimit(Duration, u64),
    /// The task with this id was cancelled while running.
    Cancel(u64),
    Forced,
    /// The worker's result stream was malformed.
    Protocol,
}

struct Worker {
    key: u64,
    pid: i32,
    cmd: Option<OwnedFd>,
    out: Vec<u8>,
    out_pos: usize,
    window: VecDeque<Job>,
    dispatched: u64,
    hello: bool,
    init_done: bool,
    ewma_ns: Option<u64>,
    head_since: Instant,
    kill: Option<Kill>,
}

impl Worker {
    /// How many jobs may be in its window: deep for tiny tasks (latency of the round trip
    /// dominates), one for long ones (so `cancel` keeps working on the rest, as in Python).
    ///
    /// A head that has been running for long (`LONG_HEAD`) is a long task, whatever the
    /// average of the past ones says: nothing more goes behind it. (The average lags when
    /// tiny tasks are followed by long ones: in W6, after W3, the first worker to finish a
    /// long task learned it, the other still looked fit for 64, and got the 5 tasks still
    /// queued, while the first then sat idle: 1.3× instead of 2×.) `LONG_HEAD` is well
    /// above the window's aim, because a head's age also counts the time its worker was
    /// not scheduled and the I/O thread's delay in seeing its result: tiny tasks on a busy
    /// machine would keep hitting a limit near 100 µs.
    fn depth(&self, now: Instant) -> usize {
        const QUEUED_WORK_NS: u64 = 100_000;
        const LONG_HEAD: Duration = Duration::from_millis(5);
        if !self.window.is_empty() && now.saturating_duration_since(self.head_since) > LONG_HEAD {
            return 1;
        }
        match self.ewma_ns {
            None => 1,
            Some(ns) => (QUEUED_WORK_NS / ns.max(1)).clamp(1, 64) as usize,
        }
    }

    fn has_room(&self, max_tasks: Option<u64>, now: Instant) -> bool {
        self.cmd.is_some()
            && self.kill.is_none()
            && self.window.len() < self.depth(now)
            && max_tasks.map_or(true, |m| self.dispatched < m)
    }

    /// Writes what the pipe takes now (never blocks).
    fn flush(&mut self) {
        let Some(fd) = &self.cmd else {
            self.out.clear();
            self.out_pos = 0;
            return;
        };
        while self.out_pos < self.out.len() {
            match sys::write(fd.as_raw_fd(), &self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(_) => break, // EAGAIN: later, on POLLOUT; EPIPE: the death shows on the result pipe
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > 1 << 20 {
                self.out = Vec::new();
            }
        }
    }

    fn send(&mut self, job: Job) {
        self.out.extend_from_slice(&job.frame);
        if self.window.is_empty() {
            self.head_since = Instant::now();
        }
        self.window.push_back(job);
        self.dispatched += 1;
    }
}

struct State {
    queue: VecDeque<Job>,
    workers: Vec<Worker>,
    next_id: u64,
    shutdown: bool,
    broken: Option<Broken>,
    /// Futures `cancel` asked to stop that were at the head of a window (the I/O thread kills).
    cancel_heads: Vec<FutureId>,
    /// `terminate_workers` / `kill_workers` ran: no worker is started any more.
    forced: bool,
}

/// Completions gathered under the lock, run after it is released.
type Done = Vec<(Box<dyn Slot>, Outcome)>;

impl State {
    /// Sends queued jobs to workers with room; cancelled ones are set aside (to be dropped
    /// outside the lock, which notices their cancellation). With `idle_only`, only to
    /// workers running nothing.
    fn dispatch(&mut self, cfg: &Config, discard: &mut Vec<Job>, idle_only: bool) {
        // Queue behind a running task only when no more workers can start: an idle or new
        // worker is better than a place in a busy one's window.
        let pipeline = !idle_only && self.live_workers() >= cfg.max_workers;
        let now = Instant::now();
        while !self.queue.is_empty() {
            let Some(w) = self
                .workers
                .iter_mut()
                .filter(|w| w.has_room(cfg.max_tasks_per_child, now))
                .filter(|w| pipeline || w.window.is_empty())
                .min_by_key(|w| w.window.len())
            else {
                break;
            };
            let mut job = self.queue.pop_front().expect("not empty");
            if !job.started {
                if job.slot.is_cancelled() || !job.slot.start() {
                    discard.push(job);
                    continue;
                }
                job.started = true;
            }
            w.send(job);
        }
        for w in &mut self.workers {
            if !w.out.is_empty() {
                w.flush();
            }
            if cfg.max_tasks_per_child.is_some_and(|m| w.dispatched >= m) && w.out.is_empty() {
                // Retire: it finishes what it has, sees end of file, and exits.
                w.cmd = None;
            }
        }
    }

    /// Workers that take (or still run) tasks: not retired ones that are winding down.
    fn live_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.cmd.is_some() || !w.window.is_empty())
            .count()
    }

    /// Breaks the pool: every queued and running job fails with its own `Broken`, every
    /// worker is killed.
    fn break_pool(&mut self, b: Broken, done: &mut Done) {
        if self.broken.is_some() {
            return;
        }
        self.broken = Some(b.clone());
        self.shutdown = true;
        // Python: every pending future, queued or running, fails with its own error.
        for job in self.queue.drain(..) {
            if job.started || job.slot.start() {
                done.push((job.slot, Outcome::Broken(b.clone())));
            }
        }
        for w in &mut self.workers {
            for job in w.window.drain(..) {
                done.push((job.slot, Outcome::Broken(b.clone())));
            }
            w.kill.get_or_insert(Kill::Forced);
            w.cmd = None;
            sys::kill(w.pid, libc::SIGKILL);
        }
    }
}

/// A pool of worker processes: Python's `concurrent.futures.ProcessPoolExecutor`, that
/// survives its workers dying, stops runaway tasks, and never leaves a process behind.
///
/// See the [crate documentation](crate) for what can be submitted and how workers start.
///
/// Dropping the pool shuts it down and waits for the accepted tasks (Python's `with`), so a
/// task that never ends keeps the drop waiting: give such tasks a time limit, or call
/// [`kill_workers`](Self::kill_workers) first.
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
    io: Mutex<Option<JoinHandle<()>>>,
    io_thread: thread::ThreadId,
}

impl std::fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.shared.config.max_workers)
            .field("workers", &st.workers.len())
            .field("queued", &st.queue.len())
            .field("shutdown", &st.shutdown)
            .field("broken", &st.broken.is_some())
            .finish()
    }
}

impl ProcessPoolExecutor {
    /// A pool of at most `max_workers` worker processes.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(max_workers: usize) -> io::Result<Self> {
        Builder::default().max_workers(max_workers).build()
    }

    /// A builder, for the other options.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Runs `f(arg)` in a worker process (Python: `submit(fn, arg)`).
    ///
    /// `f` must be a fn item or a closure that captures nothing: the worker runs the same
    /// executable and finds the same code there, but captured state could not travel.
    /// Capturing closures are rejected at compile time (pass the data as `arg`):
    ///
    /// ```compile_fail
    /// # use cfutures_process_pool::ProcessPoolExecutor;
    /// let pool = ProcessPoolExecutor::new(1).unwrap();
    /// let k = 10;
    /// pool.submit_fn(move |x: u32| x + k, 1u32); // captures `k`: does not build
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_process_pool::ProcessPoolExecutor;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = ProcessPoolExecutor::new(1).unwrap();
    /// let f = pool.submit_fn(square, 12).unwrap();
    /// assert_eq!(*f.result().unwrap(), 144);
    /// let g = pool.submit_fn(|(a, b): (u32, u32)| a.max(b), (3, 9)).unwrap();
    /// assert_eq!(*g.result().unwrap(), 9);
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubmitError::Shutdown`] after shutdown, [`SubmitError::Broken`] if the pool broke.
    /// An argument that cannot be encoded fails the future with [`TaskError::Codec`].
    pub fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.submit_fn_with_timeout_opt(f, arg, self.shared.config.time_limit)
    }

    /// [`submit_fn`](Self::submit_fn) with a limit on the run time: past it, the worker is
    /// killed and replaced, and the future fails with [`TaskError::TimeLimit`].
    ///
    /// # Errors
    ///
    /// As [`submit_fn`](Self::submit_fn).
    pub fn submit_fn_with_timeout<F, A, R>(
        &self,
        f: F,
        arg: A,
        limit: Duration,
    ) -> Result<Future<R>, SubmitError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.submit_fn_with_timeout_opt(f, arg, Some(limit))
    }

    fn submit_fn_with_timeout_opt<F, A, R>(
        &self,
        f: F,
        arg: A,
        limit: Option<Duration>,
    ) -> Result<Future<R>, SubmitError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        const { wire::assert_zero_sized::<F>() };
        let _ = f;
        self.submit_encoded(
            wire::run_fn::<F, A, R> as Tramp,
            &arg,
            limit,
            wire::decode::<R>,
        )
    }

    /// Submits a [`RemoteTask`] with a limit on its run time (see
    /// [`submit_fn_with_timeout`](Self::submit_fn_with_timeout)).
    ///
    /// # Errors
    ///
    /// As [`submit_fn`](Self::submit_fn).
    pub fn submit_with_timeout<T>(
        &self,
        task: T,
        limit: Duration,
    ) -> Result<Future<T::Output>, SubmitError>
    where
        T: RemoteTask,
        T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.submit_encoded(
            wire::run_task::<T> as Tramp,
            &task,
            Some(limit),
            wire::decode::<T::Output>,
        )
    }

    /// Encodes and queues one job.
    fn submit_encoded<V: Serialize + ?Sized, R>(
        &self,
        tramp: Tramp,
        value: &V,
        limit: Option<Duration>,
        decode: fn(&[u8]) -> Result<R, TaskError>,
    ) -> Result<Future<R>, SubmitError>
    where
        R: DeserializeOwned + Send + Sync + 'static,
    {
        // Room for the frame at once in the common case (postcard is rarely larger than
        // the value in memory), rather than growing it by doubling.
        let guess = wire::CMD_HEADER + std::mem::size_of_val(value).clamp(16, 1 << 16);
        self.submit_with(
            tramp,
            guess,
            |frame| wire::encode_into(value, frame),
            limit,
            decode,
        )
    }

    /// Builds a job's frame with `encode` (which appends the payload) and queues it.
    fn submit_with<R>(
        &self,
        tramp: Tramp,
        capacity: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), TaskError>,
        limit: Option<Duration>,
        decode: fn(&[u8]) -> Result<R, TaskError>,
    ) -> Result<Future<R>, SubmitError>
    where
        R: DeserializeOwned + Send + Sync + 'static,
    {
        let promise = Promise::<R>::new();
        let future = promise.future();
        let mut frame = Vec::with_capacity(capacity);
        let encoded = wire::fn_id(tramp).and_then(|id| {
            let start = wire::begin_cmd(&mut frame, wire::CMD_RUN, 0, id);
            encode(&mut frame)?;
            wire::finish(&mut frame, start)
        });
        let slot = Box::new(TypedSlot {
            id: future.id(),
            promise,
            decode,
        });
        self.enqueue(frame, slot, limit, encoded)?;
        Ok(future)
    }

    /// Queues a job whose frame is built (its id is patched in here), or fails its future
    /// if building it failed.
    fn enqueue(
        &self,
        mut frame: Vec<u8>,
        slot: Box<dyn Slot>,
        limit: Option<Duration>,
        encoded: Result<(), TaskError>,
    ) -> Result<(), SubmitError> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if let Some(b) = &st.broken {
            return Err(SubmitError::Broken(b.clone()));
        }
        if st.shutdown {
            return Err(SubmitError::Shutdown);
        }
        if let Err(e) = encoded {
            drop(st);
            // Python: an argument that cannot be pickled fails its future; the pool is fine.
            slot.start();
            slot.finish(Outcome::Failed(e), &[]);
            return Ok(());
        }
        let id = st.next_id;
        st.next_id += 1;
        frame[5..13].copy_from_slice(&id.to_le_bytes());
        st.queue.push_back(Job {
            id,
            frame,
            slot,
            limit,
            started: false,
            cancel: false,
        });
        let mut discard = Vec::new();
        // A submitting thread hands a job straight to an idle worker (a lone task reaches
        // its worker without a thread hand-off), but leaves filling the windows of busy
        // workers to the I/O thread, which their next results wake anyway: that keeps the
        // submitter's time under the lock (and pipe writes under it) short while `map`
        // queues chunks, when the I/O thread, taking results, needs the lock most.
        st.dispatch(&shared.config, &mut discard, true);
        // The I/O thread must look again if work waits and a worker could be started for
        // it, if a pipe is full (to finish the write), or if a time limit started (to arm
        // its timer). Work that waits because every worker's window is full needs no wake:
        // the next result (or a worker's exit) wakes the I/O thread, which then sends more.
        // (Waking it anyway made it run once per submit while `map` queued its chunks,
        // taking the lock and a CPU from the submitting thread and the workers.)
        let need_io = limit.is_some()
            || (!st.queue.is_empty() && st.live_workers() < shared.config.max_workers)
            || st.workers.iter().any(|w| !w.out.is_empty());
        drop(st);
        drop(discard);
        if need_io {
            shared.wake();
        }
        Ok(())
    }

    /// Cancels `future` whether it is queued or already running (Python's `cancel` stops
    /// only queued ones).
    ///
    /// A queued future is cancelled at once, exactly as [`Future::cancel`]. A running one
    /// has its worker process killed (and replaced): the future ends cancelled, unless its
    /// result was already on its way, in which case it finishes normally. Returns `false`
    /// if the future is finished or is not this pool's.
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_process_pool::ProcessPoolExecutor;
    /// use std::time::Duration;
    ///
    /// fn spin(_: ()) {
    ///     loop {
    ///         std::hint::spin_loop();
    ///     }
    /// }
    ///
    /// let pool = ProcessPoolExecutor::new(1).unwrap();
    /// let f = pool.submit_fn(spin, ()).unwrap();
    /// while !f.running() {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// assert!(pool.cancel(&f));
    /// assert!(f.result_timeout(Duration::from_secs(10)).unwrap_err().is_cancelled());
    /// ```
    pub fn cancel<R>(&self, future: &Future<R>) -> bool {
        if future.cancel() {
            return true;
        }
        let fid = future.id();
        let mut st = self.shared.lock();
        // Requeued after a worker death, not yet resent: finish it here.
        if let Some(i) = st.queue.iter().position(|j| j.slot.future_id() == fid) {
            let job = st.queue.remove(i).expect("index is valid");
            drop(st);
            job.slot.finish(Outcome::Cancelled, &[]);
            return true;
        }
        for w in &mut st.workers {
            if let Some(i) = w.window.iter().position(|j| j.slot.future_id() == fid) {
                w.window[i].cancel = true;
                if i == 0 {
                    st.cancel_heads.push(fid);
                    drop(st);
                    self.shared.wake();
                }
                return true;
            }
        }
        false
    }

    /// Stops accepting tasks, cancels the queued ones, and sends `SIGTERM` to every worker
    /// (Python 3.14: `terminate_workers`). Running futures fail with
    /// [`Error::Broken`](cfutures_core::Error::Broken).
    pub fn terminate_workers(&self) {
        self.force(libc::SIGTERM);
    }

    /// As [`terminate_workers`](Self::terminate_workers), with `SIGKILL` (Python 3.14:
    /// `kill_workers`).
    pub fn kill_workers(&self) {
        self.force(libc::SIGKILL);
    }

    fn force(&self, sig: i32) {
        self.shutdown(false, true);
        let mut st = self.shared.lock();
        st.forced = true;
        for w in &mut st.workers {
            w.kill.get_or_insert(Kill::Forced);
            sys::kill(w.pid, sig);
        }
        drop(st);
        self.shared.wake();
    }

    /// The process ids of the live workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared
            .lock()
            .workers
            .iter()
            .map(|w| w.pid as u32)
            .collect()
    }

    /// True once the pool is broken (see [`WorkerDeathPolicy::BreakPool`] and
    /// [`Builder::initializer`]).
    pub fn is_broken(&self) -> bool {
        self.shared.lock().broken.is_some()
    }

    /// Python's `shutdown(wait, cancel_futures)`: stop accepting tasks; with
    /// `cancel_futures`, cancel the queued ones; with `wait`, block until every accepted
    /// task is done and every worker process has exited and been reaped. Idempotent.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut st = self.shared.lock();
        st.shutdown = true;
        let cancelled: Vec<Job> = if cancel_futures {
            let (keep, cancel): (VecDeque<Job>, VecDeque<Job>) =
                st.queue.drain(..).partition(|j| j.started);
            st.queue = keep;
            cancel.into()
        } else {
            Vec::new()
        };
        drop(st);
        for j in cancelled {
            j.slot.cancel();
        }
        self.shared.wake();
        if wait && thread::current().id() != self.io_thread {
            let h = self.io.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = h {
                let _ = h.join();
            }
        }
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl Executor for ProcessPoolExecutor {
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        ProcessPoolExecutor::shutdown(self, wait, cancel_futures)
    }
    fn is_shutdown(&self) -> bool {
        let st = self.shared.lock();
        st.shutdown || st.broken.is_some()
    }
}

impl<T> Submit<T> for ProcessPoolExecutor
where
    T: RemoteTask,
    T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        self.submit_encoded(
            wire::run_task::<T> as Tramp,
            &task,
            self.shared.config.time_limit,
            wire::decode::<T::Output>,
        )
    }
}

/// `map` with `chunksize`: one chunk crosses as one frame and runs as one task in a worker;
/// each item's panic fails only that item.
impl<F, A, R> Submit<MapChunk<F, A>> for ProcessPoolExecutor
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn submit(&self, chunk: MapChunk<F, A>) -> Result<Future<ChunkOutput<R>>, SubmitError> {
        const { wire::assert_zero_sized::<F>() };
        let (_, items) = chunk.into_parts();
        self.submit_with(
            wire::run_chunk::<F, A, R> as Tramp,
            // Numbers are packed into a frame of the exact size; other items get room as
            // in `submit_encoded`.
            wire::CMD_HEADER + 16,
            |frame| {
                if prim::encode_items(&items, frame) {
                    return Ok(());
                }
                frame.reserve(std::mem::size_of_val(&items[..]).min(1 << 16));
                wire::encode_into(&items[..], frame)
            },
            self.shared.config.time_limit,
            prim::decode_output::<R>,
        )
    }
}

#[doc(hidden)]
impl ProcessPoolExecutor {
    /// Testing hook: submits a raw command frame (`fn_offset`, `fn_tag`, payload) whose
    /// result decodes as `R`, to show that a frame naming a function the worker cannot run
    /// fails its task with a codec error.
    ///
    /// # Safety
    ///
    /// With `fn_tag: None` the frame gets a genuine tag, so `fn_offset` must come from
    /// [`__fn_offset`](Self::__fn_offset). With `Some(tag)`, any values are safe.
    pub unsafe fn __submit_raw<R>(
        &self,
        fn_offset: i64,
        fn_tag: Option<u64>,
        payload: &[u8],
    ) -> Result<Future<R>, SubmitError>
    where
        R: DeserializeOwned + Send + Sync + 'static,
    {
        let promise = Promise::<R>::new();
        let future = promise.future();
        let id = FnId {
            offset: fn_offset,
            tag: fn_tag.unwrap_or_else(|| wire::tag(fn_offset)),
        };
        let mut frame = Vec::new();
        let start = wire::begin_cmd(&mut frame, wire::CMD_RUN, 0, id);
        frame.extend_from_slice(payload);
        let encoded = wire::finish(&mut frame, start);
        let slot = Box::new(TypedSlot {
            id: future.id(),
            promise,
            decode: wire::decode::<R>,
        });
        self.enqueue(frame, slot, None, encoded)?;
        Ok(future)
    }

    /// Testing hook: the offset of the trampoline that runs `f` on an `A`.
    pub fn __fn_offset<F, A, R>(_f: F) -> i64
    where
        F: Fn(A) -> R + Copy,
        A: DeserializeOwned,
        R: Serialize,
    {
        wire::fn_id(wire::run_fn::<F, A, R> as Tramp)
            .expect("same module")
            .offset
    }
}

// ---------------------------------------------------------------------------------------
// The I/O thread.

struct Proc {
    key: u64,
    pid: i32,
    res: OwnedFd,
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    eof: bool,
}

struct Io {
    shared: Arc<Shared>,
    wake_r: OwnedFd,
    procs: Vec<Proc>,
    next_key: u64,
    pollfds: Vec<libc::pollfd>,
    /// The payloads of the results taken in this round (see [`Outcome::Frame`]).
    payloads: Vec<u8>,
}

impl Io {
    fn new(shared: Arc<Shared>, wake_r: OwnedFd) -> Self {
        Io {
            shared,
            wake_r,
            procs: Vec::new(),
            next_key: 1,
            pollfds: Vec::new(),
            payloads: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut done: Done = Vec::new();
        let mut discard: Vec<Job> = Vec::new();
        loop {
            // 1. Account for what was read; deaths; spawns; dispatch; what to wait for.
            let shared = self.shared.clone();
            let cfg = &shared.config;
            let mut st = shared.lock();
            self.take_results(&mut st, &mut done);
            self.handle_deaths(&mut st, &mut done);
            self.apply_requests(&mut st);
            self.spawn_needed(&mut st, &mut done);
            st.dispatch(cfg, &mut discard, false);
            let exit = self.build_pollset(&mut st);
            let timeout = Self::next_deadline(&mut st);
            drop(st);
            // 2. Complete futures (user callbacks run here) outside the lock.
            for (slot, outcome) in done.drain(..) {
                slot.finish(outcome, &self.payloads);
            }
            self.payloads.clear();
            if self.payloads.capacity() > 1 << 20 {
                self.payloads = Vec::new();
            }
            discard.clear();
            if exit {
                break;
            }
            // 3. Wait for something to happen.
            let _ = sys::poll(&mut self.pollfds, timeout);
            self.read_ready();
        }
    }

    /// Builds the poll set; true when the pool is finished (shut down, no work, no worker).
    fn build_pollset(&mut self, st: &mut State) -> bool {
        let idle = st.queue.is_empty() && st.workers.iter().all(|w| w.window.is_empty());
        if st.shutdown && idle {
            // Close every command pipe: each worker sees end of file and exits.
            for w in &mut st.workers {
                w.cmd = None;
            }
            if self.procs.is_empty() {
                return true;
            }
        }
        self.pollfds.clear();
        self.pollfds.push(libc::pollfd {
            fd: self.wake_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for p in &self.procs {
            self.pollfds.push(libc::pollfd {
                fd: if p.eof { -1 } else { p.res.as_raw_fd() },
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for w in &st.workers {
            if let (Some(fd), false) = (&w.cmd, w.out.is_empty()) {
                self.pollfds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                });
            }
        }
        false
    }

    /// Milliseconds to the nearest time limit (-1: none); kills the workers whose head task
    /// is past its limit.
    fn next_deadline(st: &mut State) -> i32 {
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        for w in &mut st.workers {
            let Some(head) = w.window.front() else {
                continue;
            };
            let Some(limit) = head.limit else { continue };
            if w.kill.is_some() || !w.init_done {
                continue;
            }
            let deadline = w.head_since + limit;
            if deadline <= now {
                w.kill = Some(Kill::TimeLimit(limit, head.id));
                sys::kill(w.pid, libc::SIGKILL);
            } else {
                let left = deadline - now;
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        match next {
            None => -1,
            Some(d) => (d.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32,
        }
    }

    /// Reads whatever the ready pipes hold (never blocks).
    fn read_ready(&mut self) {
        if self.pollfds.first().is_some_and(|p| p.revents != 0) {
            let mut b = [0u8; 64];
            while matches!(sys::read(self.wake_r.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
            // Reset after draining: a wake before this point changed the state before it
            // woke us, and we look at the state next (under the lock, which orders us after
            // its change); a wake after it sees `false` and writes a new byte.
            self.shared.wake_pending.store(false, Ordering::Release);
        }
        for (i, p) in self.procs.iter_mut().enumerate() {
            let Some(pfd) = self.pollfds.get(i + 1) else {
                break;
            };
            if pfd.fd != p.res.as_raw_fd() || pfd.revents == 0 {
                continue;
            }
            loop {
                if p.lo == p.hi {
                    p.lo = 0;
                    p.hi = 0;
                }
                if p.hi == p.buf.len() {
                    if p.lo > 0 {
                        p.buf.copy_within(p.lo..p.hi, 0);
                        p.hi -= p.lo;
                        p.lo = 0;
                    } else {
                        let n = p.buf.len().max(64 * 1024) * 2;
                        p.buf.resize(n, 0);
                    }
                }
                match sys::read(p.res.as_raw_fd(), &mut p.buf[p.hi..]) {
                    Ok(0) => {
                        p.eof = true;
                        break;
                    }
                    Ok(n) => {
                        p.hi += n;
                        if p.hi < p.buf.len() {
                            // Short read: the pipe is drained (poll reports what comes
                            // next); spare the read that would say EAGAIN.
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        p.eof = true;
                        break;
                    }
                }
            }
        }
    }

    /// Turns complete result frames into completions.
    fn take_results(&mut self, st: &mut State, done: &mut Done) {
        for p in &mut self.procs {
            while let Some(n) = wire::complete_frame(&p.buf[p.lo..p.hi]) {
                let frame = &p.buf[p.lo..p.lo + n];
                p.lo += n;
                let Some(w) = st.workers.iter_mut().find(|w| w.key == p.key) else {
                    continue;
                };
                if frame.len() < wire::RES_HEADER {
                    desync(w, p.pid);
                    break;
                }
                let kind = frame[4];
                let id = wire::u64_at(frame, 5);
                let ns = wire::u64_at(frame, 13);
                let payload = &frame[wire::RES_HEADER..];
                match kind {
                    wire::RES_HELLO => match wire::decode::<Result<u32, String>>(payload) {
                        Ok(Ok(_)) => {
                            w.hello = true;
                            w.init_done = self.shared.config.init.is_none();
                            // The head's time limit counts from when it can start.
                            w.head_since = Instant::now();
                        }
                        Ok(Err(why)) => {
                            let b =
                                Broken::new(format!("a worker process refused to start: {why}"));
                            st.break_pool(b, done);
                            return;
                        }
                        Err(e) => {
                            st.break_pool(
                                Broken::with_cause("a worker process sent a bad greeting", e),
                                done,
                            );
                            return;
                        }
                    },
                    wire::RES_INIT_OK => {
                        w.init_done = true;
                        w.head_since = Instant::now();
                    }
                    wire::RES_INIT_ERR => {
                        let e = wire::decode::<TaskError>(payload).unwrap_or_else(|e| e);
                        st.break_pool(
                            Broken::with_cause(
                                "the initializer failed in a worker process; the process pool \
                                 is not usable anymore",
                                e,
                            ),
                            done,
                        );
                        return;
                    }
                    wire::RES_OK | wire::RES_ERR => {
                        let Some(job) = w.window.pop_front().filter(|j| j.id == id) else {
                            desync(w, p.pid);
                            break;
                        };
                        w.ewma_ns = Some(match w.ewma_ns {
                            None => ns,
                            Some(e) => (e * 7 + ns) / 8,
                        });
                        w.head_since = Instant::now();
                        if let Some(next) = w.window.front().filter(|j| j.cancel) {
                            if w.kill.is_none() {
                                w.kill = Some(Kill::Cancel(next.id));
                                sys::kill(w.pid, libc::SIGKILL);
                            }
                        }
                        let at = self.payloads.len();
                        self.payloads.extend_from_slice(payload);
                        done.push((
                            job.slot,
                            Outcome::Frame(kind == wire::RES_OK, at..self.payloads.len()),
                        ));
                    }
                    _ => {
                        desync(w, p.pid);
                        break;
                    }
                }
            }
        }
    }

    fn apply_requests(&mut self, st: &mut State) {
        for fid in std::mem::take(&mut st.cancel_heads) {
            for w in &mut st.workers {
                let Some(head) = w.window.front() else {
                    continue;
                };
                if head.slot.future_id() == fid && w.kill.is_none() {
                    w.kill = Some(Kill::Cancel(head.id));
                    sys::kill(w.pid, libc::SIGKILL);
                }
            }
        }
    }

    /// Reaps workers whose result pipe reached end of file and accounts for their jobs.
    fn handle_deaths(&mut self, st: &mut State, done: &mut Done) {
        let mut i = 0;
        while i < self.procs.len() {
            if !self.procs[i].eof
                || wire::complete_frame(&self.procs[i].buf[self.procs[i].lo..self.procs[i].hi])
                    .is_some()
            {
                i += 1;
                continue;
            }
            let p = self.procs.swap_remove(i);
            let exit = reap(p.pid);
            let Some(wi) = st.workers.iter().position(|w| w.key == p.key) else {
                continue;
            };
            let mut w = st.workers.swap_remove(wi);
            let pid = w.pid as u32;
            let retired = w.cmd.is_none() && w.window.is_empty() && w.kill.is_none();
            if retired && exit == WorkerExit::Code(0) && w.hello {
                continue;
            }
            if let Some(b) = st.broken.clone() {
                for job in w.window.drain(..) {
                    done.push((job.slot, Outcome::Broken(b.clone())));
                }
                continue;
            }
            if w.kill.is_none() && (!w.hello || !w.init_done) {
                let what = if w.hello {
                    "while running the initializer"
                } else {
                    "while starting"
                };
                let b = Broken::with_cause(
                    format!("a worker process died {what}; the process pool is not usable anymore"),
                    TaskError::WorkerDied { pid, exit },
                );
                st.workers.push(w);
                st.break_pool(b, done);
                continue;
            }
            let mut rest = std::mem::take(&mut w.window);
            let head = rest.pop_front();
            match w.kill {
                Some(Kill::Forced) => {
                    let b = Broken::with_cause(
                        "the pool's worker processes were stopped (terminate_workers / \
                         kill_workers) while the task ran",
                        TaskError::WorkerDied { pid, exit },
                    );
                    for job in head.into_iter().chain(rest.drain(..)) {
                        done.push((job.slot, Outcome::Broken(b.clone())));
                    }
                    continue;
                }
                // The kill was meant for the task that is the head now: the usual case.
                Some(Kill::TimeLimit(limit, id)) if head.as_ref().is_some_and(|j| j.id == id) => {
                    let j = head.expect("checked");
                    done.push((j.slot, Outcome::Failed(TaskError::TimeLimit { limit })));
                }
                Some(Kill::Cancel(id)) if head.as_ref().is_some_and(|j| j.id == id) => {
                    let j = head.expect("checked");
                    done.push((j.slot, Outcome::Cancelled));
                }
                // The targeted task finished just before the kill landed (its result was
                // already on its way): the worker died under the next task, which is told so.
                Some(Kill::TimeLimit(..) | Kill::Cancel(_)) => {
                    if let Some(j) = head {
                        done.push((j.slot, Outcome::Failed(TaskError::WorkerDied { pid, exit })));
                    }
                }
                Some(Kill::Protocol) => {
                    if let Some(j) = head {
                        let e = wire::codec(format!(
                            "worker process {pid} sent a malformed result frame (did the task \
                             write to the pool's descriptors?); it was replaced"
                        ));
                        done.push((j.slot, Outcome::Failed(e)));
                    }
                }
                None => {
                    if self.shared.config.policy == WorkerDeathPolicy::BreakPool {
                        let b = Broken::with_cause(
                            "a process in the process pool was terminated abruptly while the \
                             future was running or pending",
                            TaskError::WorkerDied { pid, exit },
                        );
                        for job in head.into_iter().chain(rest.drain(..)) {
                            done.push((job.slot, Outcome::Broken(b.clone())));
                        }
                        st.break_pool(b, done);
                        continue;
                    }
                    if let Some(j) = head {
                        done.push((j.slot, Outcome::Failed(TaskError::WorkerDied { pid, exit })));
                    }
                }
            }
            // Jobs behind the head never started: back to the front of the queue, in order
            // (or cancelled, if `cancel` was waiting for them to reach the head).
            for job in rest.into_iter().rev() {
                if job.cancel {
                    done.push((job.slot, Outcome::Cancelled));
                } else {
                    st.queue.push_front(job);
                }
            }
        }
    }

    /// Starts workers while work waits and no worker has room.
    fn spawn_needed(&mut self, st: &mut State, done: &mut Done) {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        if st.broken.is_some() || st.forced {
            return;
        }
        loop {
            let now = Instant::now();
            let idle = st
                .workers
                .iter()
                .filter(|w| w.has_room(cfg.max_tasks_per_child, now) && w.window.is_empty())
                .count();
            if st.queue.len() <= idle || st.live_workers() >= cfg.max_workers {
                return;
            }
            match self.spawn() {
                Ok(w) => st.workers.push(w),
                Err(e) => {
                    st.break_pool(
                        Broken::new(format!(
                            "a worker process could not be started ({e}); the process pool is \
                             not usable anymore"
                        )),
                        done,
                    );
                    return;
                }
            }
        }
    }

    fn spawn(&mut self) -> io::Result<Worker> {
        let cfg = &self.shared.config;
        let (cmd_r, cmd_w) = sys::pipe()?;
        let (res_r, res_w) = sys::pipe()?;
        let mut env: Vec<CString> = Vec::new();
        for (k, v) in std::env::vars_os() {
            if k == worker::ENV {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            if let Ok(c) = CString::new(kv) {
                env.push(c);
            }
        }
        env.push(
            CString::new(format!("{}={}", worker::ENV, cfg.env_value)).map_err(io::Error::other)?,
        );
        let stdout: Option<RawFd> = cfg.stdout.as_ref().map(|f| f.as_raw_fd());
        let pid = sys::spawn(&cfg.exe, &cfg.argv0, &env, &cmd_r, &res_w, stdout)?;
        drop(cmd_r);
        drop(res_w);
        sys::set_nonblocking(cmd_w.as_raw_fd())?;
        sys::set_nonblocking(res_r.as_raw_fd())?;
        let key = self.next_key;
        self.next_key += 1;
        self.procs.push(Proc {
            key,
            pid,
            res: res_r,
            buf: vec![0; 64 * 1024],
            lo: 0,
            hi: 0,
            eof: false,
        });
        let mut out = Vec::new();
        if let Some((id, payload)) = &cfg.init {
            let s = wire::begin_cmd(&mut out, wire::CMD_INIT, 0, *id);
            out.extend_from_slice(payload);
            wire::finish(&mut out, s).map_err(io::Error::other)?;
        }
        Ok(Worker {
            key,
            pid,
            cmd: Some(cmd_w),
            out,
            out_pos: 0,
            window: VecDeque::new(),
            dispatched: 0,
            hello: false,
            init_done: false,
            ewma_ns: None,
            head_since: Instant::now(),
            kill: None,
        })
    }
}

/// The result stream of a worker cannot be trusted any more (a task wrote to the protocol's
/// descriptor): kill it; its head task fails as a death.
fn desync(w: &mut Worker, pid: i32) {
    w.kill.get_or_insert(Kill::Protocol);
    sys::kill(pid, libc::SIGKILL);
}

/// Waits for a worker whose result pipe closed: it is exiting, so its status comes within
/// microseconds; one that closed the pipe but lives on is killed.
fn reap(pid: i32) -> WorkerExit {
    let t0 = Instant::now();
    loop {
        if let Some(e) = sys::try_wait(pid) {
            return e;
        }
        if t0.elapsed() > Duration::from_millis(200) {
            sys::kill(pid, libc::SIGKILL);
            return sys::wait(pid);
        }
        if t0.elapsed() < Duration::from_millis(2) {
            thread::yield_now();
        } else {
            thread::sleep(Duration::from_micros(200));
        }
    }
}
