//! The pool's shared state: configuration, the queue of jobs not yet sent, the workers.
//!
//! # Who touches what
//!
//! * `Shared::state` (one mutex): the queue of jobs not yet sent, the jobs waiting for a
//!   retry's backoff, and per worker the command pipe's write end and the jobs in its window
//!   (written, or waiting to be written, in order). User threads take it to submit (and may
//!   write a frame straight into an idle worker's pipe, never blocking: the pipes are
//!   non-blocking, and what does not fit waits in its job until `POLLOUT`); the I/O thread
//!   takes it to account for results and deaths, and to refill windows. Nothing blocks
//!   under it: not a pipe, not a report (reports are noted under it and emitted after).
//! * The I/O thread alone owns the result and output pipes, their input buffers, and the
//!   child processes (it spawns and reaps them all, so that `PR_SET_PDEATHSIG`, which follows
//!   the spawning *thread*, fires only when the pool is gone).
//! * Futures are completed, and user callbacks run, outside the lock.
//! * Events (`pool.events()`) are sent where their change is made, under the lock (a send
//!   never blocks), except each task's `Finished`, which the I/O thread sends just before it
//!   completes the future; counts (`pool.stats()`) are relaxed atomics (see [`Obs`]).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cfutures_core::diag::{report, Level};
use cfutures_core::events::{Event, EventBus, StatsRecorder, TaskOutcome};
use cfutures_core::{Broken, FutureId, TaskError};

use crate::executor::WorkerDeathPolicy;
use crate::retry::RetryPolicy;
use crate::sys;
use crate::window::{Job, Kill, Worker};
use cfutures_remote::job::{Outcome, Slot};
use rustix::process::Signal;

pub(crate) struct Config {
    pub(crate) max_workers: usize,
    /// The initializer's command frame, sent first to every worker.
    pub(crate) init: Option<Vec<u8>>,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) policy: WorkerDeathPolicy,
    pub(crate) time_limit: Option<Duration>,
    /// The retry policy of tasks submitted without one of their own.
    pub(crate) retry: Option<RetryPolicy>,
    /// `capture_output`: how many bytes of each task's output to keep (`None`: no capture).
    pub(crate) capture: Option<usize>,
    pub(crate) stdout: Option<OwnedFd>,
    /// Variables set in the workers' environment (over the parent's).
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) exe: OsString,
    pub(crate) argv0: OsString,
    /// The identity of this build, which workers check in the greeting.
    pub(crate) build: Vec<u8>,
    /// What the greeting tells workers besides.
    pub(crate) options: cfutures_remote::handshake::Options,
    /// The argument segments not in use (large payloads; see `crate::segments`).
    pub(crate) segments: std::sync::Arc<crate::segments::ArgSegments>,
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Events and statistics (also in `State::obs`, for code that has only the state).
    pub(crate) obs: std::sync::Arc<Obs>,
    pub(crate) wake_w: OwnedFd,
    pub(crate) wake_pending: AtomicBool,
    pub(crate) config: Config,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock except on bugs; the state stays consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the I/O thread (at most one byte in flight).
    pub(crate) fn wake(&self) {
        // Relaxed would do for the flag alone; AcqRel orders it with the state the waker
        // changed under the lock (released already), and the I/O thread's reset.
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = sys::write(self.wake_w.as_fd(), &[1]);
        }
    }
}

pub(crate) struct State {
    pub(crate) obs: std::sync::Arc<Obs>,
    pub(crate) queue: VecDeque<Job>,
    pub(crate) workers: Vec<Worker>,
    pub(crate) next_id: u64,
    pub(crate) shutdown: bool,
    pub(crate) broken: Option<Broken>,
    /// Futures `cancel` asked to stop that were at the head of a window (the I/O thread kills).
    pub(crate) cancel_heads: Vec<FutureId>,
    /// `terminate_workers` / `kill_workers` ran: no worker is started any more.
    pub(crate) forced: bool,
    /// Reports made under the lock, emitted once it is released (a report may block on a
    /// full stderr: never with the lock held, which submitters need).
    pub(crate) reports: Vec<(Level, String)>,
    /// Testing hook: the I/O thread panics with this message at its next turn.
    pub(crate) inject_panic: Option<String>,
    /// Tasks waiting for their retry's backoff (see `crate::retry`); each goes to the front
    /// of the queue once its time has come.
    pub(crate) delayed: Vec<Job>,
}

/// Completions gathered under the lock, run after it is released (`Io::complete`), each
/// with what its `Finished` event and its counts need.
#[derive(Default)]
pub(crate) struct Done(pub(crate) Vec<(Box<dyn Slot>, Outcome, Fin)>);

impl Done {
    /// A job ends with `outcome`; it ran on the worker it started on, if it started.
    pub(crate) fn job(&mut self, job: Job, outcome: Outcome) {
        let fin = Fin {
            worker: job.on,
            run: None,
            started: job.on.is_some(),
        };
        self.0.push((job.slot, outcome, fin));
    }

    /// A slot ends with `outcome`, as `fin` says.
    pub(crate) fn with(&mut self, slot: Box<dyn Slot>, outcome: Outcome, fin: Fin) {
        self.0.push((slot, outcome, fin));
    }
}

/// What a task's `Finished` event and its counts need besides its outcome.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fin {
    /// The worker (key) it ran on last.
    pub(crate) worker: Option<u64>,
    /// How long it ran, as its worker measured it.
    pub(crate) run: Option<Duration>,
    /// It had started (a `Started` with no `Finished` or requeue since).
    pub(crate) started: bool,
}

/// The pool's events and statistics (see `cfutures_core::events`).
///
/// Events are sent with the pool's lock held, where the state change they report is made:
/// sending never blocks (a `try_send` into each subscriber's bounded buffer), and it keeps
/// the order subscribers see the order of the pool's changes (two threads emitting after
/// the lock is released could deliver a task's `Finished` before its `Submitted`). The
/// `Finished` events alone are sent by the I/O thread just before it completes their
/// futures, outside the lock: that thread is the only one to complete futures of tasks that
/// started, so they still follow every earlier event of their task. With nobody
/// subscribed, each site costs one relaxed load (`EventBus::is_active`).
#[derive(Default)]
pub(crate) struct Obs {
    pub(crate) bus: EventBus,
    pub(crate) stats: StatsRecorder,
}

impl Obs {
    /// A task ended for good: counts it, and tells subscribers (the outcome is read from
    /// `outcome`, an error frame decoded only when someone listens).
    pub(crate) fn finished(&self, slot: &dyn Slot, outcome: &Outcome, payloads: &[u8], fin: Fin) {
        let active = self.bus.is_active();
        let kind = outcome_kind(outcome, payloads, active);
        self.stats.finished(None, kind, fin.started, fin.run);
        if active {
            self.bus
                .send(Event::finished(slot.future_id(), fin.worker, kind, fin.run));
        }
    }

    /// A job that had not started ends (cancelled, or the pool broke) where no `Done`
    /// carries it.
    pub(crate) fn dropped(&self, job: &Job, kind: TaskOutcome) {
        self.stats.finished(None, kind, job.on.is_some(), None);
        self.bus
            .emit(|| Event::finished(job.slot.future_id(), job.on, kind, None));
    }
}

/// What `outcome` stands for. An error frame is decoded only with `exact` (to tell a panic
/// from an error); without, it counts as an error (the counts do not tell them apart).
pub(crate) fn outcome_kind(outcome: &Outcome, payloads: &[u8], exact: bool) -> TaskOutcome {
    use cfutures_remote::job::ReceivedPayload;
    use cfutures_remote::wire;
    match outcome {
        Outcome::Frame(true, _) | Outcome::Received(true, _) => TaskOutcome::Ok,
        Outcome::Frame(false, _) | Outcome::Received(false, _) if !exact => TaskOutcome::Err,
        Outcome::Frame(false, at) => payloads
            .get(at.clone())
            .and_then(|p| wire::decode::<TaskError>(p).ok())
            .map_or(TaskOutcome::Err, |e| TaskOutcome::of_error(&e)),
        Outcome::Received(false, rec) => match &rec.payload {
            ReceivedPayload::InBand(at) => payloads
                .get(at.clone())
                .and_then(|p| wire::decode::<TaskError>(p).ok()),
            ReceivedPayload::Shared(sp) => wire::decode::<TaskError>(&sp.to_vec()).ok(),
            _ => None,
        }
        .map_or(TaskOutcome::Err, |e| TaskOutcome::of_error(&e)),
        Outcome::Failed(e) => TaskOutcome::of_error(e),
        Outcome::Broken(_) => TaskOutcome::Broken,
        Outcome::Cancelled => TaskOutcome::Cancelled,
        _ => TaskOutcome::Err,
    }
}

impl State {
    /// Sends queued jobs to workers with room; cancelled ones are set aside (to be dropped
    /// outside the lock, which notices their cancellation). With `idle_only`, only to
    /// workers running nothing.
    pub(crate) fn dispatch(&mut self, cfg: &Config, discard: &mut Vec<Job>, idle_only: bool) {
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
                    self.obs.dropped(&job, TaskOutcome::Cancelled);
                    discard.push(job);
                    continue;
                }
                job.started = true;
            }
            w.send(job);
        }
        for w in &mut self.workers {
            if w.has_output() {
                w.flush();
            }
            if cfg.max_tasks_per_child.is_some_and(|m| w.dispatched >= m)
                && w.window.is_empty()
                && !w.has_output()
            {
                // Retire, once it has run every task it took (a task taken back from its
                // window frees the place for another: it counts only tasks that ran): it
                // reads the exit frame and exits.
                w.close();
            }
        }
    }

    /// Notes a report, to be emitted once the lock is released ([`emit`]).
    pub(crate) fn note(&mut self, level: Level, message: String) {
        self.reports.push((level, message));
    }

    /// Worker processes that exist (until they are reaped: one that is retiring or being
    /// killed still counts, so that its replacement never takes the pool past
    /// `max_workers` processes).
    pub(crate) fn live_workers(&self) -> usize {
        self.workers.len()
    }

    /// Breaks the pool: every queued and running job fails with its own `Broken`, every
    /// worker is killed.
    pub(crate) fn break_pool(&mut self, b: Broken, done: &mut Done) {
        if self.broken.is_some() {
            return;
        }
        self.note(Level::Error, b.to_string());
        self.obs.bus.emit(|| Event::broken(b.to_string()));
        self.broken = Some(b.clone());
        self.shutdown = true;
        // Python: every pending future, queued or running, fails with its own error.
        for job in self.queue.drain(..) {
            if job.started || job.slot.start() {
                done.job(job, Outcome::Broken(b.clone()));
            } else {
                self.obs.dropped(&job, TaskOutcome::Cancelled);
            }
        }
        for job in self.delayed.drain(..) {
            done.job(job, Outcome::Broken(b.clone()));
        }
        for w in &mut self.workers {
            for job in w.window.drain(..) {
                done.job(job, Outcome::Broken(b.clone()));
            }
            w.kill.get_or_insert(Kill::Forced);
            w.abandon();
            w.child.signal(Signal::KILL);
        }
    }
}

/// Emits reports noted under the lock ([`State::note`]); call it with the lock released.
pub(crate) fn emit(reports: Vec<(Level, String)>) {
    for (level, message) in reports {
        report(level, format_args!("{message}"));
    }
}
