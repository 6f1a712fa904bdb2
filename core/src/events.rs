//! Events and statistics: what an executor did, as a stream ([`EventBus`], [`Events`]) and
//! as a snapshot ([`StatsRecorder`], [`Stats`]).
//!
//! Python's pools tell nothing: to learn which task ran where, for how long, and what killed
//! a worker, you wrap every function yourself. cfutures' executors embed an [`EventBus`] and
//! a [`StatsRecorder`] and expose them as `pool.events()` and `pool.stats()`:
//!
//! ```
//! use cfutures_core::events::{Event, EventBus, TaskOutcome};
//! use std::time::{Duration, Instant};
//!
//! // What an executor holds:
//! let bus = EventBus::new();
//! assert!(!bus.is_active()); // nobody listens: emitting costs one atomic load
//!
//! // What a user does: `pool.events()` is `bus.subscribe()`.
//! let events = bus.subscribe();
//! let (promise, future) = cfutures_core::pending::<u32>();
//! let task = future.id();
//! bus.emit(|| Event::submitted(task, None));
//! bus.emit(|| Event::finished(task, None, TaskOutcome::Ok, Some(Duration::from_micros(5))));
//! bus.close(); // the executor shut down: the stream ends after what was sent
//! # drop(promise);
//!
//! let seen: Vec<Event> = events.into_iter().collect();
//! assert!(matches!(seen[0], Event::Submitted { .. }));
//! assert_eq!(seen[1].outcome(), Some(TaskOutcome::Ok));
//! ```
//!
//! # Costs
//!
//! With no subscriber, [`EventBus::emit`] is one relaxed atomic load and a branch: the
//! closure that builds the event is not called. With subscribers, each event is built once,
//! cloned per subscriber (an event is small: ids, an `Instant`, at most an `Arc<str>`), and
//! sent with a non-blocking `try_send` under the bus's list lock.
//!
//! Statistics are always kept (a snapshot needs no subscription): a handful of relaxed
//! atomic increments per task (five or six for a task that ran: submitted, started, its
//! outcome, its worker's count, and two for the run-time histogram).
//!
//! # Memory ordering
//!
//! [`EventBus::is_active`] loads the subscriber count with `Relaxed`. That is enough for the
//! guarantee the bus gives — *every event of an action that happens after `subscribe()`
//! returned is delivered* — because a load that happens after a store (through any
//! synchronisation: program order, the executor's own locks, a channel) cannot see a value
//! older than that store in the count's modification order. The subscriber list itself is
//! behind a mutex, which orders the list's contents; the count only lets the hot path skip
//! that mutex. An event racing with `subscribe()` (neither happens before the other) may or
//! may not be delivered: it belongs to no definite side of the subscription.
//!
//! The statistics counters are independent `Relaxed` counters: a [`Stats`] snapshot read
//! while tasks run is not one instant's state (queued + running + done may differ from
//! submitted by the tasks that moved between two loads; derived numbers never underflow).
//!
//! # Back-pressure: none
//!
//! Each subscriber has a bounded buffer ([`DEFAULT_CAPACITY`] events, or
//! [`EventBus::subscribe_with_capacity`]; it grows as events come, so a large bound costs
//! memory only when the subscriber falls that far behind). A subscriber that does not keep
//! up loses the events that do not fit, and [`Events::dropped`] counts them: the pool never
//! waits for a slow observer. The final event ([`EventBus::close_with`], an executor's
//! `Shutdown`) is never lost. Dropping the [`Events`] unsubscribes.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::error::WorkerExit;
use crate::waiter::FutureId;

/// A worker's number in its executor: a thread's index in a thread pool, a worker process's
/// serial number in a process pool (a replacement worker gets a new one), a rank in MPI.
pub type WorkerId = u64;

/// How a task ended, in a [`Event::Finished`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// It returned a value.
    Ok,
    /// It returned an error ([`fallible`](crate::fallible)), or its result could not be
    /// decoded.
    Err,
    /// It panicked.
    Panicked,
    /// It was cancelled (queued, or while it ran where the executor can stop it).
    Cancelled,
    /// It ran past its time limit and was stopped.
    TimedOut,
    /// Its worker died under it ([`TaskError::WorkerDied`](crate::TaskError::WorkerDied)).
    Lost,
    /// It killed too many workers and was given up
    /// ([`TaskError::Quarantined`](crate::TaskError::Quarantined)).
    Quarantined,
    /// The executor broke before it could finish.
    Broken,
}

impl TaskOutcome {
    /// True for [`TaskOutcome::Ok`].
    pub fn is_ok(self) -> bool {
        self == TaskOutcome::Ok
    }

    /// The outcome a [`TaskError`](crate::TaskError) stands for (output attached or not).
    pub fn of_error(e: &crate::TaskError) -> TaskOutcome {
        let e = e.without_output();
        if e.is_panic() {
            TaskOutcome::Panicked
        } else if e.is_time_limit() {
            TaskOutcome::TimedOut
        } else if e.is_worker_died() {
            TaskOutcome::Lost
        } else if e.is_quarantined() {
            TaskOutcome::Quarantined
        } else {
            TaskOutcome::Err
        }
    }

    /// A short lower-case name (`ok`, `err`, `panicked`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Ok => "ok",
            TaskOutcome::Err => "err",
            TaskOutcome::Panicked => "panicked",
            TaskOutcome::Cancelled => "cancelled",
            TaskOutcome::TimedOut => "timed out",
            TaskOutcome::Lost => "lost",
            TaskOutcome::Quarantined => "quarantined",
            TaskOutcome::Broken => "broken",
        }
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing an executor did. Every variant carries `at`, when it happened (taken when the
/// executor noticed it, before the event was sent).
///
/// A task is named by its future's [`FutureId`] (as [`Future::id`](crate::Future::id) gives
/// it: stable while a handle to the future lives). For one task, in the order a subscriber
/// receives them: one `Submitted`; then `Started` each time it starts on a worker (again after
/// a `Retried`, or after the executor took it back from a stalled worker before it ran); then
/// exactly one `Finished`. A task cancelled or failed while queued has a `Finished` without a
/// `Started`. `Shutdown` is the last event of an executor; the stream ends after it. (One
/// exception: a process pool's `map` chunk whose worker died under it, with a retry policy,
/// runs again item by item, each item a task of its own under the chunk's id, with its own
/// `Started` and `Finished`.)
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A task was accepted.
    #[non_exhaustive]
    Submitted {
        /// The task.
        task: FutureId,
        /// Its name, where it was given one ([`named`](crate::named)).
        name: Option<Arc<str>>,
        /// When.
        at: Instant,
    },
    /// A task started on a worker (in a process pool: became the head of that worker's
    /// queue, from when its time limit counts).
    #[non_exhaustive]
    Started {
        /// The task.
        task: FutureId,
        /// The worker.
        worker: WorkerId,
        /// The worker's process id, where workers are processes.
        pid: Option<u32>,
        /// When.
        at: Instant,
    },
    /// A task ended, for good (a retried attempt is a [`Event::Retried`] instead). A future
    /// cancelled with [`Future::cancel`](crate::Future::cancel) while queued is done at once,
    /// but its `Finished` comes when the executor notices (as `wait` counts it: Python's
    /// `CANCELLED_AND_NOTIFIED`).
    #[non_exhaustive]
    Finished {
        /// The task.
        task: FutureId,
        /// The worker it ran on last, if it ran.
        worker: Option<WorkerId>,
        /// How it ended.
        outcome: TaskOutcome,
        /// How long it ran, where known (in a process pool, as the worker measured it).
        run_time: Option<Duration>,
        /// When.
        at: Instant,
    },
    /// A worker started.
    #[non_exhaustive]
    WorkerStarted {
        /// The worker.
        worker: WorkerId,
        /// Its process id, where workers are processes.
        pid: Option<u32>,
        /// When.
        at: Instant,
    },
    /// A worker died: crashed, was killed, or exited when it should not have (a worker
    /// retired by `max_tasks_per_child`, or let go at shutdown, does not die: it just
    /// stops).
    #[non_exhaustive]
    WorkerDied {
        /// The worker.
        worker: WorkerId,
        /// Its process id, where workers are processes.
        pid: Option<u32>,
        /// How it ended, where known.
        exit: Option<WorkerExit>,
        /// The task it was running, if any.
        task: Option<FutureId>,
        /// When.
        at: Instant,
    },
    /// A task will run again (its worker died under it, or its retry predicate said so).
    #[non_exhaustive]
    Retried {
        /// The task.
        task: FutureId,
        /// The failed attempts counted against it so far (0 when its worker died for another
        /// task's sake: the pool killed it for a cancel or a time limit just as that task ended).
        attempt: u32,
        /// When.
        at: Instant,
    },
    /// A task killed too many workers: it is given up (its `Finished` follows, with
    /// [`TaskOutcome::Quarantined`]).
    #[non_exhaustive]
    Quarantined {
        /// The task.
        task: FutureId,
        /// How many workers it killed.
        deaths: u32,
        /// When.
        at: Instant,
    },
    /// The executor broke: the pending tasks fail, no more are accepted.
    #[non_exhaustive]
    Broken {
        /// Why.
        reason: Arc<str>,
        /// When.
        at: Instant,
    },
    /// The executor is shut down: every task is done, every worker is gone. The last event.
    #[non_exhaustive]
    Shutdown {
        /// When.
        at: Instant,
    },
}

impl Event {
    /// A [`Event::Submitted`], now.
    pub fn submitted(task: FutureId, name: Option<Arc<str>>) -> Event {
        Event::Submitted {
            task,
            name,
            at: Instant::now(),
        }
    }

    /// A [`Event::Started`], now.
    pub fn started(task: FutureId, worker: WorkerId, pid: Option<u32>) -> Event {
        Event::Started {
            task,
            worker,
            pid,
            at: Instant::now(),
        }
    }

    /// A [`Event::Finished`], now.
    pub fn finished(
        task: FutureId,
        worker: Option<WorkerId>,
        outcome: TaskOutcome,
        run_time: Option<Duration>,
    ) -> Event {
        Event::Finished {
            task,
            worker,
            outcome,
            run_time,
            at: Instant::now(),
        }
    }

    /// A [`Event::WorkerStarted`], now.
    pub fn worker_started(worker: WorkerId, pid: Option<u32>) -> Event {
        Event::WorkerStarted {
            worker,
            pid,
            at: Instant::now(),
        }
    }

    /// A [`Event::WorkerDied`], now.
    pub fn worker_died(
        worker: WorkerId,
        pid: Option<u32>,
        exit: Option<WorkerExit>,
        task: Option<FutureId>,
    ) -> Event {
        Event::WorkerDied {
            worker,
            pid,
            exit,
            task,
            at: Instant::now(),
        }
    }

    /// A [`Event::Retried`], now.
    pub fn retried(task: FutureId, attempt: u32) -> Event {
        Event::Retried {
            task,
            attempt,
            at: Instant::now(),
        }
    }

    /// A [`Event::Quarantined`], now.
    pub fn quarantined(task: FutureId, deaths: u32) -> Event {
        Event::Quarantined {
            task,
            deaths,
            at: Instant::now(),
        }
    }

    /// A [`Event::Broken`], now.
    pub fn broken(reason: impl Into<Arc<str>>) -> Event {
        Event::Broken {
            reason: reason.into(),
            at: Instant::now(),
        }
    }

    /// A [`Event::Shutdown`], now.
    pub fn shutdown() -> Event {
        Event::Shutdown { at: Instant::now() }
    }

    /// When it happened.
    pub fn at(&self) -> Instant {
        match self {
            Event::Submitted { at, .. }
            | Event::Started { at, .. }
            | Event::Finished { at, .. }
            | Event::WorkerStarted { at, .. }
            | Event::WorkerDied { at, .. }
            | Event::Retried { at, .. }
            | Event::Quarantined { at, .. }
            | Event::Broken { at, .. }
            | Event::Shutdown { at } => *at,
        }
    }

    /// The task it is about (for `WorkerDied`: the task the worker held), if any.
    pub fn task(&self) -> Option<FutureId> {
        match self {
            Event::Submitted { task, .. }
            | Event::Started { task, .. }
            | Event::Finished { task, .. }
            | Event::Retried { task, .. }
            | Event::Quarantined { task, .. } => Some(*task),
            Event::WorkerDied { task, .. } => *task,
            _ => None,
        }
    }

    /// The worker it is about, if any.
    pub fn worker(&self) -> Option<WorkerId> {
        match self {
            Event::Started { worker, .. }
            | Event::WorkerStarted { worker, .. }
            | Event::WorkerDied { worker, .. } => Some(*worker),
            Event::Finished { worker, .. } => *worker,
            _ => None,
        }
    }

    /// A `Finished` event's outcome.
    pub fn outcome(&self) -> Option<TaskOutcome> {
        match self {
            Event::Finished { outcome, .. } => Some(*outcome),
            _ => None,
        }
    }

    /// A short name of the kind (`submitted`, `started`, `finished`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Submitted { .. } => "submitted",
            Event::Started { .. } => "started",
            Event::Finished { .. } => "finished",
            Event::WorkerStarted { .. } => "worker started",
            Event::WorkerDied { .. } => "worker died",
            Event::Retried { .. } => "retried",
            Event::Quarantined { .. } => "quarantined",
            Event::Broken { .. } => "broken",
            Event::Shutdown { .. } => "shut down",
        }
    }
}

/// How many events a subscriber's buffer holds by default.
pub const DEFAULT_CAPACITY: usize = 16 * 1024;

/// One subscriber, as the bus holds it.
struct Subscriber {
    id: u64,
    /// An unbounded channel held to `cap` events by the bus (a bounded crossbeam channel
    /// would allocate and touch its whole buffer, ~1 MB at the default capacity, when it is
    /// made; this one grows in blocks of 31 as events come). Sends happen under the bus's
    /// lock, and the receiver only takes away, so the length check cannot be overtaken.
    tx: Sender<Event>,
    cap: usize,
    shared: Arc<SubShared>,
}

/// What a subscriber and the bus share besides the channel.
#[derive(Default)]
struct SubShared {
    dropped: AtomicU64,
}

#[derive(Default)]
struct BusInner {
    /// `subs.len()`, readable without the lock (the hot path's check).
    active: AtomicUsize,
    subs: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    /// `close` ran: no more subscribers, no more events.
    closed: AtomicBool,
}

impl BusInner {
    fn subs(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        // Nothing panics while holding it (sends never block, never panic).
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The subscriber list an executor embeds: [`subscribe`](Self::subscribe) is its
/// `events()`, [`emit`](Self::emit) its hook.
///
/// Cheap to clone (one `Arc`): clones are the same bus. See the [module
/// documentation](self) for costs and ordering.
#[derive(Clone, Default)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.inner.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl EventBus {
    /// A bus with no subscriber.
    pub fn new() -> Self {
        EventBus::default()
    }

    /// Subscribes, with a buffer of [`DEFAULT_CAPACITY`] events. Every event of an action
    /// that happens after this returns is delivered (unless the buffer is full: see
    /// [`Events::dropped`]).
    pub fn subscribe(&self) -> Events {
        self.subscribe_with_capacity(DEFAULT_CAPACITY)
    }

    /// Subscribes, with a buffer of `capacity` events (at least 1). The buffer grows as
    /// events come (in blocks of 31), up to `capacity`: a large capacity costs memory only
    /// when the subscriber falls that far behind.
    ///
    /// On a bus already [closed](Self::close), the stream is empty and ended.
    pub fn subscribe_with_capacity(&self, capacity: usize) -> Events {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(SubShared::default());
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.inner.subs();
        if !self.inner.closed.load(Ordering::Relaxed) {
            subs.push(Subscriber {
                id,
                tx,
                cap: capacity.max(1),
                shared: shared.clone(),
            });
            // Under the lock, so that the count and the list agree. Relaxed: see the module
            // doc (the count is a hint for the hot path; the list is the truth).
            self.inner.active.store(subs.len(), Ordering::Relaxed);
        }
        drop(subs);
        Events {
            rx,
            shared,
            bus: Arc::downgrade(&self.inner),
            id,
        }
    }

    /// True if someone listens: the executor's fast check before doing work only an event
    /// needs. One relaxed atomic load.
    #[inline]
    pub fn is_active(&self) -> bool {
        // Relaxed: see "Memory ordering" in the module doc.
        self.inner.active.load(Ordering::Relaxed) != 0
    }

    /// Sends the event `make` builds to every subscriber; `make` is called only if there is
    /// one. Never blocks: a full subscriber loses the event (and counts it).
    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if self.is_active() {
            self.send(make());
        }
    }

    /// Sends `event` to every subscriber (the slow path of [`emit`](Self::emit)).
    pub fn send(&self, event: Event) {
        let mut subs = self.inner.subs();
        let before = subs.len();
        // (Cloning an event is a few words and at most one reference count.)
        subs.retain(|s| !deliver(s, event.clone()));
        if subs.len() != before {
            self.inner.active.store(subs.len(), Ordering::Relaxed);
        }
    }

    /// Ends every subscriber's stream (after what it has buffered) and refuses later
    /// subscribers: the executor is done.
    pub fn close(&self) {
        self.close_with(None);
    }

    /// As [`close`](Self::close), after sending `last` to every subscriber (the executor's
    /// [`Event::Shutdown`]). The final event is never lost: a subscriber whose buffer is
    /// full gets it anyway (one past its capacity).
    pub fn close_with(&self, last: Option<Event>) {
        let mut subs = self.inner.subs();
        if self.inner.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(e) = last {
            for s in subs.iter() {
                force(s, e.clone());
            }
        }
        subs.clear();
        self.inner.active.store(0, Ordering::Relaxed);
    }

    /// True once [`close`](Self::close) ran.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// The number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }
}

/// Sends to one subscriber; true if it is gone.
fn deliver(s: &Subscriber, e: Event) -> bool {
    if s.tx.len() >= s.cap {
        s.shared.dropped.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    match s.tx.try_send(e) {
        Ok(()) => false,
        Err(TrySendError::Full(_)) => {
            s.shared.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(TrySendError::Disconnected(_)) => true,
    }
}

/// Sends the final event to one subscriber, full or not (one past its capacity at most:
/// never blocking the executor, never lost).
fn force(s: &Subscriber, e: Event) {
    let _ = s.tx.try_send(e);
}

/// A subscription: the events of one executor, in the order it emitted them.
///
/// Iterate it (blocking; ends when the executor shut down, or was dropped), or poll it with
/// [`try_recv`](Self::try_recv) and [`recv_timeout`](Self::recv_timeout). Dropping it
/// unsubscribes.
pub struct Events {
    rx: Receiver<Event>,
    shared: Arc<SubShared>,
    bus: Weak<BusInner>,
    id: u64,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("buffered", &self.rx.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// Why [`Events::recv_timeout`] returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing came in time; more may come.
    Timeout,
    /// The stream ended: the executor shut down (or was dropped), and every event was read.
    Closed,
}

impl RecvError {
    /// True for [`RecvError::Timeout`].
    pub fn is_timeout(self) -> bool {
        self == RecvError::Timeout
    }
    /// True for [`RecvError::Closed`].
    pub fn is_closed(self) -> bool {
        self == RecvError::Closed
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Timeout => f.write_str("no event came in time"),
            RecvError::Closed => f.write_str("the event stream ended"),
        }
    }
}

impl std::error::Error for RecvError {}

impl Events {
    /// The next event, waiting for it; `None` once the stream ended.
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`] if none came in time, [`RecvError::Closed`] if the stream
    /// ended.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvError> {
        match self.rx.recv_timeout(timeout) {
            Ok(e) => Ok(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(RecvError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(RecvError::Closed),
        }
    }

    /// The next event if one is buffered, without waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Every event buffered now, without waiting.
    pub fn drain(&self) -> Vec<Event> {
        std::iter::from_fn(|| self.try_recv()).collect()
    }

    /// How many events this subscriber lost because its buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            let mut subs = bus.subs();
            subs.retain(|s| s.id != self.id);
            bus.active.store(subs.len(), Ordering::Relaxed);
        }
    }
}

impl Iterator for Events {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}

impl Iterator for &Events {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}

// ---------------------------------------------------------------------------------------
// Statistics.

/// Sub-buckets per power of two in the run-time histogram (8: a percentile is off by at
/// most 1/16 of its value).
const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
/// Buckets: values below `SUBS` ns each have their own; then `SUBS` per power of two up to
/// 2^64 ns.
const BUCKETS: usize = SUBS + (64 - SUB_BITS as usize) * SUBS;

/// A lock-free histogram of durations (nanoseconds), log-linear: 8 buckets per power of
/// two, so a percentile read from it is within ~6% of the true value. Recording is two
/// relaxed increments (and a load, plus a rare `fetch_max`).
struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUBS as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= SUB_BITS
    let sub = (ns >> (exp - SUB_BITS)) as usize & (SUBS - 1);
    SUBS + (exp - SUB_BITS) as usize * SUBS + sub
}

/// The smallest and largest value of bucket `b`.
fn bucket_range(b: usize) -> (u64, u64) {
    if b < SUBS {
        return (b as u64, b as u64);
    }
    let exp = (b - SUBS) / SUBS + SUB_BITS as usize;
    let sub = ((b - SUBS) % SUBS) as u64;
    let width = 1u64 << (exp - SUB_BITS as usize);
    let lo = (1u64 << exp) + sub * width;
    (lo, lo.saturating_add(width - 1))
}

impl Histogram {
    #[inline]
    fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        // A new extreme is rare: read first, write only then.
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
        if ns < self.min_ns.load(Ordering::Relaxed) {
            self.min_ns.fetch_min(ns, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> RunTimes {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let max = Duration::from_nanos(self.max_ns.load(Ordering::Relaxed));
        let min = Duration::from_nanos(self.min_ns.load(Ordering::Relaxed)).min(max);
        let sum = self.sum_ns.load(Ordering::Relaxed);
        let pct = |q: f64| -> Option<Duration> {
            if count == 0 {
                return None;
            }
            // The rank of the q-quantile (1-based), then the bucket holding it.
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (b, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    let (lo, hi) = bucket_range(b);
                    let mid = lo + (hi - lo) / 2;
                    // Within the exact extremes: one task's (or equal tasks') percentiles
                    // are its run time.
                    return Some(Duration::from_nanos(mid).clamp(min, max));
                }
            }
            Some(max)
        };
        RunTimes {
            count,
            mean: (count > 0).then(|| Duration::from_nanos(sum / count.max(1))),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: (count > 0).then_some(max),
        }
    }
}

/// Run-time percentiles (from a histogram: each within ~6% of the exact value, and within
/// the exact minimum and maximum; `max` is exact). `None` until a task with a known run time finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunTimes {
    /// Tasks counted.
    pub count: u64,
    /// The mean.
    pub mean: Option<Duration>,
    /// The median.
    pub p50: Option<Duration>,
    /// The 90th percentile.
    pub p90: Option<Duration>,
    /// The 99th percentile.
    pub p99: Option<Duration>,
    /// The longest.
    pub max: Option<Duration>,
}

/// One worker's counters, held by the executor beside its worker (recording touches no
/// lock), and listed by the [`StatsRecorder`].
#[derive(Debug)]
pub struct WorkerCounters {
    id: WorkerId,
    pid: Option<u32>,
    alive: AtomicBool,
    finished: AtomicU64,
    failed: AtomicU64,
}

impl WorkerCounters {
    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }
}

/// A cache line of its own (the counter submitters touch, away from the ones the executor's
/// threads touch as tasks run).
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Counts an executor keeps for [`Stats`]. Every method on a task's path is one to three
/// relaxed atomic increments (a finished task with a run time: five); only
/// [`worker_started`](Self::worker_started) and [`snapshot`](Self::snapshot) take a lock.
///
/// The executor calls [`submitted`](Self::submitted) for every accepted task,
/// [`started`](Self::started) each time one starts (again after a retry),
/// [`requeued`](Self::requeued) when a started one goes back to wait, and
/// [`finished`](Self::finished) once per task.
///
/// ```
/// use cfutures_core::events::{StatsRecorder, TaskOutcome};
/// use std::time::Duration;
///
/// let rec = StatsRecorder::new();
/// let w = rec.worker_started(0, None);
/// rec.submitted();
/// rec.submitted();
/// rec.started();
/// let s = rec.snapshot();
/// assert_eq!((s.queued, s.running), (1, 1));
/// rec.finished(Some(&w), TaskOutcome::Ok, true, Some(Duration::from_millis(3)));
/// let s = rec.snapshot();
/// assert_eq!((s.queued, s.running, s.done, s.succeeded), (1, 0, 1, 1));
/// assert_eq!(s.workers[0].finished, 1);
/// assert!(s.run_times.p50.unwrap() >= Duration::from_micros(2900));
/// ```
#[derive(Default)]
pub struct StatsRecorder {
    submitted: Padded<AtomicU64>,
    c: Padded<Counters>,
    run_times: Histogram,
    workers: Mutex<Vec<Arc<WorkerCounters>>>,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    /// Started tasks that went back to wait (a retry, a task taken back before it ran).
    requeued: AtomicU64,
    /// Tasks that ended without having started (cancelled or failed while queued).
    ended_queued: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    retried: AtomicU64,
    quarantined: AtomicU64,
    workers_started: AtomicU64,
    worker_deaths: AtomicU64,
}

impl fmt::Debug for StatsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// How many workers that are gone a [`Stats`] keeps listing (the most recent ones).
const GONE_KEPT: usize = 64;

impl StatsRecorder {
    /// No counts yet.
    pub fn new() -> Self {
        StatsRecorder::default()
    }

    /// A task was accepted.
    #[inline]
    pub fn submitted(&self) {
        self.submitted.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A task started.
    #[inline]
    pub fn started(&self) {
        self.c.0.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A started task went back to wait: it will start again. `retry`: because of a retry
    /// (counted in [`Stats::retried`]), not because the executor moved it elsewhere.
    #[inline]
    pub fn requeued(&self, retry: bool) {
        self.c.0.requeued.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.c.0.retried.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A task that had not started will run again after a retry (counted in
    /// [`Stats::retried`] only).
    #[inline]
    pub fn retried(&self) {
        self.c.0.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// A task ended for good, on `worker` if it ran. `was_started`: it had started (and not
    /// gone back to wait since); `run_time`: how long it ran, where known.
    #[inline]
    pub fn finished(
        &self,
        worker: Option<&WorkerCounters>,
        outcome: TaskOutcome,
        was_started: bool,
        run_time: Option<Duration>,
    ) {
        let c = &self.c.0;
        if !was_started {
            c.ended_queued.fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            TaskOutcome::Ok => &c.succeeded,
            TaskOutcome::Cancelled => &c.cancelled,
            TaskOutcome::Quarantined => {
                c.quarantined.fetch_add(1, Ordering::Relaxed);
                &c.failed
            }
            _ => &c.failed,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Some(w) = worker {
            w.finished(outcome);
        }
        if let Some(d) = run_time {
            self.run_times.record(d);
        }
    }

    /// A worker started: its counters, for the executor to keep beside it.
    pub fn worker_started(&self, id: WorkerId, pid: Option<u32>) -> Arc<WorkerCounters> {
        self.c.0.workers_started.fetch_add(1, Ordering::Relaxed);
        let w = Arc::new(WorkerCounters {
            id,
            pid,
            alive: AtomicBool::new(true),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let mut ws = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the live ones and the most recent of the gone.
        let gone = ws
            .iter()
            .filter(|w| !w.alive.load(Ordering::Relaxed))
            .count();
        if gone > GONE_KEPT {
            let mut skip = gone - GONE_KEPT;
            ws.retain(|w| {
                if skip > 0 && !w.alive.load(Ordering::Relaxed) {
                    skip -= 1;
                    false
                } else {
                    true
                }
            });
        }
        ws.push(w.clone());
        w
    }

    /// A worker stopped: `died` if it crashed or was killed (not retired or let go).
    pub fn worker_stopped(&self, worker: &WorkerCounters, died: bool) {
        worker.alive.store(false, Ordering::Relaxed);
        if died {
            self.c.0.worker_deaths.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts now (see the module doc on consistency).
    pub fn snapshot(&self) -> Stats {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.c.0;
        // Terminal counts first, then the ones that feed them: a task moving on between two
        // loads is then counted in its later state twice at worst, and the differences are
        // clamped at 0.
        let succeeded = ld(&c.succeeded);
        let failed = ld(&c.failed);
        let cancelled = ld(&c.cancelled);
        let ended_queued = ld(&c.ended_queued);
        let requeued = ld(&c.requeued);
        let started = ld(&c.started);
        let submitted = ld(&self.submitted.0);
        let done = succeeded + failed + cancelled;
        let ended_started = done.saturating_sub(ended_queued);
        let running = started.saturating_sub(ended_started + requeued);
        let queued = (submitted + requeued).saturating_sub(started + ended_queued);
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|w| WorkerStats {
                id: w.id,
                pid: w.pid,
                alive: w.alive.load(Ordering::Relaxed),
                finished: ld(&w.finished),
                failed: ld(&w.failed),
            })
            .collect();
        Stats {
            submitted,
            queued,
            running,
            done,
            succeeded,
            failed,
            cancelled,
            retried: ld(&c.retried),
            quarantined: ld(&c.quarantined),
            workers_started: ld(&c.workers_started),
            worker_deaths: ld(&c.worker_deaths),
            workers,
            run_times: self.run_times.snapshot(),
        }
    }
}

impl WorkerCounters {
    /// A task ended on this worker (what [`StatsRecorder::finished`] records per worker;
    /// for an executor that counts the per-worker part where it has the worker at hand).
    #[inline]
    pub fn finished(&self, outcome: TaskOutcome) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_ok() && outcome != TaskOutcome::Cancelled {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One worker in a [`Stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Its id (as in [`Event::Started`]).
    pub id: WorkerId,
    /// Its process id, where workers are processes.
    pub pid: Option<u32>,
    /// True while it runs (false once it exited or died).
    pub alive: bool,
    /// Tasks that ended on it (a task whose worker died under it ended there).
    pub finished: u64,
    /// Of those, the ones that did not succeed (cancellations aside).
    pub failed: u64,
}

/// A snapshot of an executor's counts (`pool.stats()`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Tasks accepted.
    pub submitted: u64,
    /// Waiting to start (queued, or waiting for a retry).
    pub queued: u64,
    /// Running now.
    pub running: u64,
    /// Ended for good: `succeeded + failed + cancelled`.
    pub done: u64,
    /// Ended with a value.
    pub succeeded: u64,
    /// Ended with an error, a panic, a time limit, a worker death, a quarantine, or a broken
    /// executor.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Retries (a task run again counts once per retry).
    pub retried: u64,
    /// Tasks quarantined (counted in `failed` too).
    pub quarantined: u64,
    /// Workers started, replacements included.
    pub workers_started: u64,
    /// Workers that died (crashed or were killed; not the ones retired or let go).
    pub worker_deaths: u64,
    /// Each worker alive, then the most recent that are gone, in the order they started.
    pub workers: Vec<WorkerStats>,
    /// Run times of the tasks that ran to a result.
    pub run_times: RunTimes,
}

#[cfg(test)]
mod test;
