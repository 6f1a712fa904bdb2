//! The public side: [`ProcessPoolExecutor`], its [`Builder`], and the policies.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use cfutures_core::events::{Event, EventBus, Events, Stats, TaskOutcome};
use cfutures_core::{Broken, Executor, Future, Submit, SubmitError};
use rustix::process::Signal;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::io::Io;
use crate::options::{Resolved, TaskOptions, WithOptions};
use crate::retry::{Attempts, RetryPolicy};
use crate::segments::{ArgSink, Bulk};
use crate::state::{Config, Obs, Shared, State};
use crate::sys;
use crate::window::{Job, Kill};
use cfutures_remote::job::{self, Encoded, IntoJob, Outcome};
use cfutures_remote::RemoteTask;

/// What happens when a worker process dies (killed, crashed, exited) while the pool runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerDeathPolicy {
    /// The task the worker was running fails with [`TaskError::WorkerDied`](cfutures_core::TaskError::WorkerDied) (pid and exit
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
    init: Option<Vec<u8>>,
    max_tasks_per_child: Option<u64>,
    policy: WorkerDeathPolicy,
    time_limit: Option<Duration>,
    output: WorkerOutput,
    env: Vec<(OsString, OsString)>,
    quiet_panics: bool,
    shared_memory_threshold: Option<usize>,
    retry: Option<RetryPolicy>,
    capture_output: bool,
    output_limit: Option<usize>,
}

/// How many bytes of a task's output [`Builder::capture_output`] keeps by default: its last
/// 64 KiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;

impl Builder {
    /// The number of worker processes (default: the number of CPUs).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// A function each worker runs with `arg` before its first task (Python: `initializer`,
    /// `initargs`). If it fails (panics), the pool becomes broken, as in Python; a worker
    /// killed while it runs is a start that failed, and is retried.
    ///
    /// `f` must be a `fn` item or a closure that captures nothing: a worker process is a
    /// fresh copy of your program and cannot receive captured state, so pass data through
    /// `arg` (a tuple for several values). A capturing closure is rejected when the program
    /// is *built* (`cargo build`, `cargo test`), not by `cargo check`: the error says "the
    /// function given to a process pool ... must be a fn item or a closure that captures
    /// nothing", names the closure by file and line (`{closure@src/main.rs:6:28}`), and its
    /// last note points at your call.
    ///
    /// # Panics
    ///
    /// If `arg` cannot be encoded.
    pub fn initializer<F, A>(mut self, f: F, arg: A) -> Self
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        const { cfutures_remote::assert_zero_sized::<F>() };
        let _ = f;
        let frame = job::init_frame::<F, A>(&arg).unwrap_or_else(|e| panic!("initializer: {e}"));
        self.init = Some(frame);
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
    /// and replaced, and fails with [`TaskError::TimeLimit`](cfutures_core::TaskError::TimeLimit). Per task:
    /// [`ProcessPoolExecutor::submit_with_timeout`].
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Where the workers' standard output goes (default: the parent's standard error).
    /// With [`capture_output`](Self::capture_output), where the output that is not attached
    /// to a failure goes.
    pub fn worker_output(mut self, output: WorkerOutput) -> Self {
        self.output = output;
        self
    }

    /// Retries every task whose worker dies under it, and quarantines the tasks that keep
    /// killing workers (default: none; a death fails the task with
    /// [`TaskError::WorkerDied`](cfutures_core::TaskError::WorkerDied)). See
    /// [`RetryPolicy`]; per submission: [`TaskOptions::retry`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Captures what each task prints (its standard output and standard error, interleaved
    /// as written; the last [`output_limit`](Self::output_limit) bytes, 64 KiB by default)
    /// and attaches it to the task's failure: a task that panics, returns an error, dies
    /// (its last words before a segfault), runs past its time limit or is quarantined fails
    /// with [`TaskError::WithOutput`](cfutures_core::TaskError::WithOutput) (see
    /// [`TaskError::output`](cfutures_core::TaskError::output)). The output of a task that
    /// succeeds, of the initializer (unless it fails: then it comes with the pool's
    /// [`Broken`] error), and of an attempt that is retried goes, in one piece per task,
    /// where [`worker_output`](Self::worker_output) says: tasks running side by side no
    /// longer interleave their lines.
    ///
    /// Output is attributed by a marker each worker writes after each task (after flushing
    /// Rust's and C's standard output): what a task printed is its own, never the next
    /// one's. What a process the task started prints after the task ended is counted to the
    /// next task of that worker.
    ///
    /// ```
    /// use cfutures_process_pool::ProcessPoolExecutor;
    ///
    /// fn parse(row: String) -> u32 {
    ///     println!("parsing {row:?}");
    ///     row.parse().expect("a number")
    /// }
    ///
    /// let pool = ProcessPoolExecutor::builder()
    ///     .max_workers(1)
    ///     .capture_output(true)
    ///     .quiet_panics(true)
    ///     .build()
    ///     .unwrap();
    /// let err = pool.submit_fn(parse, "x1".to_owned()).unwrap().exception().unwrap().unwrap();
    /// assert!(err.is_panic());
    /// assert_eq!(err.output().unwrap().text(), "parsing \"x1\"\n");
    /// ```
    pub fn capture_output(mut self, capture: bool) -> Self {
        self.capture_output = capture;
        self
    }

    /// How many bytes of each task's output [`capture_output`](Self::capture_output) keeps:
    /// the *last* ones (default [`DEFAULT_OUTPUT_LIMIT`], 64 KiB). The count of all bytes
    /// printed is kept too ([`TaskOutput::total_len`](cfutures_core::TaskOutput::total_len)).
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = Some(bytes);
        self
    }

    /// Keeps task panics off the workers' standard error (Python prints nothing until
    /// `result()` is called). By default a task's panic is printed by the panic hook, as on
    /// any thread (the worker's standard error is the parent's), as in the thread pool;
    /// either way the task fails with [`TaskError::Panic`](cfutures_core::TaskError::Panic),
    /// with the message and `file:line:column`.
    pub fn quiet_panics(mut self, quiet: bool) -> Self {
        self.quiet_panics = quiet;
        self
    }

    /// Payloads (arguments, tasks, `map` chunks, results) of at least this many bytes cross
    /// through shared memory instead of the pipes (default: 64 KiB); `usize::MAX` keeps
    /// every payload in the pipes. (joblib's `max_nbytes`.)
    ///
    /// Through shared memory a payload is written once, into a segment the other side maps,
    /// and the pipe carries a small header: an owned `Vec<u8>` argument of 100 MB costs the
    /// parent ~100 MB at its peak, not twice that, and crosses in tens of milliseconds.
    /// Segments are reused, and freed a second after they were last used (see
    /// `DESIGN-NOTES.md`, "Bulk data").
    pub fn shared_memory_threshold(mut self, bytes: usize) -> Self {
        self.shared_memory_threshold = Some(bytes);
        self
    }

    /// Sets an environment variable in the workers (over this process's value, which they
    /// inherit otherwise): per-pool configuration such as `RUST_LOG`, `RUST_BACKTRACE`, or a
    /// library's thread count.
    ///
    /// ```
    /// use cfutures_process_pool::ProcessPoolExecutor;
    ///
    /// fn var(name: String) -> Option<String> {
    ///     std::env::var(name).ok()
    /// }
    ///
    /// let pool = ProcessPoolExecutor::builder()
    ///     .max_workers(1)
    ///     .worker_env("CFUTURES_DOC_EXAMPLE", "in the worker")
    ///     .build()
    ///     .unwrap();
    /// let f = pool.submit_fn(var, "CFUTURES_DOC_EXAMPLE".to_owned()).unwrap();
    /// assert_eq!(f.result().unwrap().as_deref(), Some("in the worker"));
    /// ```
    pub fn worker_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
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
                    cfutures_core::InvalidArgument::zero_workers(),
                ))
            }
            Some(n) => n,
            None => cfutures_core::blocking::cpus(),
        };
        if self.max_tasks_per_child == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                cfutures_core::InvalidArgument::new("max_tasks_per_child must be greater than 0"),
            ));
        }
        if let Some(p) = &self.retry {
            p.check()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let stdout = match self.output {
            WorkerOutput::Stderr => Some(sys::dup_above(std::io::stderr().as_fd(), 3)?),
            WorkerOutput::Stdout => None,
            WorkerOutput::Null => Some(File::options().write(true).open("/dev/null")?.into()),
            WorkerOutput::File(f) => Some(f.into()),
        };
        let threshold = self
            .shared_memory_threshold
            .unwrap_or(crate::segments::DEFAULT_THRESHOLD);
        let (wake_r, wake_w) = sys::wake_pipe()?;
        crate::fork::watch();
        let obs = Arc::new(Obs::default());
        let shared = Arc::new(Shared {
            obs: obs.clone(),
            state: Mutex::new(State {
                obs,
                queue: VecDeque::new(),
                workers: Vec::new(),
                next_id: 1,
                shutdown: false,
                broken: None,
                cancel_heads: Vec::new(),
                forced: false,
                reports: Vec::new(),
                inject_panic: None,
                delayed: Vec::new(),
            }),
            wake_w,
            wake_pending: AtomicBool::new(false),
            config: Config {
                max_workers,
                init: self.init,
                max_tasks_per_child: self.max_tasks_per_child,
                policy: self.policy,
                time_limit: self.time_limit,
                retry: self.retry,
                capture: self
                    .capture_output
                    .then(|| self.output_limit.unwrap_or(DEFAULT_OUTPUT_LIMIT)),
                stdout,
                env: self.env,
                options: cfutures_remote::handshake::Options::default()
                    .quiet_panics(self.quiet_panics)
                    .segment_threshold(threshold as u64),
                segments: crate::segments::ArgSegments::new(threshold),
                exe: sys::worker_executable()?.into_os_string(),
                argv0: std::env::args_os()
                    .next()
                    .unwrap_or_else(|| OsString::from("cfutures-worker")),
                build: sys::exe_identity()?,
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
            fork_gen: crate::fork::generation(),
        })
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
    /// The process's fork generation when the pool was made: a copy of the pool in a
    /// forked child (which has no I/O thread) refuses work instead of hanging.
    fork_gen: u64,
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
    /// `f` must be a `fn` item or a closure that captures nothing: a worker process is a
    /// fresh copy of your program and cannot receive captured state, so pass data through
    /// `arg` (a tuple for several values). A capturing closure is rejected when the program
    /// is *built* (`cargo build`, `cargo test`), not by `cargo check`: the error says "the
    /// function given to a process pool ... must be a fn item or a closure that captures
    /// nothing", names the closure by file and line (`{closure@src/main.rs:6:28}`), and its
    /// last note points at your call.
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
    /// An argument that cannot be encoded fails the future with [`TaskError::Codec`](cfutures_core::TaskError::Codec).
    pub fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        const { cfutures_remote::assert_zero_sized::<F>() };
        let _ = f;
        self.submit_call::<F, A, R>(arg, self.defaults())
    }

    /// [`submit_fn`](Self::submit_fn) with a limit on the run time: past it, the worker is
    /// killed and replaced, and the future fails with [`TaskError::TimeLimit`](cfutures_core::TaskError::TimeLimit).
    /// The same as `pool.with(TaskOptions::new().time_limit(limit)).submit_fn(f, arg)`
    /// ([`with`](Self::with), which combines it with the other options).
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
        const { cfutures_remote::assert_zero_sized::<F>() };
        self.with(TaskOptions::new().time_limit(limit))
            .submit_fn(f, arg)
    }

    /// A view of the pool whose submissions run with `options` (a time limit, a retry
    /// policy), each one unset being the pool's: one value in place of a method per
    /// combination. The view is an executor of its own, so `map` accepts it. See
    /// [`TaskOptions`].
    ///
    /// ```
    /// use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, TaskOptions};
    /// use std::time::Duration;
    ///
    /// fn work(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// let pool = ProcessPoolExecutor::new(1).unwrap();
    /// let opts = TaskOptions::new()
    ///     .time_limit(Duration::from_secs(30))
    ///     .retry(RetryPolicy::new());
    /// let f = pool.with(opts).submit_fn(work, 21).unwrap();
    /// assert_eq!(*f.result().unwrap(), 42);
    /// ```
    pub fn with(&self, options: TaskOptions) -> WithOptions<'_> {
        WithOptions {
            pool: self,
            options,
        }
    }

    /// The pool's options for a submission that sets none.
    pub(crate) fn defaults(&self) -> Resolved {
        Resolved {
            limit: self.shared.config.time_limit,
            retry: self.shared.config.retry.clone(),
        }
    }

    /// Encodes `f(arg)` (a large argument out of line) and queues it with `options`.
    pub(crate) fn submit_call<F, A, R>(
        &self,
        arg: A,
        options: Resolved,
    ) -> Result<Future<R>, SubmitError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let mut sink = ArgSink::new(&self.shared.config.segments);
        let job = job::call_with::<F, A, R>(arg, &mut sink);
        let bulk = sink.finish(&job.0.frame);
        self.enqueue(job, bulk, options)
    }

    /// Encodes a submission (large payloads out of line) and queues it with `options`.
    pub(crate) fn submit_job<T: IntoJob>(
        &self,
        task: T,
        options: Resolved,
    ) -> Result<Future<T::Output>, SubmitError> {
        let mut sink = ArgSink::new(&self.shared.config.segments);
        let job = task.into_job_with(&mut sink);
        let bulk = sink.finish(&job.0.frame);
        self.enqueue(job, bulk, options)
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
        self.with(TaskOptions::new().time_limit(limit)).submit(task)
    }

    /// Queues an encoded job (its id is given here) with its options, or fails its future if
    /// encoding it failed.
    pub(crate) fn enqueue<R>(
        &self,
        (job, future): (Encoded, Future<R>),
        bulk: Option<Box<Bulk>>,
        options: Resolved,
    ) -> Result<Future<R>, SubmitError> {
        let Encoded {
            mut frame,
            slot,
            error,
        } = job;
        self.check_process()?;
        let Resolved { limit, retry } = options;
        if let Some(p) = &retry {
            p.check()?;
        }
        let shared = &*self.shared;
        let mut st = shared.lock();
        if let Some(b) = &st.broken {
            return Err(SubmitError::Broken(b.clone()));
        }
        if st.shutdown {
            return Err(SubmitError::Shutdown);
        }
        let obs = &shared.obs;
        obs.stats.submitted();
        obs.bus.emit(|| Event::submitted(slot.future_id(), None));
        if let Some(e) = error {
            obs.stats
                .finished(None, TaskOutcome::of_error(&e), false, None);
            obs.bus
                .emit(|| Event::finished(slot.future_id(), None, TaskOutcome::of_error(&e), None));
            drop(st);
            // Python: an argument that cannot be pickled fails its future; the pool is fine.
            slot.start();
            slot.finish(Outcome::Failed(e), &[]);
            return Ok(future);
        }
        let id = st.next_id;
        st.next_id += 1;
        job::set_id(&mut frame, id);
        st.queue.push_back(Job {
            id,
            frame,
            slot,
            limit,
            started: false,
            cancel: false,
            seq: 0,
            bulk,
            retry: retry.map(Attempts::new),
            on: None,
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
            || st.workers.iter().any(|w| w.has_output());
        drop(st);
        drop(discard);
        if need_io {
            shared.wake();
        }
        Ok(future)
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
        if self.check_process().is_err() {
            return false;
        }
        let fid = future.id();
        let mut st = self.shared.lock();
        // Requeued (its worker died, or it was taken back), not yet resent: finish it here.
        if let Some(i) = st.queue.iter().position(|j| j.slot.future_id() == fid) {
            let job = st.queue.remove(i).expect("index is valid");
            st.obs.dropped(&job, TaskOutcome::Cancelled);
            drop(st);
            job.slot.finish(Outcome::Cancelled, &[]);
            return true;
        }
        // Waiting to be retried.
        if let Some(i) = st.delayed.iter().position(|j| j.slot.future_id() == fid) {
            let job = st.delayed.swap_remove(i);
            st.obs.dropped(&job, TaskOutcome::Cancelled);
            drop(st);
            job.slot.finish(Outcome::Cancelled, &[]);
            return true;
        }
        for w in &mut st.workers {
            if let Some(i) = w.window.iter().position(|j| j.slot.future_id() == fid) {
                // Not started yet (its worker has not claimed it): take it back, no kill.
                if let Some(job) = w.take_one(i) {
                    w.ping_if_behind();
                    w.head_started();
                    w.obs.dropped(&job, TaskOutcome::Cancelled);
                    drop(st);
                    job.slot.finish(Outcome::Cancelled, &[]);
                    // Room was made in a window: queued work may go there now.
                    self.shared.wake();
                    return true;
                }
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
        self.force(Signal::TERM);
    }

    /// As [`terminate_workers`](Self::terminate_workers), with `SIGKILL` (Python 3.14:
    /// `kill_workers`).
    pub fn kill_workers(&self) {
        self.force(Signal::KILL);
    }

    fn force(&self, sig: Signal) {
        if self.check_process().is_err() {
            return;
        }
        self.shutdown(false, true);
        let mut st = self.shared.lock();
        st.forced = true;
        for w in &mut st.workers {
            w.kill.get_or_insert(Kill::Forced);
            w.child.signal(sig);
        }
        drop(st);
        self.shared.wake();
    }

    /// Subscribes to the pool's events: every task's `Submitted`, `Started` (with the worker
    /// and its pid), `Finished` (outcome, run time as the worker measured it); every
    /// worker's start and death (pid, exit code or signal, the task it held); retries,
    /// quarantines, the pool breaking, and `Shutdown` last (the stream then ends). Python's
    /// pools tell none of this.
    ///
    /// The stream buffers [`DEFAULT_CAPACITY`](cfutures_core::events::DEFAULT_CAPACITY)
    /// events; a subscriber that falls behind loses the newest and
    /// [`Events::dropped`] counts them (the pool never waits for it). With nobody
    /// subscribed, the pool pays one relaxed atomic load per would-be event. Events are sent
    /// where the pool's state changes, under its lock, to every subscriber in turn: each
    /// subscriber adds a (non-blocking) send to every change. See [`cfutures_core::events`].
    ///
    /// ```
    /// use cfutures_core::events::{Event, TaskOutcome};
    /// use cfutures_process_pool::ProcessPoolExecutor;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = ProcessPoolExecutor::new(2).unwrap();
    /// let events = pool.events();
    /// let f = pool.submit_fn(square, 7).unwrap();
    /// assert_eq!(*f.result().unwrap(), 49);
    /// drop(pool); // shuts down: the stream ends with `Shutdown`
    ///
    /// let all: Vec<Event> = events.collect();
    /// let fin = all.iter().find(|e| e.task() == Some(f.id()) && e.outcome().is_some()).unwrap();
    /// assert_eq!(fin.outcome(), Some(TaskOutcome::Ok));
    /// assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
    /// ```
    pub fn events(&self) -> Events {
        self.events_with_capacity(cfutures_core::events::DEFAULT_CAPACITY)
    }

    /// As [`events`](Self::events), with a buffer of `capacity` events (it grows as events
    /// come, up to `capacity`).
    pub fn events_with_capacity(&self, capacity: usize) -> Events {
        if self.check_process().is_err() {
            // A copy of the pool in a forked child: its I/O thread is the parent's, and
            // nothing here would ever end the stream. An ended one, as after a shutdown.
            let bus = EventBus::new();
            bus.close();
            return bus.subscribe();
        }
        self.shared.obs.bus.subscribe_with_capacity(capacity)
    }

    /// A snapshot of the pool's counts: tasks submitted, queued, running, done (succeeded,
    /// failed, cancelled), retried and quarantined; workers started and died, each worker's
    /// counts; run-time percentiles. Kept whether anyone subscribed or not (a few relaxed
    /// atomic increments per task).
    ///
    /// A task is what was submitted: a `map` chunk counts once (not once per item), except
    /// a chunk whose worker died under it with a retry policy, which runs again item by item
    /// and then counts once per item. A future cancelled with
    /// [`Future::cancel`](cfutures_core::Future::cancel) while queued counts as queued until
    /// the pool notices (as `wait` counts it done only then). In a forked child of the
    /// process that made the pool: the parent's counts as they were at the fork.
    ///
    /// ```
    /// use cfutures_process_pool::ProcessPoolExecutor;
    ///
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// let pool = ProcessPoolExecutor::new(2).unwrap();
    /// let fs: Vec<_> = (0..10).map(|i| pool.submit_fn(double, i).unwrap()).collect();
    /// for f in &fs {
    ///     f.result().unwrap();
    /// }
    /// let s = pool.stats();
    /// assert_eq!((s.submitted, s.succeeded), (10, 10));
    /// assert!(s.run_times.p50.is_some());
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.obs.stats.snapshot()
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
        // In a forked child the pool refuses every submission (`Broken`): say so here too.
        self.check_process().is_err() || self.shared.lock().broken.is_some()
    }

    /// Refuses work in a forked child of the process that made the pool: the child has a
    /// copy of the pool's state, but not its I/O thread, so nothing would ever complete.
    fn check_process(&self) -> Result<(), SubmitError> {
        if crate::fork::generation() == self.fork_gen {
            Ok(())
        } else {
            Err(SubmitError::Broken(Broken::new(
                "this process pool belongs to the parent of this forked process; a forked \
                 child cannot use it (make a new pool in the child)",
            )))
        }
    }

    /// Python's `shutdown(wait, cancel_futures)`: stop accepting tasks; with
    /// `cancel_futures`, cancel the queued ones; with `wait`, block until every accepted
    /// task is done and every worker process has exited and been reaped. Idempotent.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        if self.check_process().is_err() {
            // A copy in a forked child: the pool, its thread and its workers are the
            // parent's. Nothing to wait for here, and nothing to stop.
            return;
        }
        let mut st = self.shared.lock();
        st.shutdown = true;
        let cancelled: Vec<Job> = if cancel_futures {
            let (keep, cancel): (VecDeque<Job>, VecDeque<Job>) =
                st.queue.drain(..).partition(|j| j.started);
            st.queue = keep;
            for j in &cancel {
                st.obs.dropped(j, TaskOutcome::Cancelled);
            }
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
            // Joined with the handle's lock held: a second caller waiting here returns only
            // once the first has seen the thread finish (every task done, every worker
            // reaped), not as soon as the handle is taken.
            let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = io.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        if self.check_process().is_err() {
            // A copy in a forked child: the I/O thread is the parent's; its handle here
            // names no thread of this process, so it is neither joined nor detached.
            let h = self.io.get_mut().unwrap_or_else(|p| p.into_inner()).take();
            std::mem::forget(h);
            return;
        }
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

/// Every [`RemoteTask`], and `map`'s chunks (one chunk crosses as one frame and runs as one
/// task in a worker; each item's panic fails only that item).
impl<T: IntoJob> Submit<T> for ProcessPoolExecutor {
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        self.submit_job(task, self.defaults())
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
        // SAFETY: this function's contract is `job::raw`'s.
        self.enqueue(
            unsafe { job::raw(fn_offset, fn_tag, payload) },
            None,
            Resolved::default(),
        )
    }

    /// Testing hook: makes the pool's I/O thread panic with `message` at its next turn, to
    /// show what an unwinding I/O thread does (the pool breaks; nothing hangs).
    pub fn __panic_io_thread(&self, message: &str) {
        self.shared.lock().inject_panic = Some(message.to_owned());
        self.shared.wake();
    }

    /// Testing hook: the offset of the trampoline that runs `f` on an `A`.
    pub fn __fn_offset<F, A, R>(f: F) -> i64
    where
        F: Fn(A) -> R + Copy,
        A: DeserializeOwned,
        R: Serialize + 'static,
    {
        job::fn_offset(f)
    }
}
