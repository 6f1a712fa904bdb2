//! The pool's shared state, the worker loop, and the protocols that tie them together.
//!
//! # Who touches what
//!
//! * `queue` — submitters push, workers pop, `shutdown(cancel_futures)` and a breaking
//!   initializer drain. Lock-free ([`SegQueue`]).
//! * `state` — one word: the `SHUTDOWN` and `BROKEN` flags and, below them, the number of
//!   submits in flight. A submit adds one before it looks at the flags and subtracts it when
//!   its task is queued and a worker is arranged for it; shutting down sets a flag and then
//!   waits for the count to drain, so after that no task can arrive (no lock on the submit
//!   path, and no task slips in behind a shutdown).
//! * `idle_tokens` — Python 3.12's idle semaphore: a worker adds one when it becomes idle
//!   (once per idle period, *before* publishing its last result, so a caller that submits
//!   again at once reuses it); a submit that takes one starts no thread. Only a pool that can
//!   still grow looks at tokens: a full pool's submits touch no counter the workers write.
//!   Tokens left while the pool was full are stale; a submit that finds no worker idle at
//!   all ignores them.
//! * `idle`, `sleeping`, `sleepers` — the sleep protocol, below.
//! * `live`, `blocked` — threads alive (or reserved and starting), and those blocked on a
//!   future or in `shutdown(wait)` (see "Compensation").
//! * `closed` — for workers, on a line submits do not write: a flag is set *and* every
//!   submit it accepted has queued its task. Set by `close` after the count drained, so
//!   the workers' exit condition is `closed` and an empty queue: it must not read the
//!   count, which refused submits raise for an instant after the shutdown woke everyone
//!   (a worker that read it then would park for good).
//! * `events`, `stats`, `run_times`, `drained_*`, `draining` — `events()` and `stats()`.
//!   The submit path reads `events` once, each task run twice, as it starts and as it ends
//!   (a relaxed load each while nobody subscribes; the second is skipped when the first
//!   found a subscriber). Task counts live in each worker's [`Slot`], written by that
//!   worker alone (a load and a store: [`bump`]); an exiting worker moves them to
//!   `registry.gone` under the registry lock. Run times: every task while someone
//!   subscribes, else one in [`SAMPLE_EVERY`]. `Shutdown` ends the stream once the pool is
//!   closed, every worker has exited and no drain is in flight ([`Shared::finish_events`]).
//! * `registry` — per-worker slots (for the counts users can watch) and join handles. A
//!   thread that exits while the pool lives (a retiring compensating thread, a replaced
//!   one) is joined by the next thread that starts or exits ([`Shared::reap`]), so its
//!   stack is freed then, not at shutdown.
//!
//! # Sleep protocol
//!
//! An idle worker spins, then yields ([`Backoff`]), then parks. While it does the first two
//! it is counted as *spinning*; a submit never unparks anyone while a worker is spinning,
//! because that worker will find the task — so a busy pool makes no wake-up syscalls.
//! `idle` holds the spinning count in its low half and the parked count in its high half, so
//! each move between the two is one atomic step and each read a consistent snapshot;
//! `sleeping` is a copy of the parked count on a quiet cache line, which submits read first.
//!
//! To park, a worker (1) pushes its slot on `sleepers` and moves itself from spinning to
//! parked, (2) issues a `SeqCst` fence, (3) looks at the queue (and the exit condition)
//! once more, and only then parks. A submit (1) pushes its task, (2) issues a `SeqCst`
//! fence, (3) reads `sleeping` and, if someone is parked, the spinning count, and unparks a
//! sleeper if nobody spins. The two fences are totally ordered: either the worker's re-check
//! sees the task, or the submit sees the worker parked and not spinning. No task is left
//! behind a parked pool.
//!
//! A waker pops the sleeper and counts it as spinning *before* unparking it, so a burst of
//! submits wakes one worker, not one per task. That worker, when it takes a task and was the
//! last one spinning, wakes the next sleeper if tasks remain: parallelism ramps up one
//! worker at a time, as in tokio's scheduler.
//!
//! # Unwinding
//!
//! No user code can unwind into the worker loop: core catches a task's panic, drops panic
//! payloads under a guard, catches each done-callback and waiter notification and the drop
//! of a result the promise lets go of; jobs dropped unrun go through `discard_task`. As a
//! backstop, `worker_main` catches an unwind of the whole loop anyway: the worker gives
//! back its idle token and spinning count, counts itself gone (waking shutdown waiters),
//! exits normally, and a replacement starts if tasks are queued and no worker is idle.
//!
//! # Compensation (nested waits)
//!
//! Each worker installs a [`BlockingHook`]. When a task parks on a future (after core's
//! spin and yield), the hook counts the worker in `blocked` and, if tasks are queued and no
//! worker is idle, starts a compensating thread: the limit is `max_workers` threads *not
//! blocked*. When the pool has more threads than that and one runs out of work, it retires.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::Instant;

use cfutures_core::blocking::{self, Backoff, BlockingHook};
use cfutures_core::events::{
    Event, EventBus, Stats, StatsRecorder, TaskOutcome, WorkerCounters, WorkerId,
};
use cfutures_core::{Broken, FutureId, RunHooks, TaskError};

use crate::job::RawJob;
use crossbeam_queue::SegQueue;
use crossbeam_utils::CachePadded;

/// A pool's initializer, with its outcome normalised.
pub(crate) type Initializer = Arc<dyn Fn() -> Result<(), TaskError> + Send + Sync>;

/// Python's `BrokenThreadPool` message.
pub(crate) const BROKEN_MESSAGE: &str =
    "BrokenThreadPool: a thread initializer failed, the thread pool is not usable anymore";

const SHUTDOWN: usize = 1 << (usize::BITS - 1);
const BROKEN: usize = 1 << (usize::BITS - 2);
const FLAGS: usize = SHUTDOWN | BROKEN;

/// One parked worker in `Shared::idle` (spinning ones count from 1 in the low half).
const SLEEP_ONE: usize = 1 << (usize::BITS / 2);
const SPIN_MASK: usize = SLEEP_ONE - 1;

/// What a worker is doing, for the counts users can watch.
const STARTING: u8 = 0;
const IDLE: u8 = 1;
const RUNNING: u8 = 2;
const BLOCKED: u8 = 3;

/// One worker thread's slot: its state, its wake-up flag, its number and its task counts.
pub(crate) struct Slot {
    state: AtomicU8,
    notified: AtomicBool,
    thread: Thread,
    /// The worker's number: its thread is named `<prefix>_<id>`; events name it so.
    id: WorkerId,
    /// Written by this worker only (see [`bump`]); on a line of their own.
    counts: CachePadded<TaskCounts>,
}

/// One worker's task counts, for [`Shared::stats`]. Only the worker itself writes them, so
/// an increment is a load and a store ([`bump`]): no read-modify-write instruction and no
/// line shared with another writer on the per-task path.
#[derive(Default)]
struct TaskCounts {
    /// Tasks that started on this worker (their futures moved to RUNNING).
    started: AtomicU64,
    /// Of those, the ones that ended with a value...
    succeeded: AtomicU64,
    /// ... and with a failure (a panic, an error the task returned).
    failed: AtomicU64,
    /// Tasks this worker dequeued cancelled (it noticed the cancellation; they never ran).
    cancelled: AtomicU64,
}

/// Adds one to a counter that only the calling thread writes: a load and a store.
///
/// Release (a plain store on x86 and, like the load, no read-modify-write anywhere): a
/// reader that loads a task's end count with Acquire then sees its start counted too, so
/// `started − ended` (the tasks running) never goes negative and `submitted` never counts
/// a task twice. The load is Relaxed: only this thread writes the counter.
#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Release);
}

/// The task counts of the workers that have exited, and the last ones' own counts.
#[derive(Default)]
struct GoneCounts {
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    /// `(worker, finished, failed)` of the most recent exited workers (at most
    /// [`GONE_KEPT`], as the stats recorder keeps).
    workers: std::collections::VecDeque<(WorkerId, u64, u64)>,
}

const GONE_KEPT: usize = 64;

/// Without a subscriber, one task in this many (per worker, from its first) is timed for
/// the run-time percentiles of [`Shared::stats`]: two clock reads cost about as much as a
/// whole no-op task, so timing every one would be far from free. With a subscriber every
/// task is timed (its `Finished` event carries its run time).
const SAMPLE_EVERY: u32 = 32;

impl Slot {
    fn set(&self, state: u8) {
        // Relaxed: the state is only read for statistics.
        self.state.store(state, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Registry {
    slots: Vec<Arc<Slot>>,
    handles: Vec<JoinHandle<()>>,
    /// Threads waiting for the pool to finish (woken whenever a worker exits).
    exit_waiters: Vec<Thread>,
    /// What the exited workers counted.
    gone: GoneCounts,
}

/// Counts of what the pool is doing; see the introspection methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) idle: usize,
    pub(crate) running: usize,
    pub(crate) blocked: usize,
}

pub(crate) struct Shared {
    queue: SegQueue<RawJob>,
    state: CachePadded<AtomicUsize>,
    idle_tokens: CachePadded<AtomicUsize>,
    /// Idle workers: spinning ones in the low half, parked ones in the high half, so that
    /// every move between the two is one atomic step and every read a consistent snapshot.
    idle: CachePadded<AtomicUsize>,
    // Rarely written: read on every submit without bouncing cache lines.
    /// A copy of the parked count, changed only when a worker parks or wakes: the submit
    /// path reads this first and looks at `idle` only when someone is parked.
    sleeping: AtomicUsize,
    live: AtomicUsize,
    blocked: AtomicUsize,
    /// A copy of "a flag in `state` is set", for workers (`state` changes on every submit).
    closed: AtomicBool,
    sleepers: Mutex<Vec<Arc<Slot>>>,
    /// Workers of this pool waiting inside `shutdown(wait = true)`.
    inside_waiters: AtomicUsize,
    started: AtomicUsize,
    max_workers: usize,
    prefix: String,
    initializer: Option<Initializer>,
    broken: OnceLock<Broken>,
    registry: Mutex<Registry>,
    /// `events()`: emitting costs one relaxed load while nobody subscribes.
    events: EventBus,
    /// Workers started and stopped (and the deaths); the task counts live in the slots.
    stats: StatsRecorder,
    /// Only its run-time histogram is used: the timed tasks (see [`SAMPLE_EVERY`]).
    run_times: StatsRecorder,
    /// Tasks cancelled by `shutdown(cancel_futures)` and failed by a breaking pool while
    /// queued (slow paths).
    drained_cancelled: AtomicU64,
    drained_failed: AtomicU64,
    /// Drains in progress (`shutdown(cancel_futures)`, a breaking pool): the stream's
    /// `Shutdown` waits for them, so that the `Finished` of each task they drain comes
    /// before it (see [`Shared::finish_events`]).
    draining: AtomicUsize,
}

thread_local! {
    /// The pool whose worker this thread is (its address; 0: none).
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks, so a poisoned one still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a submit was refused.
pub(crate) enum Refused {
    Shutdown,
    Broken(Broken),
}

impl Shared {
    pub(crate) fn new(
        max_workers: usize,
        prefix: String,
        initializer: Option<Initializer>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            queue: SegQueue::new(),
            state: CachePadded::new(AtomicUsize::new(0)),
            idle_tokens: CachePadded::new(AtomicUsize::new(0)),
            idle: CachePadded::new(AtomicUsize::new(0)),
            sleeping: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            sleepers: Mutex::new(Vec::new()),
            inside_waiters: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            max_workers,
            prefix,
            initializer,
            broken: OnceLock::new(),
            registry: Mutex::new(Registry::default()),
            events: EventBus::new(),
            stats: StatsRecorder::new(),
            run_times: StatsRecorder::new(),
            drained_cancelled: AtomicU64::new(0),
            drained_failed: AtomicU64::new(0),
            draining: AtomicUsize::new(0),
        })
    }

    // ----- submit ---------------------------------------------------------------------

    /// Queues `job` (of the future `task`) and makes sure a worker will run it.
    pub(crate) fn submit(self: &Arc<Self>, job: RawJob, task: FutureId) -> Result<(), Refused> {
        // SeqCst: orders this submit against `close` (which sets a flag, then waits for the
        // count to drain): either we see the flag, or `close` waits for us.
        let prev = self.state.fetch_add(1, Ordering::SeqCst);
        if prev & FLAGS != 0 {
            self.state.fetch_sub(1, Ordering::Release);
            return Err(self.refusal(prev));
        }
        // Before the push: no worker can report the task started before it is submitted.
        self.events.emit(|| Event::submitted(task, None));
        self.queue.push(job);
        // SeqCst fence: the submit side of the sleep protocol (module doc), and of
        // compensation and retirement: after it we read the counters a worker changes
        // before its own fence and re-check of the queue.
        fence(Ordering::SeqCst);
        let spawned = if self.needs_thread() && self.try_reserve_thread() {
            self.spawn_worker()
        } else {
            self.notify_one();
            Ok(())
        };
        // Release: the push above happens before a shutdown that sees the count drop.
        self.state.fetch_sub(1, Ordering::Release);
        // Only now: breaking the pool waits for in-flight submits, this one included.
        if let Err(e) = spawned {
            self.spawn_failed(e);
        }
        Ok(())
    }

    fn refusal(&self, state: usize) -> Refused {
        if state & BROKEN != 0 {
            Refused::Broken(self.broken.get().cloned().expect("set before the flag"))
        } else {
            Refused::Shutdown
        }
    }

    /// Python's rule: start a thread when no worker is idle and fewer than `max_workers`
    /// exist. Only a pool that can still grow looks at the idle tokens (a full pool's
    /// submits touch no counter the workers write).
    fn needs_thread(&self) -> bool {
        if !self.can_grow() {
            return false;
        }
        // A worker counts as idle from the moment it adds its token (see `become_idle`).
        // Relaxed: read after the SeqCst fence in `submit`.
        if self.idle.load(Ordering::Relaxed) == 0 {
            // No worker idle: any token left is stale (tokens pile up while the pool is full
            // and nobody takes them). Start a thread, unless the queue is empty: then a
            // worker already took our task (and stopped being idle just before we looked).
            !self.queue.is_empty()
        } else {
            !self.take_idle_token()
        }
    }

    /// How many threads the pool may have now: `max_workers` plus the blocked ones.
    fn thread_limit(&self) -> usize {
        // SeqCst: compensation reads `live`/`blocked` against the queue (module doc).
        self.max_workers + self.blocked.load(Ordering::SeqCst)
    }

    /// Fewer than `max_workers` unblocked threads exist.
    fn can_grow(&self) -> bool {
        self.live.load(Ordering::SeqCst) < self.thread_limit()
    }

    /// Takes one idle token if there is one (Python: `_idle_semaphore.acquire(False)`).
    fn take_idle_token(&self) -> bool {
        // Relaxed: the token count guards no data; the fences order the protocol.
        let mut t = self.idle_tokens.load(Ordering::Relaxed);
        while t > 0 {
            match self.idle_tokens.compare_exchange_weak(
                t,
                t - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => t = actual,
            }
        }
        false
    }

    fn give_idle_token(&self) {
        // Relaxed: see `take_idle_token`.
        self.idle_tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// Reserves a new thread if fewer than `max_workers` unblocked threads exist.
    fn try_reserve_thread(&self) -> bool {
        // SeqCst: compensation reads `live`/`blocked` against the queue (module doc).
        let mut live = self.live.load(Ordering::SeqCst);
        loop {
            if live >= self.thread_limit() {
                return false;
            }
            match self.live.compare_exchange_weak(
                live,
                live + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => live = actual,
            }
        }
    }

    /// Starts a worker for a reserved place.
    fn spawn_worker(self: &Arc<Self>) -> std::io::Result<()> {
        // Relaxed: a unique number for the name.
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let shared = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("{}_{}", self.prefix, n))
            .spawn(move || worker_main(shared, n as WorkerId));
        match spawned {
            Ok(handle) => {
                lock(&self.registry).handles.push(handle);
                self.reap();
                Ok(())
            }
            Err(e) => {
                self.thread_gone();
                Err(e)
            }
        }
    }

    /// Joins the threads that have exited (retired, or replaced after an unwind) while the
    /// pool lives, so that their stacks are freed now rather than at shutdown. Called on
    /// the slow paths that change the set of threads (a thread starts, a thread retires).
    /// Joins only threads that have returned from their main function: waits at most for
    /// such a thread's last steps.
    fn reap(&self) {
        let finished: Vec<JoinHandle<()>> = {
            let mut r = lock(&self.registry);
            let mut finished = Vec::new();
            let mut i = 0;
            while i < r.handles.len() {
                if r.handles[i].is_finished() {
                    finished.push(r.handles.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            finished
        };
        for h in finished {
            // A worker's main function never unwinds (it catches, see `worker_main`).
            let _ = h.join();
        }
    }

    /// The OS refused a thread. With no worker left, queued tasks could wait forever: fail
    /// them instead (the pool is broken). Otherwise the live workers will run them.
    fn spawn_failed(&self, e: std::io::Error) {
        if self.live.load(Ordering::SeqCst) == 0 {
            self.break_pool(
                "BrokenThreadPool: could not start a worker thread",
                TaskError::new(e),
            );
        }
    }

    /// Wakes a sleeper if nobody is spinning (the caller issued a `SeqCst` fence after
    /// queueing).
    fn notify_one(&self) {
        // Relaxed: read after the caller's SeqCst fence (module doc).
        // `sleeping` first: it rarely changes, while `spinning` bounces between workers.
        if self.sleeping.load(Ordering::Relaxed) > 0 && self.spinning() == 0 {
            self.wake_one();
        }
    }

    // The idle counters. SeqCst throughout: these are the sleep protocol's counters (module
    // doc), read after SeqCst fences on the other side.

    fn spinning(&self) -> usize {
        self.idle.load(Ordering::SeqCst) & SPIN_MASK
    }

    fn spin_inc(&self) {
        self.idle.fetch_add(1, Ordering::SeqCst);
    }

    /// Returns the number spinning before.
    fn spin_dec(&self) -> usize {
        self.idle.fetch_sub(1, Ordering::SeqCst) & SPIN_MASK
    }

    /// Called under the `sleepers` lock.
    fn spin_to_sleep(&self) {
        self.idle.fetch_add(SLEEP_ONE - 1, Ordering::SeqCst);
        self.sleeping.fetch_add(1, Ordering::SeqCst);
    }

    /// Called under the `sleepers` lock.
    fn sleep_to_spin(&self) {
        self.idle.fetch_sub(SLEEP_ONE - 1, Ordering::SeqCst);
        self.sleeping.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes the most recently parked worker; false if none is parked.
    fn wake_one(&self) -> bool {
        let slot = {
            let mut sleepers = lock(&self.sleepers);
            let Some(slot) = sleepers.pop() else {
                return false;
            };
            // SeqCst: counters of the sleep protocol (module doc). The woken worker is
            // counted as spinning from now on, so the next submit does not wake another.
            self.sleep_to_spin();
            slot
        };
        // Release: pairs with the sleeper's Acquire swap.
        slot.notified.store(true, Ordering::Release);
        slot.thread.unpark();
        true
    }

    fn wake_all(&self) {
        while self.wake_one() {}
    }

    // ----- the worker -----------------------------------------------------------------

    /// The exit condition: shut down or broken with every accepted task queued (`closed`),
    /// and the queue empty (it only shrinks then).
    fn closing_and_drained(&self) -> bool {
        // SeqCst: the sleep protocol's re-check (module doc): `close` sets `closed` before
        // it wakes everyone. Once set, no task can be queued any more (every accepted
        // submit has queued its task, which this load then sees: `close` acquired their
        // decrements before the store), so an empty queue stays empty.
        self.closed.load(Ordering::SeqCst) && self.queue.is_empty()
    }

    /// The worker loop; returns true if the worker retired (`live` already counts it gone).
    ///
    /// `idle` says, at every moment, whether this worker holds an idle token and is counted
    /// as spinning, so that if the loop ever unwinds `worker_main` can give both back.
    fn run_worker(self: &Arc<Self>, slot: &Arc<Slot>, idle: &mut IdleState) -> bool {
        let IdleState {
            deposited,
            spinning,
        } = idle;
        // Counts the tasks this worker ran, to time one in `SAMPLE_EVERY`: its first (so that
        // a short run has run times too), then every `SAMPLE_EVERY`-th.
        let mut sample: u32 = SAMPLE_EVERY - 1;
        loop {
            #[cfg(test)]
            test::maybe_unwind(self);
            if let Some(job) = self.queue.pop() {
                if *spinning {
                    *spinning = false;
                    // SeqCst: sleep-protocol counter. The last spinner to find work wakes the
                    // next sleeper if more tasks wait (parallelism ramps up one at a time).
                    if self.spin_dec() == 1 && !self.queue.is_empty() {
                        fence(Ordering::SeqCst);
                        self.notify_one();
                    }
                }
                *deposited = false;
                slot.set(RUNNING);
                // One relaxed load decides the task's `Started` (and its `Finished`, unless
                // someone subscribes while it runs: see `before_publish`).
                let listened = self.events.is_active();
                sample = sample.wrapping_add(1);
                let mut hooks = WorkerHooks {
                    shared: self,
                    slot,
                    task: None,
                    listened,
                    timed: listened || sample % SAMPLE_EVERY == 0,
                    start: None,
                    deposited,
                    spinning,
                };
                if !job.run(&mut hooks) {
                    // Cancelled while queued: noticed now, never ran.
                    bump(&slot.counts.cancelled);
                    // Asked again, as in `before_publish` (a slow path): a subscriber that
                    // came meanwhile gets it.
                    if let (true, Some(id)) = (listened || self.events.is_active(), hooks.task) {
                        self.events
                            .send(Event::finished(id, None, TaskOutcome::Cancelled, None));
                    }
                }
                continue;
            }
            slot.set(IDLE);
            if !*spinning && self.spin_for_work() {
                continue;
            }
            self.become_idle(deposited, spinning);
            if self.closing_and_drained() {
                *spinning = false;
                self.spin_dec();
                return false;
            }
            let mut backoff = Backoff::new();
            let mut found = false;
            while !backoff.is_completed() {
                backoff.snooze();
                if !self.queue.is_empty() {
                    found = true;
                    break;
                }
            }
            if found {
                continue;
            }
            if self.try_retire() {
                // `try_retire` took our token back and our spinning count.
                *deposited = false;
                *spinning = false;
                return true;
            }
            // On return we are counted as spinning again (by our waker, or by ourselves).
            self.sleep(slot);
        }
    }

    /// A full pool's worker that ran out of work spins briefly *without* counting itself
    /// idle; true if a task arrived meanwhile.
    ///
    /// Counting costs three read-modify-writes on lines every worker writes (the spinning
    /// count up and down, an idle token) per idle moment, and when submits come about as
    /// fast as the workers take them — a burst of tiny tasks — that is once per task. A
    /// full pool (no thread can start) in which no worker is parked needs neither count:
    /// a submit starts no thread whatever `idle` says, and wakes nobody when nobody sleeps
    /// (`notify_one` reads `sleeping` first). So such a worker first spins for as long as
    /// [`Backoff`]'s spin phase, uncounted, and becomes idle (counted, as before) only if
    /// nothing came. It counts at once in a pool that can grow (a submit reads `idle` to
    /// decide whether to start a thread) and when another worker is parked: uncounted, it
    /// would let each submit make a wake-up system call for a task it takes itself (W2's
    /// p90 went from ~0.7 to ~10 µs that way). A worker that parks during the spin can
    /// cause one such needless wake-up; the sleep protocol's safety rests on the park
    /// path, not on this count.
    fn spin_for_work(&self) -> bool {
        // Relaxed: a hint (see below); the sleep protocol does not rest on it.
        if !blocking::may_spin() || self.can_grow() || self.sleeping.load(Ordering::Relaxed) > 0 {
            return false;
        }
        for step in 0..=Backoff::SPIN_STEPS {
            for _ in 0..(1u32 << step) {
                std::hint::spin_loop();
            }
            if !self.queue.is_empty() {
                return true;
            }
        }
        false
    }

    /// Adds this worker's idle token (once per idle period) and counts it as spinning (the
    /// token is only valid while the worker is counted: see `needs_thread`).
    fn become_idle(&self, deposited: &mut bool, spinning: &mut bool) {
        if !*spinning {
            *spinning = true;
            self.spin_inc();
        }
        if !*deposited {
            *deposited = true;
            self.give_idle_token();
        }
    }

    /// Parks until woken (see the module doc). Called while counted in `spinning`; returns
    /// counted in `spinning` again.
    fn sleep(&self, slot: &Arc<Slot>) {
        {
            let mut sleepers = lock(&self.sleepers);
            // Relaxed: only this thread and (under the lock) wakers touch the flag.
            slot.notified.store(false, Ordering::Relaxed);
            sleepers.push(slot.clone());
            self.spin_to_sleep();
        }
        // SeqCst fence: the worker side of the sleep protocol.
        fence(Ordering::SeqCst);
        if !self.queue.is_empty() || self.closing_and_drained() {
            let mut sleepers = lock(&self.sleepers);
            if let Some(i) = sleepers.iter().position(|s| Arc::ptr_eq(s, slot)) {
                sleepers.swap_remove(i);
                self.sleep_to_spin();
                return;
            }
            // A waker already took us (and counted us as spinning): take its notification.
        }
        // Acquire: pairs with the waker's Release store.
        while !slot.notified.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }

    /// Retires this (surplus) worker if the pool has more than `max_workers` unblocked
    /// threads. Called while counted in `spinning`; true if the thread must exit.
    fn try_retire(&self) -> bool {
        loop {
            let live = self.live.load(Ordering::SeqCst);
            if live <= self.thread_limit() {
                return false;
            }
            // Take back an idle token, so that no submit counts on this thread.
            if !self.take_idle_token() {
                return false;
            }
            if self
                .live
                .compare_exchange(live, live - 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                self.give_idle_token();
                continue;
            }
            self.spin_dec();
            // SeqCst fence: a submit that pushed before this fence, and read `live` before
            // our decrement (so started no thread), is seen here; stay for it.
            fence(Ordering::SeqCst);
            if !self.queue.is_empty() {
                self.live.fetch_add(1, Ordering::SeqCst);
                self.spin_inc();
                self.give_idle_token();
                return false;
            }
            // `live` is already decremented: tell shutdown waiters (see `thread_gone`).
            self.notify_exit_waiters();
            self.finish_events();
            return true;
        }
    }

    // ----- compensation ---------------------------------------------------------------

    /// Makes sure a queued task has a worker when one of ours blocks.
    fn compensate(self: &Arc<Self>) {
        // SeqCst fence: the caller counted itself in `blocked`; a submit either sees that
        // (and may start a thread) or pushed before this fence (and we see its task).
        fence(Ordering::SeqCst);
        if self.queue.is_empty() || self.spinning() > 0 {
            return;
        }
        if self.wake_one() {
            return;
        }
        if self.try_reserve_thread() {
            if let Err(e) = self.spawn_worker() {
                self.spawn_failed(e);
            }
        }
    }

    fn block(self: &Arc<Self>, slot: &Slot) {
        slot.set(BLOCKED);
        self.blocked.fetch_add(1, Ordering::SeqCst);
        self.compensate();
    }

    fn unblock(&self, slot: &Slot) {
        self.blocked.fetch_sub(1, Ordering::SeqCst);
        slot.set(RUNNING);
    }

    // ----- breaking, shutting down ----------------------------------------------------

    /// Sets `flag` and waits until no submit is in flight; false if it was already set.
    fn close(&self, flag: usize) -> bool {
        // SeqCst: see `submit`.
        let prev = self.state.fetch_or(flag, Ordering::SeqCst);
        let mut backoff = Backoff::new();
        // Acquire: pairs with the submits' Release decrements: their tasks are queued.
        while self.state.load(Ordering::Acquire) & !FLAGS != 0 {
            if backoff.is_completed() {
                thread::yield_now();
            } else {
                backoff.snooze();
            }
        }
        // Only now (see `closed`): every accepted task is queued; later submits are refused.
        self.closed.store(true, Ordering::SeqCst);
        prev & flag == 0
    }

    /// Breaks the pool: queued futures fail with `message` and `cause`, later submits are
    /// refused, workers exit once idle.
    pub(crate) fn break_pool(&self, message: &str, cause: TaskError) {
        cfutures_core::diag::report(
            cfutures_core::diag::Level::Error,
            format_args!("{message}: {cause}"),
        );
        let _ = self.broken.set(Broken::with_cause(message, cause));
        if self.close(BROKEN) {
            let broken = self.broken.get().expect("set above");
            self.events.emit(|| Event::broken(broken.to_string()));
            self.drain(
                |job| {
                    // Relaxed: a statistic.
                    self.drained_failed.fetch_add(1, Ordering::Relaxed);
                    job.fail(broken.clone());
                },
                TaskOutcome::Broken,
            );
        }
        self.wake_all();
        self.finish_events();
    }

    /// Empties the queue of a closed pool, ending each task with `end` (which completes its
    /// future: done-callbacks run here) after its `Finished` with `outcome` is sent.
    ///
    /// The `Finished` goes first, as a worker's does (before the outcome is visible), and
    /// `draining` counts this drain so that the stream's `Shutdown` cannot come between a
    /// pop and that `Finished` (a worker that sees the queue empty may exit meanwhile; it is
    /// then this thread's `finish_events`, after the drain, that ends the stream).
    fn drain(&self, mut end: impl FnMut(RawJob), outcome: TaskOutcome) {
        // SeqCst, before the first pop: a worker's `finish_events` that finds the queue
        // empty (a SeqCst load of the queue's head, after our SeqCst pop in the single total
        // order) then loads `draining` later in that order, so it sees this increment (or
        // the decrement below, when every `Finished` is already sent).
        self.draining.fetch_add(1, Ordering::SeqCst);
        while let Some(job) = self.queue.pop() {
            if self.events.is_active() {
                self.events
                    .send(Event::finished(job.id(), None, outcome, None));
            }
            end(job);
        }
        // SeqCst: a worker's `finish_events` that saw the increment above left the stream
        // open; it decremented `live` before loading `draining`, so our `finish_events`
        // (after this, in the same total order) sees `live` at 0 and ends the stream.
        self.draining.fetch_sub(1, Ordering::SeqCst);
    }

    /// Ends the event stream with `Shutdown` once the pool is closed, every worker has
    /// exited, and no drain is in flight (no event can follow then: no task is queued, none
    /// can be submitted, no thread runs one or still has a drained one to report). Called
    /// wherever one of those becomes true; the first call that sees them all closes the
    /// stream (closing is idempotent).
    fn finish_events(&self) {
        // SeqCst loads: see `drain`.
        if self.is_closed()
            && self.live.load(Ordering::SeqCst) == 0
            && self.queue.is_empty()
            && self.draining.load(Ordering::SeqCst) == 0
        {
            self.events.close_with(Some(Event::shutdown()));
        }
    }

    /// Python's `shutdown(wait, cancel_futures)`; see [`crate::ThreadPoolExecutor::shutdown`].
    pub(crate) fn shutdown(self: &Arc<Self>, wait: bool, cancel_futures: bool) {
        self.close(SHUTDOWN);
        if cancel_futures {
            self.drain(
                |job| {
                    // Relaxed: a statistic.
                    self.drained_cancelled.fetch_add(1, Ordering::Relaxed);
                    job.cancel();
                },
                TaskOutcome::Cancelled,
            );
        }
        self.wake_all();
        self.finish_events();
        if wait {
            self.wait_for_workers();
            self.finish_events();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & FLAGS != 0
    }

    /// Waits until every worker exited. Called from one of our workers, it cannot wait for
    /// its own thread: it waits until every *other* worker has exited or is itself waiting
    /// here, and counts as blocked meanwhile (so queued tasks get a thread).
    fn wait_for_workers(self: &Arc<Self>) {
        let inside = CURRENT_POOL.with(|c| c.get()) == Arc::as_ptr(self) as usize;
        if inside {
            self.inside_waiters.fetch_add(1, Ordering::SeqCst);
            self.notify_exit_waiters();
        }
        let ready = || {
            let target = if inside {
                self.inside_waiters.load(Ordering::SeqCst)
            } else {
                0
            };
            // From inside, the queue must be empty too: our own worker, still live,
            // would otherwise be counted as the one that runs it.
            self.live.load(Ordering::SeqCst) <= target && (!inside || self.queue.is_empty())
        };
        // Parks through core, so that our own blocking hook (if we are a worker of this or
        // another pool) sees it and compensates.
        let me = thread::current();
        blocking::block_until(
            None,
            ready,
            || {
                lock(&self.registry).exit_waiters.push(me.clone());
                !ready()
            },
            || {
                lock(&self.registry)
                    .exit_waiters
                    .retain(|t| t.id() != me.id());
            },
        );
        if inside {
            self.inside_waiters.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let handles = std::mem::take(&mut lock(&self.registry).handles);
        for h in handles {
            let _ = h.join();
        }
    }

    fn notify_exit_waiters(&self) {
        for t in &lock(&self.registry).exit_waiters {
            t.unpark();
        }
    }

    /// A worker's loop unwound (see `worker_main`): gives back its idle token and its
    /// spinning count, and makes sure queued work still has a worker — a spinning or woken
    /// one, or a replacement that takes over this thread's place in `live` (so that `live`
    /// never drops to zero while work is queued: a `shutdown(wait)` must not return before
    /// the queue is run) — else counts it gone (waking shutdown waiters).
    fn worker_lost(self: &Arc<Self>, idle: IdleState) {
        if idle.spinning {
            self.spin_dec();
        }
        if idle.deposited {
            self.take_idle_token();
        }
        // SeqCst fence: as in `compensate`, against a submit's push and fence.
        fence(Ordering::SeqCst);
        if !self.queue.is_empty() && self.spinning() == 0 && !self.wake_one() {
            if let Err(e) = self.spawn_worker() {
                // `spawn_worker` gave our place back (`thread_gone`).
                self.spawn_failed(e);
            }
            return;
        }
        self.thread_gone();
        // A submit that pushed before this fence and read `live` before our decrement
        // started no thread for its task: see it here (as `try_retire` does).
        fence(Ordering::SeqCst);
        if !self.queue.is_empty() {
            self.compensate();
        }
    }

    /// A thread (or a reserved place) is gone.
    fn thread_gone(&self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.notify_exit_waiters();
        self.finish_events();
    }

    // ----- introspection --------------------------------------------------------------

    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
    }

    pub(crate) fn live_threads(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub(crate) fn started_threads(&self) -> usize {
        // Relaxed: statistics.
        self.started.load(Ordering::Relaxed)
    }

    pub(crate) fn thread_handles(&self) -> usize {
        lock(&self.registry).handles.len()
    }

    pub(crate) fn queued_tasks(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn events(&self) -> cfutures_core::events::Events {
        self.events.subscribe()
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The snapshot of [`crate::ThreadPoolExecutor::stats`]: the workers' own counts (live
    /// ones from their slots, exited ones from `gone`, under the registry lock so that a
    /// worker that exits is counted once), the queue, the drained tasks, the run-time
    /// samples.
    pub(crate) fn stats(&self) -> Stats {
        let mut s = self.stats.snapshot();
        let (mut running, mut succeeded, mut failed, mut cancelled);
        {
            let r = lock(&self.registry);
            let g = &r.gone;
            (running, succeeded, failed, cancelled) = (0, g.succeeded, g.failed, g.cancelled);
            let mut own = |id: WorkerId, fin: u64, fail: u64| {
                if let Some(w) = s.workers.iter_mut().find(|w| w.id == id) {
                    w.finished = fin;
                    w.failed = fail;
                }
            };
            for &(id, fin, fail) in &g.workers {
                own(id, fin, fail);
            }
            for slot in &r.slots {
                let c = &slot.counts;
                // Acquire, ends before starts: pairs with `bump` (a task's end seen means
                // its start is seen).
                let ld = |a: &AtomicU64| a.load(Ordering::Acquire);
                let (ok, bad, can) = (ld(&c.succeeded), ld(&c.failed), ld(&c.cancelled));
                running += ld(&c.started).saturating_sub(ok + bad);
                succeeded += ok;
                failed += bad;
                cancelled += can;
                own(slot.id, ok + bad, bad);
            }
        }
        // Relaxed: statistics.
        let drained_failed = self.drained_failed.load(Ordering::Relaxed);
        let drained_cancelled = self.drained_cancelled.load(Ordering::Relaxed);
        let queued = self.queue.len() as u64;
        s.succeeded = succeeded;
        s.failed = failed + drained_failed;
        s.cancelled = cancelled + drained_cancelled;
        s.done = s.succeeded + s.failed + s.cancelled;
        s.running = running;
        s.queued = queued;
        // Every accepted task is queued, or was taken by a worker (it ran or runs, or was
        // found cancelled), or drained by a shutdown or a breaking pool.
        s.submitted =
            succeeded + failed + running + cancelled + drained_cancelled + drained_failed + queued;
        s.run_times = self.run_times.snapshot().run_times;
        s
    }

    pub(crate) fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &lock(&self.registry).slots {
            // Relaxed: statistics.
            match s.state.load(Ordering::Relaxed) {
                IDLE => c.idle += 1,
                RUNNING => c.running += 1,
                BLOCKED => {
                    c.running += 1;
                    c.blocked += 1
                }
                _ => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod test;

/// The blocking hook of one worker: counts it as blocked while it parks on a future.
struct Hook {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
}

impl BlockingHook for Hook {
    fn before_park(&self) {
        self.shared.block(&self.slot);
    }
    fn after_park(&self) {
        self.shared.unblock(&self.slot);
    }
}

/// What a worker does around each task it runs (see [`Promise::run_with`]): its counts, the
/// run time (every task while someone subscribes, else one in [`SAMPLE_EVERY`]), the
/// `Started` and `Finished` events, and becoming idle before the outcome is visible.
///
/// [`Promise::run_with`]: cfutures_core::Promise::run_with
pub(crate) struct WorkerHooks<'a> {
    shared: &'a Shared,
    slot: &'a Slot,
    /// The task's future (set by the job as it runs).
    pub(crate) task: Option<FutureId>,
    /// Someone listened when the worker took the task: it reports `Started` and `Finished`.
    listened: bool,
    timed: bool,
    start: Option<Instant>,
    deposited: &'a mut bool,
    spinning: &'a mut bool,
}

/// Runs `f` with the hooks of a worker of a pool of its own (for `job`'s unit tests).
#[cfg(test)]
pub(crate) fn test_hooks<R>(f: impl FnOnce(&mut WorkerHooks<'_>) -> R) -> R {
    let shared = Shared::new(1, "test".into(), None);
    let slot = Slot {
        state: AtomicU8::new(RUNNING),
        notified: AtomicBool::new(false),
        thread: thread::current(),
        id: 0,
        counts: CachePadded::new(TaskCounts::default()),
    };
    let (mut deposited, mut spinning) = (false, false);
    f(&mut WorkerHooks {
        shared: &shared,
        slot: &slot,
        task: None,
        listened: false,
        timed: false,
        start: None,
        deposited: &mut deposited,
        spinning: &mut spinning,
    })
}

impl RunHooks for WorkerHooks<'_> {
    #[inline]
    fn started(&mut self) {
        bump(&self.slot.counts.started);
        if let (true, Some(id)) = (self.listened, self.task) {
            self.shared
                .events
                .send(Event::started(id, self.slot.id, None));
        }
        if self.timed {
            self.start = Some(Instant::now());
        }
    }

    #[inline]
    fn before_publish(&mut self, failure: Option<&TaskError>) {
        let run_time = self.start.map(|t| t.elapsed());
        let outcome = match failure {
            None => {
                bump(&self.slot.counts.succeeded);
                TaskOutcome::Ok
            }
            Some(e) => {
                bump(&self.slot.counts.failed);
                TaskOutcome::of_error(e)
            }
        };
        if run_time.is_some() {
            self.shared
                .run_times
                .finished(None, outcome, true, run_time);
        }
        // Asked again if nobody listened when the task started (one more relaxed load, only
        // then): a subscriber that came while the task ran gets its `Finished`, as the bus
        // promises for every action after `subscribe()` returned (the `Started` came before).
        if self.listened || self.shared.events.is_active() {
            if let Some(id) = self.task {
                self.shared
                    .events
                    .send(Event::finished(id, Some(self.slot.id), outcome, run_time));
            }
        }
        // Become idle *before* the outcome is visible: a caller that submits again as soon
        // as it has the result reuses this thread (Python's `test_idle_thread_reuse`,
        // deterministically). Only a pool that can grow looks at who is idle (see
        // `needs_thread`): a full one skips it.
        let shared = self.shared;
        if shared.queue.is_empty() && shared.can_grow() {
            shared.become_idle(self.deposited, self.spinning);
        }
    }
}

/// What a worker holds of the idle bookkeeping; see [`Shared::run_worker`].
#[derive(Default)]
struct IdleState {
    /// It added an idle token in its current idle period.
    deposited: bool,
    /// It is counted in `spinning`.
    spinning: bool,
}

fn worker_main(shared: Arc<Shared>, id: WorkerId) {
    let slot = Arc::new(Slot {
        state: AtomicU8::new(STARTING),
        notified: AtomicBool::new(false),
        thread: thread::current(),
        id,
        counts: CachePadded::new(TaskCounts::default()),
    });
    let counters: Arc<WorkerCounters> = shared.stats.worker_started(id, None);
    lock(&shared.registry).slots.push(slot.clone());
    shared.events.emit(|| Event::worker_started(id, None));
    CURRENT_POOL.with(|c| c.set(Arc::as_ptr(&shared) as usize));
    blocking::set_thread_hook(Some(Arc::new(Hook {
        shared: shared.clone(),
        slot: slot.clone(),
    })));

    // Nothing a task, its result, a callback, a waiter or an initializer does can unwind
    // out of the loop (each is caught where it runs, payloads are dropped without
    // unwinding). This is the backstop for whatever still would: the worker gives back
    // what it held, exits cleanly, and is replaced if work is waiting, so no count is left
    // wrong and no task or `shutdown` waits for a thread that is gone.
    let mut idle = IdleState::default();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let init_ok = match &shared.initializer {
            None => true,
            Some(init) => match panic::catch_unwind(AssertUnwindSafe(|| init())) {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    shared.break_pool(BROKEN_MESSAGE, e);
                    false
                }
                Err(payload) => {
                    shared.break_pool(BROKEN_MESSAGE, TaskError::from_panic(payload));
                    false
                }
            },
        };
        init_ok && shared.run_worker(&slot, &mut idle)
    }));

    blocking::set_thread_hook(None);
    CURRENT_POOL.with(|c| c.set(0));
    {
        // The slot's counts move to `gone` in the same critical section that removes it,
        // so a snapshot counts them exactly once.
        let mut r = lock(&shared.registry);
        r.slots.retain(|s| !Arc::ptr_eq(s, &slot));
        let c = &slot.counts;
        // Relaxed: written by this thread only.
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = &mut r.gone;
        g.succeeded += ld(&c.succeeded);
        g.failed += ld(&c.failed);
        g.cancelled += ld(&c.cancelled);
        if g.workers.len() == GONE_KEPT {
            g.workers.pop_front();
        }
        g.workers
            .push_back((id, ld(&c.succeeded) + ld(&c.failed), ld(&c.failed)));
    }
    shared.stats.worker_stopped(&counters, outcome.is_err());
    match outcome {
        Ok(true) => {} // retired: `live` already counts it gone
        Ok(false) => shared.thread_gone(),
        Err(payload) => {
            // `from_panic` reads the message and drops the payload without unwinding.
            let cause = TaskError::from_panic(payload);
            cfutures_core::diag::report(
                cfutures_core::diag::Level::Error,
                format_args!(
                    "a thread-pool worker unwound ({}); replacing it",
                    cause.panic_message().unwrap_or_default()
                ),
            );
            shared
                .events
                .emit(|| Event::worker_died(id, None, None, None));
            shared.worker_lost(idle);
        }
    }
    shared.reap();
}
