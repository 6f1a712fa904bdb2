//! The executor side: [`MpiPoolExecutor`], its [`Builder`], and the driver thread that owns
//! every MPI call of the executor's communicator.

use std::collections::VecDeque;
use std::ffi::c_int;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cfutures_core::events::{
    Event, EventBus, Events, Stats, StatsRecorder, TaskOutcome, WorkerCounters,
};
use cfutures_core::{Broken, Executor, Future, FutureId, Submit, SubmitError, TaskError};
use cfutures_remote::job::{self, Encoded, IntoJob, Outcome, Slot};
use cfutures_remote::wire::{self, ResHeader};
use cfutures_remote::{handshake, RemoteTask};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raw::{
    self, Comm, Sending, CTL_CONFIG, CTL_KILL, TAG_BYE, TAG_CTL, TAG_FRAME, TAG_INFO,
};
use crate::worker::{Backoff, WORKER_ARG};

/// Configures an [`MpiPoolExecutor`].
///
/// ```no_run
/// use cfutures_mpi::MpiPoolExecutor;
/// use std::time::Duration;
///
/// fn main() {
///     cfutures_mpi::init(); // spawned workers serve from here
///     let pool = MpiPoolExecutor::builder()
///         .max_workers(4)
///         .heartbeat(Duration::from_millis(200), Duration::from_secs(1))
///         .time_limit(Duration::from_secs(600))
///         .build()
///         .unwrap();
///     # drop(pool);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    max_workers: Option<usize>,
    init: Option<Vec<u8>>,
    time_limit: Option<Duration>,
    window: usize,
    beat: Duration,
    lost_after: Duration,
    start_timeout: Duration,
    quiet_panics: bool,
    program: Option<String>,
    args: Vec<String>,
    hints: Vec<(String, String)>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            max_workers: None,
            init: None,
            time_limit: None,
            window: 64,
            beat: Duration::from_millis(200),
            lost_after: Duration::from_millis(1000),
            start_timeout: Duration::from_secs(60),
            quiet_panics: false,
            program: None,
            args: Vec::new(),
            hints: Vec::new(),
        }
    }
}

impl Builder {
    /// The number of workers to spawn (spawn mode; default: the number of CPUs). In world
    /// mode the workers are the other ranks, and this is ignored.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// A function each worker runs with `arg` before its first task (Python: `initializer`,
    /// `initargs`). If it fails, the pool becomes broken.
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
        self.init =
            Some(job::init_frame::<F, A>(&arg).unwrap_or_else(|e| panic!("initializer: {e}")));
        self
    }

    /// A default limit on how long each task may run. A task past it fails with
    /// [`TaskError::TimeLimit`]; its worker is told to exit and the pool continues without it.
    /// Per task: [`MpiPoolExecutor::submit_with_timeout`].
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// At most how many tasks may be on their way to (or queued at) one worker at once
    /// (default 64; at least 1). A new worker gets 2; each result of a short task doubles its
    /// share (up to this), and a task that ran longer than 2 ms brings it back to 1: tiny
    /// tasks travel many to a message and hide the network's latency, long tasks are
    /// balanced across workers as with Python's pools. The tasks sent to a worker are
    /// running as far as `cancel` is concerned.
    pub fn window(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }

    /// Each worker sends a heartbeat every `every`; a worker not heard from (heartbeat or
    /// result) for `lost_after` is declared lost, and its tasks fail with
    /// [`TaskError::WorkerLost`] (defaults: 200 ms and 1 s).
    pub fn heartbeat(mut self, every: Duration, lost_after: Duration) -> Self {
        self.beat = every.max(Duration::from_millis(1));
        self.lost_after = lost_after.max(self.beat * 2);
        self
    }

    /// How long starting the workers (spawn and handshake) may take (default 60 s).
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// Task panics are not printed on the workers' standard error (they still fail their
    /// task with message and location).
    pub fn quiet_panics(mut self, quiet: bool) -> Self {
        self.quiet_panics = quiet;
        self
    }

    /// Spawn mode: the program the workers run (default: this executable). It must be the
    /// same build (checked by a hash of the executable in the handshake) and call
    /// [`init`](crate::init) first in `main`.
    pub fn program(mut self, path: impl Into<String>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Spawn mode: an MPI info key for `MPI_Comm_spawn` (Open MPI: `host`, `hostfile`,
    /// `add-host`, `map-by`, `wdir`, ...).
    pub fn spawn_info(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.hints.push((key.into(), value.into()));
        self
    }

    /// Spawn mode: starts the workers (initializing MPI with `Threading::Multiple` if it is
    /// not yet) and returns the executor once every worker has answered the handshake.
    ///
    /// # Errors
    ///
    /// If MPI cannot be initialized with `Threading::Multiple`, the spawn fails, a worker
    /// refuses (another build), or the start takes longer than the start timeout.
    pub fn build(self) -> io::Result<MpiPoolExecutor> {
        let n = match self.max_workers {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    cfutures_core::InvalidArgument::zero_workers(),
                ))
            }
            Some(n) => n,
            None => cfutures_core::blocking::cpus(),
        };
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.to_string_lossy().into_owned(),
        };
        let mut args = vec![WORKER_ARG.to_owned()];
        args.extend(self.args.iter().cloned());
        let hints = self.hints.clone();
        crate::raw::singleton_recovery();
        // Hash the executable (the handshake's build identity) while MPI starts and spawns.
        let _ = thread::Builder::new().spawn(cfutures_remote::ident::build_id);
        self.start(Launch::Spawn {
            n,
            program,
            args,
            hints,
        })
    }

    /// World mode over `comm` (already duplicated): the executor at `root`.
    pub(crate) fn build_over(self, comm: Comm, root: c_int) -> io::Result<MpiPoolExecutor> {
        self.start(Launch::Comm { comm, root })
    }

    fn start(self, launch: Launch) -> io::Result<MpiPoolExecutor> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                next_id: 1,
                shutdown: false,
                broken: None,
                parked: false,
                workers: Vec::new(),
                lost_any: false,
            }),
            cv: Condvar::new(),
            bus: EventBus::new(),
            stats: StatsRecorder::new(),
            config: Config {
                time_limit: self.time_limit,
                window: self.window,
                beat: self.beat,
                lost_after: self.lost_after,
                init: self.init,
                options: handshake::Options::default().quiet_panics(self.quiet_panics),
            },
        });
        let (tx, rx) = mpsc::channel();
        let s2 = shared.clone();
        let start_timeout = self.start_timeout;
        let driver = thread::Builder::new()
            .name("cfutures-mpi-driver".into())
            .spawn(move || Driver::run(s2, launch, tx, start_timeout))?;
        let driver_thread = driver.thread().id();
        match rx.recv() {
            Ok(Ok(())) => Ok(MpiPoolExecutor {
                shared,
                driver: Mutex::new(Some(driver)),
                driver_thread,
            }),
            Ok(Err(e)) => {
                let _ = driver.join();
                Err(e)
            }
            Err(_) => {
                let _ = driver.join();
                Err(io::Error::other(
                    "the MPI driver thread ended while starting",
                ))
            }
        }
    }
}

enum Launch {
    Spawn {
        n: usize,
        program: String,
        args: Vec<String>,
        hints: Vec<(String, String)>,
    },
    Comm {
        comm: Comm,
        root: c_int,
    },
}

struct Config {
    time_limit: Option<Duration>,
    window: usize,
    beat: Duration,
    lost_after: Duration,
    init: Option<Vec<u8>>,
    options: handshake::Options,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    config: Config,
    bus: EventBus,
    stats: StatsRecorder,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts and announces a task's end.
    fn finished(
        &self,
        worker: Option<(&WorkerCounters, c_int)>,
        task: FutureId,
        outcome: TaskOutcome,
        was_started: bool,
        run_time: Option<Duration>,
    ) {
        self.stats
            .finished(worker.map(|w| w.0), outcome, was_started, run_time);
        self.bus
            .emit(|| Event::finished(task, worker.map(|w| w.1 as u64), outcome, run_time));
    }
}

struct Job {
    id: u64,
    frame: Vec<u8>,
    slot: Box<dyn Slot>,
    limit: Option<Duration>,
}

struct State {
    queue: VecDeque<Job>,
    next_id: u64,
    shutdown: bool,
    broken: Option<Broken>,
    /// The driver waits on the condition variable: a submitter must notify it.
    parked: bool,
    workers: Vec<WorkerInfo>,
    lost_any: bool,
}

/// A worker of an [`MpiPoolExecutor`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its rank: in the spawned workers' group (spawn mode), in the communicator (world).
    pub rank: u32,
    /// The host it runs on (`MPI_Get_processor_name`).
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Why it was declared lost, if it was.
    pub lost: Option<String>,
}

/// Python's `mpi4py.futures.MPIPoolExecutor`, for the process pool's tasks: workers are MPI
/// ranks, on as many machines as MPI knows.
///
/// Spawn mode (this constructor): the program must call [`init`](crate::init) first in
/// `main`. World mode: [`world`](crate::world).
///
/// Every combinator of `cfutures-combinators` works on it. Tasks are those of the process
/// pool: `submit_fn(f, arg)` with a fn item, [`RemoteTask`]s, `map` chunks.
pub struct MpiPoolExecutor {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
    driver_thread: thread::ThreadId,
}

impl std::fmt::Debug for MpiPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("MpiPoolExecutor")
            .field("workers", &st.workers.len())
            .field("queued", &st.queue.len())
            .field("shutdown", &st.shutdown)
            .field("broken", &st.broken.is_some())
            .finish()
    }
}

impl MpiPoolExecutor {
    /// Spawn mode with `n` workers and the defaults ([`Builder`]).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(n: usize) -> io::Result<Self> {
        Builder::default().max_workers(n).build()
    }

    /// A [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The workers: rank, host, pid, and whether they were lost.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.shared.lock().workers.clone()
    }

    /// What the executor does, as a stream of [`Event`]s (submitted, started, finished, a
    /// worker started or lost, broken, shutdown). A worker is named by its rank.
    pub fn events(&self) -> Events {
        self.shared.bus.subscribe()
    }

    /// A snapshot of the executor's counts and run times.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// True once the pool broke (every worker lost, or the initializer failed).
    pub fn is_broken(&self) -> bool {
        self.shared.lock().broken.is_some()
    }

    /// Runs `f(arg)` on a worker: `f` must be a fn item or a closure that captures nothing.
    ///
    /// # Errors
    ///
    /// After shutdown, or once the pool broke.
    pub fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        const { cfutures_remote::assert_zero_sized::<F>() };
        let _ = f;
        self.enqueue(job::call::<F, A, R>(&arg), self.shared.config.time_limit)
    }

    /// [`submit_fn`](Self::submit_fn) with a time limit: past it the task fails with
    /// [`TaskError::TimeLimit`] and its worker is told to exit.
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
        let _ = f;
        self.enqueue(job::call::<F, A, R>(&arg), Some(limit))
    }

    /// Submits a [`RemoteTask`] with a time limit (see
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
        self.enqueue(task.into_job(), Some(limit))
    }

    fn enqueue<R>(
        &self,
        (job, future): (Encoded, Future<R>),
        limit: Option<Duration>,
    ) -> Result<Future<R>, SubmitError> {
        let Encoded {
            mut frame,
            slot,
            error,
        } = job;
        let mut st = self.shared.lock();
        if let Some(b) = &st.broken {
            return Err(SubmitError::Broken(b.clone()));
        }
        if st.shutdown {
            return Err(SubmitError::Shutdown);
        }
        if let Some(e) = error {
            drop(st);
            slot.start();
            slot.finish(Outcome::Failed(e), &[]);
            return Ok(future);
        }
        let id = st.next_id;
        st.next_id += 1;
        job::set_id(&mut frame, id);
        let fid = slot.future_id();
        self.shared.stats.submitted();
        self.shared.bus.emit(|| Event::submitted(fid, None));
        st.queue.push_back(Job {
            id,
            frame,
            slot,
            limit,
        });
        if st.parked {
            st.parked = false;
            self.shared.cv.notify_one();
        }
        Ok(future)
    }

    /// Python's `shutdown(wait, cancel_futures)`: no more submissions; with
    /// `cancel_futures`, the queued tasks are cancelled; with `wait`, returns once every
    /// task is done and the workers were told to exit. Never blocks forever: a worker that
    /// stops answering is declared lost within the heartbeat deadline.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut st = self.shared.lock();
        st.shutdown = true;
        let cancelled: Vec<Job> = if cancel_futures {
            st.queue.drain(..).collect()
        } else {
            Vec::new()
        };
        st.parked = false;
        self.shared.cv.notify_one();
        drop(st);
        for j in cancelled {
            let fid = j.slot.future_id();
            j.slot.cancel();
            self.shared
                .finished(None, fid, TaskOutcome::Cancelled, false, None);
        }
        if wait && thread::current().id() != self.driver_thread {
            let mut d = self.driver.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = d.take() {
                let _ = h.join();
            }
        }
    }

    /// True if a worker was lost.
    pub(crate) fn lost_any(&self) -> bool {
        self.shared.lock().lost_any
    }
}

impl Drop for MpiPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl Executor for MpiPoolExecutor {
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        MpiPoolExecutor::shutdown(self, wait, cancel_futures)
    }
    fn is_shutdown(&self) -> bool {
        let st = self.shared.lock();
        st.shutdown || st.broken.is_some()
    }
}

impl<T: IntoJob> Submit<T> for MpiPoolExecutor {
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        let limit = self.shared.config.time_limit;
        self.enqueue(task.into_job(), limit)
    }
}

// ---------------------------------------------------------------------------------------
// The driver.

struct Flight {
    id: u64,
    slot: Box<dyn Slot>,
    deadline: Option<(Instant, Duration)>,
}

struct W {
    rank: c_int,
    host: String,
    window: VecDeque<Flight>,
    last_heard: Instant,
    lost: bool,
    ready: bool,
    /// The window holds a task with a time limit: nothing else is sent behind it.
    limited: bool,
    /// How many tasks it may hold now: 2 for a new worker, doubled (up to the window) by
    /// each result of a short task, 1 after a long one (over [`SLOW_TASK`]).
    cap: usize,
    pid: u32,
    counters: Option<Arc<WorkerCounters>>,
}

impl W {
    fn who(&self) -> Option<(&WorkerCounters, c_int)> {
        self.counters.as_deref().map(|c| (c, self.rank))
    }
}

/// A worker whose last task ran longer than this gets one task at a time.
const SLOW_TASK: Duration = Duration::from_millis(2);

struct Driver {
    shared: Arc<Shared>,
    comm: Comm,
    spawned: bool,
    workers: Vec<W>,
    sends: Vec<(usize, Sending)>,
    buf: Vec<u8>,
}

impl Driver {
    fn run(
        shared: Arc<Shared>,
        launch: Launch,
        tx: mpsc::Sender<io::Result<()>>,
        start_timeout: Duration,
    ) {
        let (comm, ranks, spawned) = match launch {
            Launch::Spawn {
                n,
                program,
                args,
                hints,
            } => {
                trace!("init");
                let r = raw::ensure_init().and_then(|_| {
                    trace!("spawn {n}");
                    raw::spawn(&program, &args, n, &hints)
                });
                trace!("spawned");
                match r {
                    Ok(c) => (c, (0..c.remote_size()).collect::<Vec<_>>(), true),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            Launch::Comm { comm, root } => {
                let ranks = (0..comm.size()).filter(|&r| r != root).collect::<Vec<_>>();
                (comm, ranks, false)
            }
        };
        let now = Instant::now();
        let mut d = Driver {
            shared,
            comm,
            spawned,
            workers: ranks
                .iter()
                .map(|&rank| W {
                    rank,
                    host: String::new(),
                    window: VecDeque::new(),
                    last_heard: now,
                    lost: false,
                    ready: false,
                    limited: false,
                    cap: 2,
                    pid: 0,
                    counters: None,
                })
                .collect(),
            sends: Vec::new(),
            buf: Vec::with_capacity(4096),
        };
        match d.handshake(start_timeout) {
            Ok(()) => {
                trace!("handshake done");
                let _ = tx.send(Ok(()));
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                d.teardown();
                return;
            }
        }
        d.serve();
        trace!("teardown");
        d.teardown();
        trace!("teardown done");
    }

    fn handshake(&mut self, limit: Duration) -> io::Result<()> {
        if self.workers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an MPI executor needs at least one worker rank (mpirun -n 2 or more)",
            ));
        }
        let build = cfutures_remote::ident::build_id()?;
        trace!("build id");
        let greeting = handshake::greeting_frame(&build, self.shared.config.options);
        let mut ctl = CTL_CONFIG.to_le_bytes().to_vec();
        ctl.extend_from_slice(&(self.shared.config.beat.as_millis() as u64).to_le_bytes());
        for i in 0..self.workers.len() {
            let rank = self.workers[i].rank;
            let s = self.comm.isend(greeting.clone(), rank, TAG_FRAME)?;
            self.sends.push((i, s));
            let s = self.comm.isend(ctl.clone(), rank, TAG_CTL)?;
            self.sends.push((i, s));
        }
        let deadline = Instant::now() + limit;
        let mut hello = vec![false; self.workers.len()];
        let mut info = vec![None; self.workers.len()];
        let mut b = Backoff::new();
        while hello.iter().any(|h| !h) || info.iter().any(Option::is_none) {
            self.sends.retain_mut(|(_, s)| !s.test());
            let Some((src, tag, n)) = self.comm.iprobe(raw::ANY, raw::ANY) else {
                if Instant::now() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the MPI workers did not all answer within {limit:?}"),
                    ));
                }
                b.pause();
                continue;
            };
            b.reset();
            self.comm.recv(src, tag, n, &mut self.buf)?;
            let Some(i) = self.workers.iter().position(|w| w.rank == src) else {
                continue;
            };
            match tag {
                TAG_FRAME => {
                    let payload = self.buf.get(wire::RES_HEADER..).unwrap_or(&[]);
                    match handshake::decode_hello(payload) {
                        Ok(Ok(_pid)) => hello[i] = true,
                        Ok(Err(why)) => {
                            return Err(io::Error::other(format!(
                                "MPI worker rank {src} refused to serve: {why}"
                            )))
                        }
                        Err(e) => {
                            return Err(io::Error::other(format!(
                                "MPI worker rank {src} answered the greeting with garbage: {e}"
                            )))
                        }
                    }
                }
                TAG_INFO if self.buf.len() >= 4 => {
                    let pid = u32::from_le_bytes(self.buf[..4].try_into().expect("4"));
                    let host = String::from_utf8_lossy(&self.buf[4..]).into_owned();
                    info[i] = Some((pid, host));
                }
                _ => {}
            }
        }
        let now = Instant::now();
        let mut infos = Vec::new();
        for (w, inf) in self.workers.iter_mut().zip(info) {
            let (pid, host) = inf.expect("all in");
            w.host = host.clone();
            w.last_heard = now;
            w.pid = pid;
            w.counters = Some(self.shared.stats.worker_started(w.rank as u64, Some(pid)));
            let rank = w.rank as u64;
            self.shared
                .bus
                .emit(|| Event::worker_started(rank, Some(pid)));
            infos.push(WorkerInfo {
                rank: w.rank as u32,
                host,
                pid,
                lost: None,
            });
        }
        self.shared.lock().workers = infos;
        // The initializer, if any, before any task (each worker runs frames in order).
        if let Some(init) = &self.shared.config.init {
            for i in 0..self.workers.len() {
                let s = self
                    .comm
                    .isend(init.clone(), self.workers[i].rank, TAG_FRAME)?;
                self.sends.push((i, s));
            }
        } else {
            for w in &mut self.workers {
                w.ready = true;
            }
        }
        Ok(())
    }

    fn serve(&mut self) {
        let mut backoff = Backoff::new();
        let check_every = (self.shared.config.beat / 2).max(Duration::from_millis(5));
        let mut last_check = Instant::now();
        loop {
            let mut progressed = false;
            while let Some((src, tag, n)) = self.comm.iprobe(raw::ANY, raw::ANY) {
                progressed = true;
                // A sender cut off mid-message must not hold the driver: the message has
                // the liveness deadline to arrive whole.
                let deadline = Instant::now() + self.shared.config.lost_after;
                let got = self.comm.recv_within(src, tag, n, &mut self.buf, deadline);
                let Some(i) = self.workers.iter().position(|w| w.rank == src) else {
                    continue;
                };
                if self.workers[i].lost {
                    continue;
                }
                match got {
                    Ok(true) => {
                        self.workers[i].last_heard = Instant::now();
                        if tag == TAG_FRAME {
                            self.on_frames(i);
                        }
                    }
                    Ok(false) => {
                        self.lose(i, "a message from it stopped arriving mid-way".into());
                    }
                    Err(e) => self.lose(i, format!("receiving from it failed: {e}")),
                }
            }
            self.sends.retain_mut(|(_, s)| !s.test());
            let now = Instant::now();
            if now.duration_since(last_check) >= check_every || progressed {
                self.check_deadlines(now);
                last_check = now;
            }
            // Take work, and see whether to stop.
            let shared = self.shared.clone();
            let mut st = shared.lock();
            if st.broken.is_none() && self.workers.iter().all(|w| w.lost) {
                drop(st);
                self.break_pool(Broken::new("every MPI worker of this executor was lost"));
                st = shared.lock();
            }
            let dispatched = self.dispatch(&mut st);
            let in_flight = self.workers.iter().any(|w| !w.window.is_empty());
            if st.queue.is_empty() && !in_flight && (st.shutdown || st.broken.is_some()) {
                st.shutdown = true;
                return;
            }
            if progressed || dispatched {
                drop(st);
                backoff.reset();
                continue;
            }
            let idle = !in_flight && self.sends.is_empty() && st.queue.is_empty();
            // Spin (for a moment) only when an answer may come soon: a submission after a
            // result, or a result from a worker whose tasks are short. Workers busy with long
            // tasks are polled with sleeps: spinning would take a core from them.
            let soon = idle
                || self
                    .workers
                    .iter()
                    .any(|w| !w.window.is_empty() && w.cap > 1);
            match backoff.next_spinning(soon) {
                Duration::ZERO => {
                    drop(st);
                    thread::yield_now();
                }
                pause => {
                    // Idle: sleep until a submission, or the next liveness check. Busy:
                    // poll again after `pause` (or at once if a submission comes).
                    st.parked = true;
                    let wait = if idle { check_every } else { pause };
                    let (mut st, _) = shared
                        .cv
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|p| p.into_inner());
                    st.parked = false;
                }
            }
        }
    }

    /// Sends queued jobs to the workers with room, several to a worker in one message (the
    /// frames are length-prefixed: the worker cuts them apart). True if any was sent.
    fn dispatch(&mut self, st: &mut State) -> bool {
        let cap = self.shared.config.window;
        let n = self.workers.len();
        let mut sent = false;
        let mut skip = vec![false; n];
        // Share the queue among the workers with room (the first one must not take it all).
        let with_room = self
            .workers
            .iter()
            .filter(|w| !w.lost && w.ready && !w.limited && w.window.len() < cap)
            .count()
            .max(1);
        let share = st.queue.len().div_ceil(with_room).max(1);
        while !st.queue.is_empty() {
            // The worker with room holding the fewest tasks, the lowest rank among equals:
            // tasks submitted together spread over idle workers, and tasks submitted one at
            // a time keep going to the same worker, which stays hot while the others sleep
            // (round robin kept every worker spinning, and on a small machine the caller's
            // thread then waited for a core).
            let pick = (0..n)
                .filter(|&i| {
                    let w = &self.workers[i];
                    !skip[i] && !w.lost && w.ready && !w.limited && w.window.len() < w.cap.min(cap)
                })
                .min_by_key(|&i| (self.workers[i].window.len(), i));
            let Some(i) = pick else { break };
            skip[i] = true;
            let cap = self.workers[i].cap.min(cap);
            let mut batch: Vec<u8> = Vec::new();
            let mut flights = Vec::new();
            while self.workers[i].window.len() + flights.len() < cap && flights.len() < share {
                let Some(front) = st.queue.front() else { break };
                // A task with a time limit goes alone to an idle worker (so that stopping
                // the worker stops only it).
                if front.limit.is_some()
                    && !(self.workers[i].window.is_empty() && flights.is_empty())
                {
                    break;
                }
                let job = st.queue.pop_front().expect("not empty");
                let fid = job.slot.future_id();
                if !job.slot.start() {
                    // Cancelled while queued.
                    self.shared
                        .finished(None, fid, TaskOutcome::Cancelled, false, None);
                    continue;
                }
                self.shared.stats.started();
                let (rank, pid) = (self.workers[i].rank as u64, self.workers[i].pid);
                self.shared
                    .bus
                    .emit(|| Event::started(fid, rank, Some(pid)));
                let limited = job.limit.is_some();
                if batch.is_empty() {
                    batch = job.frame;
                } else {
                    batch.extend_from_slice(&job.frame);
                }
                flights.push(Flight {
                    id: job.id,
                    slot: job.slot,
                    deadline: job.limit.map(|l| (Instant::now() + l, l)),
                });
                if limited || batch.len() > 1 << 20 {
                    break;
                }
            }
            if flights.is_empty() {
                continue;
            }
            let rank = self.workers[i].rank;
            match self.comm.isend(batch, rank, TAG_FRAME) {
                Ok(s) => {
                    self.sends.push((i, s));
                    let w = &mut self.workers[i];
                    w.limited = flights.iter().any(|f| f.deadline.is_some());
                    w.window.extend(flights);
                    sent = true;
                }
                Err(e) => {
                    for f in flights {
                        let fid = f.slot.future_id();
                        self.shared.finished(
                            self.workers[i].who(),
                            fid,
                            TaskOutcome::Err,
                            true,
                            None,
                        );
                        f.slot.finish(
                            Outcome::Failed(TaskError::Codec {
                                message: format!("cannot send the task: {e}").into(),
                            }),
                            &[],
                        );
                    }
                }
            }
        }
        sent
    }

    /// The result frames of one message from worker `i` (a worker sends the results of a
    /// batch of short tasks together).
    fn on_frames(&mut self, i: usize) {
        let mut at = 0;
        while at < self.buf.len() {
            let Some(n) = wire::complete_frame(&self.buf[at..]) else {
                self.lose(i, "it sent a truncated result frame".into());
                return;
            };
            if !self.on_frame(i, at, at + n) || self.workers[i].lost {
                return;
            }
            at += n;
        }
    }

    /// The result frame at `start..end` of the buffer; false if it was malformed (the
    /// worker is then lost).
    fn on_frame(&mut self, i: usize, start: usize, end: usize) -> bool {
        let h = match ResHeader::parse(&self.buf[start..end]) {
            Some(Ok(h)) if h.len == end - start && h.ext.is_none() => h,
            _ => {
                self.lose(i, "it sent a malformed result frame".into());
                return false;
            }
        };
        let range = start + h.payload_start()..end;
        match h.kind {
            wire::RES_OK | wire::RES_ERR => {
                let w = &mut self.workers[i];
                let Some(at) = w.window.iter().position(|f| f.id == h.id) else {
                    return true;
                };
                let f = w.window.remove(at).expect("index is valid");
                w.cap = if h.run_ns > SLOW_TASK.as_nanos() as u64 {
                    1
                } else {
                    (w.cap * 2).min(self.shared.config.window)
                };
                if f.deadline.is_some() {
                    w.limited = false;
                }
                let ok = h.kind == wire::RES_OK;
                let outcome = if ok {
                    TaskOutcome::Ok
                } else {
                    match wire::decode::<TaskError>(&self.buf[range.clone()]) {
                        Ok(e) | Err(e) => TaskOutcome::of_error(&e),
                    }
                };
                let fid = f.slot.future_id();
                let w = &self.workers[i];
                self.shared.finished(
                    w.who(),
                    fid,
                    outcome,
                    true,
                    Some(Duration::from_nanos(h.run_ns)),
                );
                f.slot.finish(Outcome::Frame(ok, range), &self.buf);
            }
            wire::RES_INIT_OK => self.workers[i].ready = true,
            wire::RES_INIT_ERR => {
                let cause = match wire::decode::<TaskError>(&self.buf[range]) {
                    Ok(e) | Err(e) => e,
                };
                let b = Broken::with_cause(
                    format!(
                        "the initializer failed on MPI worker rank {}",
                        self.workers[i].rank
                    ),
                    cause,
                );
                self.break_pool(b);
            }
            _ => {}
        }
        true
    }

    fn break_pool(&mut self, b: Broken) {
        let mut st = self.shared.lock();
        if st.broken.is_some() {
            return;
        }
        st.broken = Some(b.clone());
        let q: Vec<Job> = st.queue.drain(..).collect();
        drop(st);
        let reason = b.to_string();
        self.shared.bus.emit(|| Event::broken(reason));
        for j in q {
            let fid = j.slot.future_id();
            if j.slot.start() {
                j.slot.finish(Outcome::Broken(b.clone()), &[]);
                self.shared
                    .finished(None, fid, TaskOutcome::Broken, false, None);
            } else {
                self.shared
                    .finished(None, fid, TaskOutcome::Cancelled, false, None);
            }
        }
        for i in 0..self.workers.len() {
            let flights: Vec<Flight> = self.workers[i].window.drain(..).collect();
            for f in flights {
                let fid = f.slot.future_id();
                f.slot.finish(Outcome::Broken(b.clone()), &[]);
                self.shared
                    .finished(self.workers[i].who(), fid, TaskOutcome::Broken, true, None);
            }
        }
    }

    fn check_deadlines(&mut self, now: Instant) {
        let lost_after = self.shared.config.lost_after;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.lost {
                continue;
            }
            let silent = now.saturating_duration_since(w.last_heard);
            if silent > lost_after {
                self.lose(i, format!("no heartbeat for {:.1}s", silent.as_secs_f64()));
                continue;
            }
            let over = w
                .window
                .front()
                .and_then(|f| f.deadline)
                .filter(|(d, _)| now > *d);
            if let Some((_, limit)) = over {
                let w = &mut self.workers[i];
                let f = w.window.pop_front().expect("front exists");
                let fid = f.slot.future_id();
                let w = &self.workers[i];
                self.shared
                    .finished(w.who(), fid, TaskOutcome::TimedOut, true, None);
                f.slot
                    .finish(Outcome::Failed(TaskError::TimeLimit { limit }), &[]);
                let rank = w.rank;
                if let Ok(s) = self
                    .comm
                    .isend(CTL_KILL.to_le_bytes().to_vec(), rank, TAG_CTL)
                {
                    self.sends.push((i, s));
                }
                self.lose(
                    i,
                    format!("stopped: its task ran past its time limit of {limit:?}"),
                );
            }
        }
    }

    /// Declares worker `i` lost: its tasks fail with `WorkerLost`; it is sent nothing more.
    fn lose(&mut self, i: usize, why: String) {
        let w = &mut self.workers[i];
        if w.lost {
            return;
        }
        w.lost = true;
        let (rank, host, pid) = (w.rank as u32, w.host.clone(), w.pid);
        let flights: Vec<Flight> = w.window.drain(..).collect();
        // First what is known about the worker (so that whoever sees a task fail also sees
        // the worker lost), then its tasks.
        if let Some(c) = &w.counters {
            self.shared.stats.worker_stopped(c, true);
        }
        {
            let mut st = self.shared.lock();
            st.lost_any = true;
            if let Some(wi) = st.workers.iter_mut().find(|x| x.rank == rank) {
                wi.lost = Some(why.clone());
            }
        }
        let first = flights.first().map(|f| f.slot.future_id());
        self.shared
            .bus
            .emit(|| Event::worker_died(rank as u64, Some(pid), None, first));
        let err = TaskError::WorkerLost {
            rank,
            host: host.as_str().into(),
            why: why.as_str().into(),
        };
        for f in flights {
            let fid = f.slot.future_id();
            self.shared
                .finished(self.workers[i].who(), fid, TaskOutcome::Lost, true, None);
            f.slot.finish(Outcome::Failed(err.clone()), &[]);
        }
        // Sends to it may never complete: give them up (keeping their buffers).
        let mut keep = Vec::new();
        for (j, s) in self.sends.drain(..) {
            if j == i {
                s.abandon();
            } else {
                keep.push((j, s));
            }
        }
        self.sends = keep;
    }

    /// Tells every live worker to exit, and lets the communicator go.
    fn teardown(&mut self) {
        let exit = wire::control_frame(wire::CMD_EXIT, 0);
        for i in 0..self.workers.len() {
            if !self.workers[i].lost {
                if let Ok(s) = self
                    .comm
                    .isend(exit.clone(), self.workers[i].rank, TAG_FRAME)
                {
                    self.sends.push((i, s));
                }
            }
        }
        // Each live worker answers EXIT with BYE, its last message (its heartbeat thread
        // has stopped): after that nothing of it can still arrive on this communicator (a
        // late message on a freed communicator can crash the next one MPI makes with the
        // same context id). Waited for no longer than the liveness deadline; everything else
        // that arrives meanwhile (heartbeats) is drained.
        let deadline = Instant::now() + self.shared.config.lost_after;
        let mut waiting: Vec<c_int> = self
            .workers
            .iter()
            .filter(|w| !w.lost)
            .map(|w| w.rank)
            .collect();
        let mut b = Backoff::new();
        while (!self.sends.is_empty() || !waiting.is_empty()) && Instant::now() < deadline {
            self.sends.retain_mut(|(_, s)| !s.test());
            while let Some((src, tag, n)) = self.comm.iprobe(raw::ANY, raw::ANY) {
                let _ = self.comm.recv_within(src, tag, n, &mut self.buf, deadline);
                if tag == TAG_BYE {
                    waiting.retain(|&r| r != src);
                }
            }
            b.pause();
        }
        trace!("teardown: {} worker(s) did not say bye", waiting.len());
        for (_, s) in self.sends.drain(..) {
            s.abandon();
        }
        if self.spawned {
            // Freed, not disconnected: `MPI_Comm_disconnect` waits for every rank of the
            // other side, forever if one was lost (or dies now). The workers free theirs.
            self.comm.free();
        }
        self.shared.bus.close_with(Some(Event::shutdown()));
    }
}
