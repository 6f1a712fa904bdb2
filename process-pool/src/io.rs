//! The I/O thread: reads results, sees deaths, spawns and reaps workers, enforces time limits,
//! takes tasks back from stalled workers, and completes futures outside the lock.
//!
//! # Liveness: how each fault is seen, and how fast
//!
//! * **A worker dies** (any signal, `exit`, `abort`, the OOM killer): its *pidfd* becomes
//!   readable (Linux ≥ 5.3) — at once, whoever else holds the worker's result pipe (a
//!   process the task forked). Without pidfds, end of file on the result pipe says it, and a
//!   timer checks every [`EXIT_CHECK`] for deaths the pipe hides. What the worker wrote
//!   before dying is read first; then the task it had claimed fails (`WorkerDied`), and the
//!   tasks it had not claimed go back to the queue.
//! * **A worker writes what it should not** on its result pipe: each result header is
//!   checked as soon as its bytes are in (kind, id = the head's, length ≤
//!   [`MAX_RESULT_FRAME`]); on a mismatch the worker is killed and its claimed task fails with
//!   a codec error that says the stream was out of sync.
//! * **A worker closes its result pipe but lives on**: killed after [`EOF_GRACE`].
//! * **A worker is stopped** (`SIGSTOP`), **or its head runs long**: after [`RECLAIM_AFTER`],
//!   the tasks it has not claimed go back to the queue (see `crate::claims`).
//! * **A worker cannot be started** (`EAGAIN`, `EMFILE`, …), **or dies before greeting**:
//!   retried with backoff (5 ms doubling to 1 s); the pool serves with the workers it has. It
//!   breaks only after [`MAX_START_FAILURES`] failed starts in a row before any worker ever
//!   greeted, or when no worker at all has been running for [`START_GIVE_UP`] while every
//!   start failed, or at once for errors that cannot go away (no such executable, no
//!   permission, a refusal: another build).
//! * **This thread panics**: the pool breaks, every pending future fails `Broken` with the
//!   panic's message, the workers are killed, later submits are refused.

use std::collections::hash_map::RandomState;
use std::ffi::CString;
use std::hash::BuildHasher;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_core::diag::Level;
use cfutures_core::events::{Event, TaskOutcome};
use cfutures_core::{panic_message, Broken, TaskError, TaskOutput, WorkerDeath, WorkerExit};
use cfutures_remote::handshake;
use cfutures_remote::job::{Outcome, Received, ReceivedPayload, SharedPayload};
use cfutures_remote::wire::{self, Ext, Placement, ResHeader};
use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::claims::ClaimPage;
use crate::executor::WorkerDeathPolicy;
use crate::output::{self, Capture};
use crate::retry::{self, Verdict};
use crate::segments::{self, FdQueue, MapCache, Release};
use crate::state::{Config, Done, Fin, Shared, State};
use crate::sys;
use crate::window::{Job, Kill, Worker, RECLAIM_AFTER};
use crate::worker;

/// The largest result frame accepted (its payload in the frame). A header that claims more is
/// out of sync; a worker never sends one (it replaces a larger result with an error).
pub(crate) const MAX_RESULT_FRAME: usize = 1 << 30;
/// The largest result payload accepted in a shared-memory segment (checked against the
/// segment's size too): a limit on what a header may claim, not on memory in use.
pub(crate) const MAX_RESULT_SEGMENT: u64 = 1 << 36;
/// Failed starts in a row, before any worker ever greeted, that break the pool.
pub(crate) const MAX_START_FAILURES: u32 = 10;
/// How long every start may fail, with no worker running, before the pool breaks.
pub(crate) const START_GIVE_UP: Duration = Duration::from_secs(30);
/// How long a worker may live on after closing its result pipe.
pub(crate) const EOF_GRACE: Duration = Duration::from_millis(200);
/// Why the tasks a forced stop caught fail.
const FORCED: &str = "the pool's worker processes were stopped (terminate_workers / \
                      kill_workers) while the task ran or waited to run again";
/// The longest the I/O thread sleeps while workers live (see `next_deadline`).
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// At most one warning about failed starts in this long (the others are debug reports).
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How often workers are checked for an exit where no pidfd tells it.
pub(crate) const EXIT_CHECK: Duration = Duration::from_millis(100);
/// How long an idle worker has to exit after shutdown sent it the exit frame (a stopped one
/// would not): then it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// One worker process as the I/O thread sees it (the rest is its [`Worker`], under the
/// lock).
pub(crate) struct Proc {
    key: u64,
    pid: i32,
    /// The result pipe's read end (non-blocking).
    res: OwnedFd,
    /// The process (its pidfd, polled for its death, is in it).
    child: Arc<sys::Child>,
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    /// End of file on the result pipe.
    eof: bool,
    /// When end of file came while the process still ran.
    eof_at: Option<Instant>,
    /// The stream is out of sync: what it carries is dropped.
    discard: bool,
    /// The exit status, once reaped.
    exit: Option<WorkerExit>,
    /// The command pipe, while its worker has output waiting (for `POLLOUT`).
    out: Option<Arc<OwnedFd>>,
    /// When shutdown told it to exit.
    closed_at: Option<Instant>,
    /// It did not exit after shutdown's exit frame, and was killed.
    shutdown_kill: bool,
    /// The control socket (shared with its `Worker`), and the descriptors received on it.
    ctl: Arc<OwnedFd>,
    fds: FdQueue,
    /// Its result segments, mapped here.
    maps: MapCache,
    /// Its output pipe, when output is captured.
    capture: Option<Capture>,
}

/// Why a start failed.
enum StartFailure {
    Spawn(io::Error),
    /// It died before it was ready: before greeting, or (`in_init`) in its initializer.
    Died {
        pid: u32,
        exit: WorkerExit,
        in_init: bool,
    },
}

/// Failed starts, for the backoff and the rules that break the pool.
#[derive(Default)]
struct Starts {
    failures: u32,
    /// A worker became ready (greeted, and ran its initializer) at least once.
    ever_ready: bool,
    retry_at: Option<Instant>,
    failing_since: Option<Instant>,
    /// When a failed start was last reported as a warning (the rest are details).
    warned_at: Option<Instant>,
}

impl Starts {
    /// A worker is ready: the streak of failed starts ends.
    fn ready(&mut self) {
        *self = Starts {
            ever_ready: true,
            warned_at: self.warned_at,
            ..Starts::default()
        };
    }
}

pub(crate) struct Io {
    shared: Arc<Shared>,
    wake_r: OwnedFd,
    procs: Vec<Proc>,
    next_key: u64,
    /// The payloads of the results taken in this round (see [`Outcome::Frame`]).
    payloads: Vec<u8>,
    /// Completions gathered under the lock, to run after it is released.
    done: Done,
    starts: Starts,
    next_exit_check: Instant,
    random: RandomState,
    /// The number this pool's output markers are made of (see `crate::output`).
    nonce: u64,
    /// Results to settle outside the lock: output to attach, or an error for the retry
    /// policy's predicate to judge.
    after: Vec<After>,
    /// Captured output that belongs to no failure, written once the lock is released.
    forward: Vec<u8>,
}

/// A result taken under the lock, settled outside it (see [`Io::settle`]).
struct After {
    job: Job,
    /// Its worker and run time, for its `Finished`.
    fin: Fin,
    /// The result frame: a value (`true`) or an error.
    ok: bool,
    outcome: Outcome,
    output: Option<TaskOutput>,
}

impl Io {
    pub(crate) fn new(shared: Arc<Shared>, wake_r: OwnedFd) -> Self {
        Io {
            shared,
            wake_r,
            procs: Vec::new(),
            next_key: 1,
            payloads: Vec::new(),
            done: Done::default(),
            starts: Starts::default(),
            next_exit_check: Instant::now(),
            random: RandomState::new(),
            nonce: RandomState::new().hash_one(0x6f75_7470_7574_u64),
            after: Vec::new(),
            forward: Vec::new(),
        }
    }

    /// The thread's body. If anything in it panics, the pool breaks instead of hanging.
    pub(crate) fn run(mut self) {
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| self.serve())) {
            let message = panic_message(&*p);
            wire::drop_payload(p);
            self.die(&message);
        }
    }

    fn serve(&mut self) {
        let mut discard: Vec<Job> = Vec::new();
        loop {
            // 1. Account for what was read; deaths; spawns; dispatch; what to wait for.
            let shared = self.shared.clone();
            let cfg = &shared.config;
            let mut st = shared.lock();
            if let Some(m) = st.inject_panic.take() {
                drop(st);
                panic!("{m}");
            }
            let now = Instant::now();
            self.take_results(&mut st, cfg);
            self.handle_deaths(&mut st, cfg, now);
            retry::promote(&mut st, now, &mut self.done);
            if st.forced {
                // Nothing more starts: what waits in the queue (taken back from a window,
                // or requeued after a death: started already) fails; the rest was
                // cancelled by the shutdown.
                let b = Broken::new(FORCED);
                let obs = st.obs.clone();
                for job in st.queue.drain(..) {
                    if job.started || job.slot.start() {
                        self.done.job(job, Outcome::Broken(b.clone()));
                    } else {
                        obs.dropped(&job, TaskOutcome::Cancelled);
                    }
                }
            }
            self.apply_requests(&mut st);
            self.reclaim(&mut st, cfg, now);
            self.spawn_needed(&mut st, cfg, now);
            st.dispatch(cfg, &mut discard, false);
            let exit = self.prepare_poll(&mut st, now);
            let mut timeout = self.next_deadline(&mut st, now);
            if self
                .procs
                .iter()
                .any(|p| p.capture.as_ref().is_some_and(|c| c.behind()))
            {
                // An output pipe was not read to its end (a round's budget): read on, at once.
                timeout = Some(Duration::ZERO);
            }
            let reports = std::mem::take(&mut st.reports);
            drop(st);
            crate::state::emit(reports);
            // 2. Complete futures (user callbacks run here) outside the lock.
            self.settle(cfg);
            self.complete();
            discard.clear();
            if exit {
                // Every task is done, every worker reaped: the last event; streams end.
                self.shared.obs.bus.close_with(Some(Event::shutdown()));
                return;
            }
            // 3. Wait for something to happen.
            self.wait(timeout);
        }
    }

    /// Completes the gathered futures. A panic there (a callback's, past core's own guard)
    /// is caught: it must not take this thread down.
    fn complete(&mut self) {
        let payloads = &self.payloads;
        let obs = &self.shared.obs;
        for (slot, outcome, fin) in self.done.0.drain(..) {
            // Its `Finished` (and its counts) before its future completes: whoever waits on
            // the future and then reads its events finds it.
            obs.finished(&*slot, &outcome, payloads, fin);
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| slot.finish(outcome, payloads)))
            {
                wire::drop_payload(p);
            }
        }
        self.payloads.clear();
        if self.payloads.capacity() > 1 << 20 {
            self.payloads = Vec::new();
        }
    }

    /// Settles the results that need more than their frame, outside the lock: attaches
    /// captured output to failures (decoding the error), asks the retry policy's predicate
    /// about errors (and requeues those it retries), and writes the output that belongs to
    /// no failure where uncaptured output goes.
    fn settle(&mut self, cfg: &Config) {
        if !self.after.is_empty() {
            let mut again: Vec<(Job, Verdict, Option<TaskOutput>)> = Vec::new();
            let now = Instant::now();
            for a in std::mem::take(&mut self.after) {
                let After {
                    mut job,
                    fin,
                    ok,
                    outcome,
                    output,
                } = a;
                if ok {
                    if let Some(o) = &output {
                        self.forward.extend_from_slice(o.bytes());
                    }
                    self.done.with(job.slot, outcome, fin);
                    continue;
                }
                let e = match &outcome {
                    Outcome::Frame(_, at) => wire::decode::<TaskError>(&self.payloads[at.clone()]),
                    Outcome::Received(_, rec) => match &rec.payload {
                        ReceivedPayload::InBand(at) => {
                            wire::decode::<TaskError>(&self.payloads[at.clone()])
                        }
                        ReceivedPayload::Shared(sp) => wire::decode::<TaskError>(&sp.to_vec()),
                        _ => Err(wire::codec("an error frame of an unknown form")),
                    },
                    _ => Err(wire::codec("an error frame of an unknown form")),
                }
                .unwrap_or_else(|e| e);
                match retry::on_error(&mut job, &e, now) {
                    Verdict::Fail => {
                        let e = match output {
                            Some(o) => e.with_output(o),
                            None => e,
                        };
                        self.done.with(job.slot, Outcome::Failed(e), fin);
                    }
                    v => again.push((job, v, output)),
                }
            }
            if !again.is_empty() {
                let shared = self.shared.clone();
                let mut st = shared.lock();
                for (job, v, output) in again {
                    if let Some(b) = &st.broken {
                        self.done.job(job, Outcome::Broken(b.clone()));
                    } else {
                        retry::apply(&mut st, job, v, output, &mut self.forward, &mut self.done);
                    }
                }
                drop(st);
                // Its backoff needs this thread's timer.
                self.shared.wake();
            }
        }
        output::forward(cfg.stdout.as_ref().map(|f| f.as_fd()), &mut self.forward);
    }

    /// After a panic: the pool breaks with the panic's message; every future still pending
    /// fails with it; the workers are killed and reaped.
    fn die(&mut self, message: &str) {
        let b = Broken::new(format!(
            "the process pool's I/O thread panicked ({message}); the pool is not usable \
             anymore"
        ));
        let mut st = self.shared.lock();
        st.inject_panic = None;
        // Completions gathered before the panic: their outcomes may refer to a state the
        // panic left half-done, so they fail like the rest.
        let mut done = Done(
            std::mem::take(&mut self.done.0)
                .into_iter()
                .map(|(slot, _, fin)| (slot, Outcome::Broken(b.clone()), fin))
                .chain(
                    std::mem::take(&mut self.after)
                        .into_iter()
                        .map(|a| (a.job.slot, Outcome::Broken(b.clone()), a.fin)),
                )
                .collect(),
        );
        st.broken = None;
        st.break_pool(b.clone(), &mut done);
        st.broken = Some(b);
        st.workers.clear();
        let reports = std::mem::take(&mut st.reports);
        drop(st);
        crate::state::emit(reports);
        let obs = self.shared.obs.clone();
        for (slot, outcome, fin) in done.0 {
            obs.finished(&*slot, &outcome, &[], fin);
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| slot.finish(outcome, &[]))) {
                wire::drop_payload(p);
            }
        }
        // Every worker is a proc of this thread (spawned here); those not reaped yet are
        // killed and reaped (SIGKILL takes effect within microseconds, unless a process is
        // stuck in the kernel: then it stays a zombie rather than hang this thread).
        let mut left: Vec<i32> = Vec::new();
        for p in &self.procs {
            if p.exit.is_none() {
                p.child.signal(Signal::KILL);
                left.push(p.pid);
            }
        }
        let t0 = Instant::now();
        while !left.is_empty() && t0.elapsed() < Duration::from_secs(2) {
            left.retain(|&pid| sys::try_wait(pid).is_none());
            std::thread::sleep(Duration::from_millis(1));
        }
        self.procs.clear();
        obs.bus.close_with(Some(Event::shutdown()));
    }

    /// Finds the worker of `key`.
    fn worker(st: &mut State, key: u64) -> Option<&mut Worker> {
        st.workers.iter_mut().find(|w| w.key == key)
    }

    /// Turns complete result frames into completions, checking each header as soon as it is
    /// in.
    fn take_results(&mut self, st: &mut State, cfg: &Config) {
        for i in 0..self.procs.len() {
            loop {
                let p = &mut self.procs[i];
                if p.discard {
                    break;
                }
                let h = match ResHeader::parse(&p.buf[p.lo..p.hi]) {
                    None => break,
                    Some(Ok(h)) => h,
                    Some(Err(why)) => {
                        Self::out_of_sync(st, p, why);
                        break;
                    }
                };
                let key = p.key;
                let Some(w) = Self::worker(st, key) else {
                    break;
                };
                if let Err(why) = check_header(&h, w) {
                    Self::out_of_sync(st, &mut self.procs[i], why);
                    break;
                }
                let p = &mut self.procs[i];
                if p.hi - p.lo < h.len {
                    break; // the rest of the frame is on its way
                }
                let ends_task = matches!(
                    h.kind,
                    wire::RES_OK | wire::RES_ERR | wire::RES_INIT_OK | wire::RES_INIT_ERR
                );
                if ends_task && p.capture.as_ref().is_some_and(|c| !c.ready_for(h.id)) {
                    break; // its output is not all in yet (next round)
                }
                let payload = p.lo + h.payload_start()..p.lo + h.len;
                // What came beside the frame (out-of-line payload, shared data), taken
                // before the frame is consumed: a frame whose descriptors did not come is
                // out of sync.
                let beside = match &h.ext {
                    None => None,
                    Some(ext) => match take_beside(p, ext) {
                        Ok(b) => Some(b),
                        Err(why) => {
                            Self::out_of_sync(st, &mut self.procs[i], why);
                            break;
                        }
                    },
                };
                let p = &mut self.procs[i];
                p.lo += h.len;
                let w = Self::worker(st, key).expect("found above");
                match h.kind {
                    wire::RES_HELLO => match handshake::decode_hello(&p.buf[payload]) {
                        Ok(Ok(pid)) if pid == w.pid as u32 => {
                            w.hello = true;
                            w.init_done = cfg.init.is_none();
                            // The head's time limit counts from when it can start.
                            w.head_since = Instant::now();
                            if w.init_done {
                                self.starts.ready();
                            }
                        }
                        Ok(Err(why)) => {
                            let b = Broken::new(format!(
                                "a worker process refused to start: {why}; the process pool \
                                 is not usable anymore"
                            ));
                            st.break_pool(b, &mut self.done);
                            return;
                        }
                        _ => {
                            let why = "its greeting does not name it".to_owned();
                            Self::out_of_sync(st, &mut self.procs[i], why);
                            break;
                        }
                    },
                    wire::RES_INIT_OK => {
                        w.init_done = true;
                        w.head_since = Instant::now();
                        // A start is complete when the worker is ready, not when it greets:
                        // one that dies in its initializer has not started.
                        self.starts.ready();
                        if let Some(c) = &mut p.capture {
                            let o = c.take(0, &mut self.forward);
                            self.forward.extend_from_slice(o.bytes());
                        }
                    }
                    wire::RES_INIT_ERR => {
                        let e = wire::decode::<TaskError>(&p.buf[payload]).unwrap_or_else(|e| e);
                        let e = match &mut p.capture {
                            Some(c) => e.with_output(c.take(0, &mut self.forward)),
                            None => e,
                        };
                        st.break_pool(
                            Broken::with_cause(
                                "the initializer failed in a worker process; the process pool \
                                 is not usable anymore",
                                e,
                            ),
                            &mut self.done,
                        );
                        return;
                    }
                    wire::RES_PONG => {
                        w.pong(h.id);
                    }
                    _ => {
                        // RES_OK / RES_ERR for the head (checked above).
                        let mut job = w.pop_head(h.run_ns).expect("checked above");
                        if let Some(b) = &mut job.bulk {
                            // The worker read its argument: its segment may be reused.
                            b.result_in();
                        }
                        if let Some(next) = w.window.front().filter(|j| j.cancel) {
                            if w.kill.is_none() {
                                w.kill = Some(Kill::Cancel(next.id));
                                w.child.signal(Signal::KILL);
                            }
                        }
                        let ok = h.kind == wire::RES_OK;
                        let at = self.payloads.len();
                        let outcome = match beside {
                            None => {
                                self.payloads.extend_from_slice(&p.buf[payload]);
                                Outcome::Frame(ok, at..self.payloads.len())
                            }
                            Some(Beside {
                                segment,
                                attachments,
                            }) => {
                                let payload = match segment {
                                    Some((map, len, slot)) => {
                                        let ptr = map.as_ptr();
                                        let keep = Release {
                                            _map: map,
                                            claims: w.claims.clone(),
                                            slot,
                                        };
                                        // SAFETY: `ptr..ptr + len` lies inside `map` (`len`
                                        // was checked against the file's size before it was
                                        // mapped, and the file cannot shrink: it is sealed),
                                        // which `keep` keeps mapped.
                                        ReceivedPayload::Shared(unsafe {
                                            SharedPayload::new(ptr, len, Box::new(keep))
                                        })
                                    }
                                    None => {
                                        self.payloads.extend_from_slice(&p.buf[payload]);
                                        ReceivedPayload::InBand(at..self.payloads.len())
                                    }
                                };
                                Outcome::Received(
                                    ok,
                                    Received {
                                        payload,
                                        attachments,
                                    },
                                )
                            }
                        };
                        let output = p.capture.as_mut().map(|c| c.take(h.id, &mut self.forward));
                        let judge = !ok && job.retry.as_ref().is_some_and(|a| a.judges_errors());
                        // The attempt ended on this worker (an error counts as a failure
                        // whatever it was: the counts do not tell a panic from an error).
                        w.counters.finished(if ok {
                            TaskOutcome::Ok
                        } else {
                            TaskOutcome::Err
                        });
                        let fin = Fin {
                            worker: Some(key),
                            run: Some(Duration::from_nanos(h.run_ns)),
                            started: job.on.is_some(),
                        };
                        if output.is_some() || judge {
                            self.after.push(After {
                                job,
                                fin,
                                ok,
                                outcome,
                                output,
                            });
                        } else {
                            self.done.with(job.slot, outcome, fin);
                        }
                    }
                }
            }
        }
    }

    /// The worker's result stream cannot be trusted any more: drop what it carries, kill it;
    /// the task it had claimed fails with `why`.
    fn out_of_sync(st: &mut State, p: &mut Proc, why: String) {
        p.discard = true;
        p.lo = p.hi;
        if let Some(w) = Self::worker(st, p.key) {
            w.kill.get_or_insert(Kill::Protocol(why));
            w.abandon();
        }
        p.child.signal(Signal::KILL);
    }

    fn apply_requests(&mut self, st: &mut State) {
        for fid in std::mem::take(&mut st.cancel_heads) {
            for w in &mut st.workers {
                let Some(head) = w.window.front() else {
                    continue;
                };
                if head.slot.future_id() == fid && w.kill.is_none() {
                    w.kill = Some(Kill::Cancel(head.id));
                    w.child.signal(Signal::KILL);
                }
            }
        }
    }

    /// Takes back the tasks a worker has not started once its head has run (or waited to
    /// start) for [`RECLAIM_AFTER`]: a stopped worker, or one busy with a long task, does
    /// not hold tasks that other workers could run.
    fn reclaim(&mut self, st: &mut State, cfg: &Config, now: Instant) {
        let ready = st.workers.iter().filter(|w| is_ready(w)).count();
        let mut back: Vec<Job> = Vec::new();
        for w in &mut st.workers {
            if !reclaimable(cfg, w, ready - usize::from(is_ready(w)) > 0)
                || now.saturating_duration_since(w.head_since) < RECLAIM_AFTER
            {
                continue;
            }
            w.reclaimed = Some(w.head_since);
            back.extend(w.take_back());
        }
        // Back to the front of the queue, in order (or cancelled, if `cancel` was waiting
        // for them to reach a head).
        requeue(st, &mut self.done, back);
    }

    /// Accounts for workers that are gone (reaped), and keeps track of the ones whose end
    /// of the result pipe closed.
    fn handle_deaths(&mut self, st: &mut State, cfg: &Config, now: Instant) {
        let check_all = now >= self.next_exit_check;
        if check_all {
            self.next_exit_check = now + EXIT_CHECK;
        }
        let mut i = 0;
        while i < self.procs.len() {
            let p = &mut self.procs[i];
            if p.exit.is_none() && (p.eof || (check_all && p.child.pidfd.is_none())) {
                p.exit = sys::try_wait(p.pid);
            }
            if p.exit.is_none() {
                if p.eof {
                    let since = *p.eof_at.get_or_insert(now);
                    if now.saturating_duration_since(since) >= EOF_GRACE {
                        if let Some(w) = Self::worker(st, p.key) {
                            w.kill.get_or_insert(Kill::Protocol(
                                "it closed its result pipe and kept running".into(),
                            ));
                        }
                        p.child.signal(Signal::KILL);
                    }
                }
                i += 1;
                continue;
            }
            let mut p = self.procs.swap_remove(i);
            let exit = p.exit.expect("checked");
            // What it printed since its last marker: its dying task's output.
            let output = p.capture.as_mut().map(|c| {
                c.read(true, &mut self.forward);
                c.take_rest(&mut self.forward)
            });
            let Some(wi) = st.workers.iter().position(|w| w.key == p.key) else {
                if let Some(o) = output {
                    self.forward.extend_from_slice(o.bytes());
                }
                continue;
            };
            let w = st.workers.swap_remove(wi);
            self.account_death(st, cfg, w, exit, now, output);
        }
    }

    fn account_death(
        &mut self,
        st: &mut State,
        cfg: &Config,
        mut w: Worker,
        exit: WorkerExit,
        now: Instant,
        output: Option<TaskOutput>,
    ) {
        let pid = w.pid as u32;
        let (claimed, back, confused) = take_all(&mut w);
        // A worker retired (by `max_tasks_per_child`, or let go at shutdown) stops; any
        // other end is a death, told with the task it held.
        let retired = !w.open && claimed.is_none() && back.is_empty() && w.kill.is_none();
        let died = !(retired && exit == WorkerExit::Code(0) && w.hello);
        st.obs.stats.worker_stopped(&w.counters, died);
        if died {
            if claimed.is_some() {
                w.counters.finished(match w.kill {
                    Some(Kill::Cancel(_)) => TaskOutcome::Cancelled,
                    Some(Kill::TimeLimit(..)) => TaskOutcome::TimedOut,
                    _ => TaskOutcome::Lost,
                });
            }
            let held = claimed.as_ref().map(|j| j.slot.future_id());
            st.obs
                .bus
                .emit(|| Event::worker_died(w.key, Some(pid), Some(exit), held));
        }
        for job in confused {
            let e = TaskError::WorkerDied { pid, exit };
            self.done.job(job, Outcome::Failed(e));
        }
        // The claimed task's output goes with its failure; without one, it is no one's.
        let (output, forward) = match (&claimed, output) {
            (Some(_), o) => (o, None),
            (None, o) => (None, o),
        };
        if let Some(o) = forward {
            self.forward.extend_from_slice(o.bytes());
        }
        let attach = |e: TaskError| match &output {
            Some(o) => e.with_output(o.clone()),
            None => e,
        };
        let done = &mut self.done;
        if let Some(b) = st.broken.clone() {
            if let Some(o) = &output {
                self.forward.extend_from_slice(o.bytes());
            }
            for job in claimed.into_iter().chain(back) {
                done.job(job, Outcome::Broken(b.clone()));
            }
            return;
        }
        // Killed by `terminate_workers` / `kill_workers` (whatever other kill it had coming):
        // nothing it held runs again.
        if matches!(w.kill, Some(Kill::Forced)) || st.forced {
            let b = Broken::with_cause(FORCED, attach(TaskError::WorkerDied { pid, exit }));
            for job in claimed.into_iter().chain(back) {
                done.job(job, Outcome::Broken(b.clone()));
            }
            return;
        }
        if !died {
            return;
        }
        if !w.hello || !w.init_done {
            // It died while starting (before greeting, or in its initializer): no task of
            // it ran. A start that failed, not a task that failed.
            debug_assert!(claimed.is_none());
            requeue(st, done, back);
            let needed = !st.queue.is_empty() || !st.shutdown;
            if cfg.policy == WorkerDeathPolicy::BreakPool && w.kill.is_none() {
                let what = if w.hello {
                    "while running the initializer"
                } else {
                    "while starting"
                };
                let b = Broken::with_cause(
                    format!("a worker process died {what}; the process pool is not usable anymore"),
                    TaskError::WorkerDied { pid, exit },
                );
                st.break_pool(b, &mut self.done);
            } else if needed && w.kill.is_none() {
                let in_init = w.hello;
                self.start_failed(st, StartFailure::Died { pid, exit, in_init }, now);
            }
            return;
        }
        match (w.kill.take(), claimed) {
            (_, None) => {}
            // The kill was meant for the task it had claimed: the usual case.
            (Some(Kill::TimeLimit(limit, id)), Some(j)) if j.id == id => {
                st.note(
                    Level::Info,
                    format!(
                        "worker process {pid} was killed: its task ran past its time limit \
                         of {limit:?}; it is replaced"
                    ),
                );
                let e = attach(TaskError::TimeLimit { limit });
                done.job(j, Outcome::Failed(e));
            }
            (Some(Kill::Cancel(id)), Some(j)) if j.id == id => {
                if let Some(o) = &output {
                    self.forward.extend_from_slice(o.bytes());
                }
                done.job(j, Outcome::Cancelled);
            }
            // The targeted task finished just before the kill landed (its result was
            // already on its way): the worker died under the next task, which is told so
            // (or, with a retry policy, runs again: the death was not its doing).
            (Some(Kill::TimeLimit(..) | Kill::Cancel(_)), Some(j)) => {
                match retry::on_collateral(&j, now) {
                    Verdict::Fail => {
                        let e = attach(TaskError::WorkerDied { pid, exit });
                        done.job(j, Outcome::Failed(e));
                    }
                    v => retry::apply(st, j, v, output, &mut self.forward, done),
                }
            }
            (Some(Kill::Protocol(why)), Some(j)) => {
                st.note(
                    Level::Warn,
                    format!(
                        "worker process {pid} was killed: its result stream was out of sync \
                         ({why}); it is replaced"
                    ),
                );
                let e = wire::codec(format!(
                    "the result stream of worker process {pid} was out of sync ({why}): did \
                     the task write to, or close, the pool's descriptors? The worker was \
                     replaced"
                ));
                done.job(j, Outcome::Failed(attach(e)));
            }
            (Some(Kill::Forced), Some(_)) => unreachable!("handled above"),
            (None, Some(mut j)) => {
                // A retry policy decides first: a task retried, split or quarantined breaks
                // no pool (its deaths are not held against the pool).
                match retry::on_death(&mut j, WorkerDeath { pid, exit }, now) {
                    Verdict::Fail => {}
                    v => {
                        st.note(
                            Level::Info,
                            format!(
                                "worker process {pid} died ({exit}) while running a task; it \
                                 is replaced"
                            ),
                        );
                        retry::apply(st, j, v, output, &mut self.forward, done);
                        requeue(st, &mut self.done, back);
                        return;
                    }
                }
                if cfg.policy == WorkerDeathPolicy::BreakPool {
                    let b = Broken::with_cause(
                        "a process in the process pool was terminated abruptly while the \
                         future was running or pending",
                        attach(TaskError::WorkerDied { pid, exit }),
                    );
                    done.job(j, Outcome::Broken(b.clone()));
                    for job in back {
                        done.job(job, Outcome::Broken(b.clone()));
                    }
                    st.break_pool(b, &mut self.done);
                    return;
                }
                st.note(
                    Level::Info,
                    format!(
                        "worker process {pid} died ({exit}) while running a task; it is replaced"
                    ),
                );
                let e = attach(TaskError::WorkerDied { pid, exit });
                done.job(j, Outcome::Failed(e));
            }
        }
        requeue(st, &mut self.done, back);
    }

    /// A start failed: retry later, or break the pool (see the module doc).
    fn start_failed(&mut self, st: &mut State, why: StartFailure, now: Instant) {
        let s = &mut self.starts;
        s.failures += 1;
        let since = *s.failing_since.get_or_insert(now);
        let running = st.workers.iter().any(|w| w.init_done && w.open);
        let give_up = (!s.ever_ready && s.failures >= MAX_START_FAILURES)
            || (!running && now.saturating_duration_since(since) >= START_GIVE_UP);
        if !give_up {
            let backoff =
                Duration::from_millis(5 << (s.failures - 1).min(8)).min(Duration::from_secs(1));
            s.retry_at = Some(now + backoff);
            // A failed start is worth a line, now and then (a kill storm makes hundreds a
            // second); the rest are details.
            let level = if s
                .warned_at
                .map_or(true, |t| now.saturating_duration_since(t) >= WARN_EVERY)
            {
                s.warned_at = Some(now);
                Level::Warn
            } else {
                Level::Debug
            };
            match &why {
                StartFailure::Spawn(e) => st.note(
                    level,
                    format!("a worker process could not be started ({e}); retrying in {backoff:?}"),
                ),
                StartFailure::Died { pid, exit, in_init } => st.note(
                    level,
                    format!(
                        "worker process {pid} died {} ({exit}); retrying in {backoff:?}",
                        if *in_init {
                            "in its initializer"
                        } else {
                            "while starting"
                        }
                    ),
                ),
            }
            return;
        }
        let n = s.failures;
        let b = match why {
            StartFailure::Spawn(e) => Broken::new(format!(
                "could not start any worker process ({n} attempts in a row failed; the last: \
                 {e}); the process pool is not usable anymore"
            )),
            StartFailure::Died { pid, exit, in_init } => Broken::with_cause(
                format!(
                    "worker processes died while starting ({n} in a row, {}); the process \
                     pool is not usable anymore",
                    if in_init {
                        "the last in its initializer"
                    } else {
                        "before they greeted"
                    }
                ),
                TaskError::WorkerDied { pid, exit },
            ),
        };
        st.break_pool(b, &mut self.done);
    }

    /// Starts workers while work waits and no worker has room.
    fn spawn_needed(&mut self, st: &mut State, cfg: &Config, now: Instant) {
        if st.broken.is_some() || st.forced {
            return;
        }
        loop {
            let idle = st
                .workers
                .iter()
                .filter(|w| w.has_room(cfg.max_tasks_per_child, now) && w.window.is_empty())
                .count();
            if st.queue.len() <= idle || st.live_workers() >= cfg.max_workers {
                return;
            }
            if self.starts.retry_at.is_some_and(|t| now < t) {
                return;
            }
            // Due (or none): this attempt is the retry; a past instant must not stay armed.
            self.starts.retry_at = None;
            match self.spawn(cfg) {
                Ok(w) => st.workers.push(w),
                Err(e) if sys::is_transient(&e) => {
                    self.start_failed(st, StartFailure::Spawn(e), now);
                    return;
                }
                Err(e) => {
                    st.break_pool(
                        Broken::new(format!(
                            "a worker process could not be started ({e}); the process pool is \
                             not usable anymore"
                        )),
                        &mut self.done,
                    );
                    return;
                }
            }
        }
    }

    /// Starts a worker. Everything that can fail is done before the process exists: an
    /// error never leaves a process the pool does not track.
    fn spawn(&mut self, cfg: &Config) -> io::Result<Worker> {
        let (cmd_r, cmd_w) = sys::pipe().map_err(sys::step("a pipe"))?;
        let (res_r, res_w) = sys::pipe().map_err(sys::step("a pipe"))?;
        let (ctl, ctl_child) = sys::socketpair().map_err(sys::step("a socketpair"))?;
        sys::set_nonblocking(cmd_w.as_fd())?;
        sys::set_nonblocking(res_r.as_fd())?;
        sys::set_nonblocking(ctl.as_fd())?;
        let ctl = Arc::new(ctl);
        let claims = Arc::new(
            ClaimPage::create().map_err(sys::step("the claim page (memfd_create, mmap)"))?,
        );
        // Output captured: the worker's stdout and stderr are one pipe to us.
        let (capture, out_w) = match cfg.capture {
            Some(limit) => {
                let (r, w) = sys::pipe().map_err(sys::step("a pipe"))?;
                (Some(Capture::new(r, self.nonce, limit)?), Some(w))
            }
            None => (None, None),
        };
        let key = self.next_key;
        self.next_key += 1;
        let n = sys::child_fd_number(self.random.hash_one(key));
        let mut env: Vec<CString> = Vec::new();
        let set = cfg.env.iter().map(|(k, v)| (k.clone(), v.clone()));
        for (k, v) in std::env::vars_os()
            .filter(|(k, _)| k != worker::ENV && !cfg.env.iter().any(|(s, _)| s == k))
            .chain(set)
        {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            if let Ok(c) = CString::new(kv) {
                env.push(c);
            }
        }
        env.push(
            CString::new(format!(
                "{}={}",
                worker::ENV,
                worker::env_value(n, cfg.capture.map(|_| self.nonce))
            ))
            .map_err(io::Error::other)?,
        );
        let fds = sys::ChildFds {
            first: n,
            fds: [cmd_r.as_fd(), res_w.as_fd(), ctl_child.as_fd(), claims.fd()],
            stdout: match &out_w {
                Some(w) => Some(w.as_fd()),
                None => cfg.stdout.as_ref().map(|f| f.as_fd()),
            },
            stderr: out_w.as_ref().map(|w| w.as_fd()),
        };
        let pid = sys::spawn(&cfg.exe, &cfg.argv0, &env, &fds).map_err(sys::step("posix_spawn"))?;
        drop((cmd_r, res_w, ctl_child, out_w));
        let child = Arc::new(sys::Child {
            pid,
            pidfd: sys::pidfd(pid),
        });
        self.procs.push(Proc {
            key,
            pid,
            res: res_r,
            child: child.clone(),
            buf: vec![0; 64 * 1024],
            lo: 0,
            hi: 0,
            eof: false,
            eof_at: None,
            discard: false,
            exit: None,
            out: None,
            closed_at: None,
            shutdown_kill: false,
            ctl: ctl.clone(),
            fds: FdQueue::default(),
            maps: MapCache::default(),
            capture,
        });
        let mut preamble = handshake::greeting_frame(&cfg.build, cfg.options);
        if let Some(init) = &cfg.init {
            preamble.extend_from_slice(init);
        }
        let obs = self.shared.obs.clone();
        let counters = obs.stats.worker_started(key, Some(pid as u32));
        obs.bus
            .emit(|| Event::worker_started(key, Some(pid as u32)));
        Ok(Worker::new(
            key, child, cmd_w, ctl, claims, preamble, obs, counters,
        ))
    }

    /// Closes idle workers at shutdown, notes who needs `POLLOUT`; true when the pool is
    /// finished (shut down, no work, no worker).
    fn prepare_poll(&mut self, st: &mut State, now: Instant) -> bool {
        let idle = st.queue.is_empty()
            && st.delayed.is_empty()
            && st.workers.iter().all(|w| w.window.is_empty());
        if st.shutdown && idle {
            // Tell every worker to exit once it has run what it has.
            for w in &mut st.workers {
                w.close();
            }
            if self.procs.is_empty() {
                return true;
            }
            // One that does not exit (stopped) is killed: it holds no task.
            for p in &mut self.procs {
                let since = *p.closed_at.get_or_insert(now);
                if now.saturating_duration_since(since) >= SHUTDOWN_GRACE
                    && p.exit.is_none()
                    && !p.shutdown_kill
                {
                    if let Some(w) = st.workers.iter_mut().find(|w| w.key == p.key) {
                        w.kill.get_or_insert(Kill::Forced);
                    }
                    p.shutdown_kill = true;
                    p.child.signal(Signal::KILL);
                }
            }
        }
        for p in &mut self.procs {
            p.out = st
                .workers
                .iter()
                .find(|w| w.key == p.key)
                .filter(|w| w.has_output())
                .and_then(|w| {
                    // A full control socket holds the next frame back: wait for it instead.
                    if w.ctl_blocked {
                        Some(w.ctl.clone())
                    } else {
                        w.cmd.clone()
                    }
                });
        }
        false
    }

    /// How long to wait before the next timed event (`None`: none); kills the workers whose
    /// head task is past its limit.
    fn next_deadline(&mut self, st: &mut State, now: Instant) -> Option<Duration> {
        let cfg = &self.shared.config;
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        let ready = st.workers.iter().filter(|w| is_ready(w)).count();
        for w in &mut st.workers {
            let Some(head) = w.window.front() else {
                continue;
            };
            if reclaimable(cfg, w, ready - usize::from(is_ready(w)) > 0) {
                // (Never a past instant: `reclaim` ran just before and dealt with those.)
                at((w.head_since + RECLAIM_AFTER).max(now + Duration::from_millis(1)));
            }
            let Some(limit) = head.limit else { continue };
            if w.kill.is_some() || !w.init_done {
                continue;
            }
            // A limit too large to add is no limit.
            let Some(deadline) = w.head_since.checked_add(limit) else {
                continue;
            };
            if deadline <= now {
                w.kill = Some(Kill::TimeLimit(limit, head.id));
                w.child.signal(Signal::KILL);
            } else {
                at(deadline);
            }
        }
        if !st.queue.is_empty() {
            if let Some(t) = self.starts.retry_at {
                at(t);
            }
        }
        // Idle segments and mappings are given back after a while.
        if let Some(t) = self.shared.config.segments.trim(now) {
            at(t);
        }
        for p in &mut self.procs {
            if let Some(t) = p.maps.trim(now) {
                at(t);
            }
        }
        if let Some(t) = retry::next_due(st) {
            at(t);
        }
        // A submitting thread that hands a task to an idle worker does not wake this thread
        // (a lone task costs no hand-off): should that worker be stopped, only a look now and
        // then finds the task to take back. So while workers live, this thread looks at
        // least every `LOOK_EVERY` (a few microseconds of work, ten times a second).
        if cfg.max_workers >= 2 && !st.workers.is_empty() {
            at(now + LOOK_EVERY);
        }
        for p in &self.procs {
            if p.exit.is_none() {
                if p.eof {
                    at(now + Duration::from_millis(1));
                } else if p.child.pidfd.is_none() {
                    at(self.next_exit_check);
                }
                if let (Some(c), false) = (p.closed_at, p.shutdown_kill) {
                    at(c + SHUTDOWN_GRACE);
                }
            }
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    /// Waits for something to happen, then reads what is there (never blocks on a pipe).
    fn wait(&mut self, timeout: Option<Duration>) {
        // Per worker: its result pipe, its pidfd, its command pipe, and, when output is
        // captured, its output pipe.
        let capture = self.shared.config.capture.is_some();
        let per = 3 + usize::from(capture);
        let mut ready: Vec<(bool, bool)> = Vec::with_capacity(1 + per * self.procs.len());
        {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + per * self.procs.len());
            fds.push(PollFd::new(&self.wake_r, PollFlags::IN));
            for p in &self.procs {
                if p.eof {
                    // Not the closed pipe itself: `poll` reports its hang-up whatever the
                    // events asked, at once, every time.
                    fds.push(PollFd::new(&self.wake_r, PollFlags::empty()));
                } else {
                    fds.push(PollFd::new(&p.res, PollFlags::IN));
                }
                match &p.child.pidfd {
                    Some(fd) if p.exit.is_none() => fds.push(PollFd::new(fd, PollFlags::IN)),
                    // A placeholder that never reports, so indices stay simple.
                    _ => fds.push(PollFd::new(&self.wake_r, PollFlags::empty())),
                }
                match &p.out {
                    Some(fd) => fds.push(PollFd::new(&**fd, PollFlags::OUT)),
                    None => fds.push(PollFd::new(&self.wake_r, PollFlags::empty())),
                }
                if capture {
                    match p.capture.as_ref().and_then(|c| c.poll_fd()) {
                        Some(fd) => fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN)),
                        None => fds.push(PollFd::new(&self.wake_r, PollFlags::empty())),
                    }
                }
            }
            let _ = sys::poll(&mut fds, timeout);
            ready.extend(fds.iter().map(sys::ready));
        }
        if ready[0].0 {
            let mut b = [0u8; 64];
            while matches!(sys::read(self.wake_r.as_fd(), &mut b), Ok(n) if n > 0) {}
            // Reset after draining: a wake before this point changed the state before it
            // woke us, and we look at the state next (under the lock, which orders us after
            // its change); a wake after it sees `false` and writes a new byte.
            self.shared.wake_pending.store(false, Ordering::Release);
        }
        for (i, p) in self.procs.iter_mut().enumerate() {
            let (readable, _) = ready[1 + per * i];
            let (died, _) = ready[2 + per * i];
            let printed = capture && ready[4 + per * i].0;
            p.out = None;
            if readable || died {
                // A death: what the worker wrote before it died is read first.
                read_pipe(p);
            }
            if let Some(c) = &mut p.capture {
                // After the results: every result read has its output marker in the pipe.
                if readable || died || printed || c.behind() {
                    c.read(died, &mut self.forward);
                }
            }
            if died {
                p.exit = sys::try_wait(p.pid);
            }
        }
    }
}

/// Jobs a worker had not started (taken back, or left by its death): back to the front of
/// the queue, in order, or cancelled if `cancel` was waiting for them to reach a head.
fn requeue(st: &mut State, done: &mut Done, back: Vec<Job>) {
    for mut job in back.into_iter().rev() {
        if job.on.take().is_some() {
            // It was the head, not started by its worker: it starts again elsewhere.
            st.obs.stats.requeued(false);
        }
        if job.cancel {
            done.job(job, Outcome::Cancelled);
        } else {
            st.queue.push_front(job);
        }
    }
}

/// A worker ready to run tasks (greeted, initializer done, taking work).
fn is_ready(w: &Worker) -> bool {
    w.init_done && w.open && w.kill.is_none()
}

/// Whether the tasks in `w`'s window are to be taken back once its head has run (or waited
/// to start) for [`RECLAIM_AFTER`] — the one rule `reclaim` and `next_deadline` share.
/// `ready_elsewhere`: another worker is ready.
fn reclaimable(cfg: &Config, w: &Worker, ready_elsewhere: bool) -> bool {
    cfg.max_workers >= 2 // else there is nowhere else to run them
        && !w.window.is_empty()
        && w.kill.is_none()
        && w.reclaimed != Some(w.head_since)
        // A worker still starting (an initializer can take seconds) keeps its tasks unless
        // another worker is ready to run them: one task must not start every worker of the
        // pool, each passing it on after 10 ms.
        && (w.init_done || ready_elsewhere)
}

/// Reads whatever the result pipe holds now (never blocks).
fn read_pipe(p: &mut Proc) {
    if p.eof {
        return;
    }
    loop {
        if p.lo == p.hi {
            p.lo = 0;
            p.hi = 0;
            if p.buf.len() > 1 << 20 {
                // A large frame went through: give the memory back.
                p.buf = vec![0; 64 * 1024];
            }
        }
        if p.discard {
            p.lo = 0;
            p.hi = 0;
        }
        if p.hi == p.buf.len() {
            if p.lo > 0 {
                p.buf.copy_within(p.lo..p.hi, 0);
                p.hi -= p.lo;
                p.lo = 0;
            } else {
                // Grow to the frame's checked length when known, else double.
                let want = match ResHeader::parse(&p.buf[..p.hi]) {
                    Some(Ok(h)) if h.len <= MAX_RESULT_FRAME => h.len.max(p.buf.len() * 2),
                    _ => p.buf.len() * 2,
                };
                p.buf
                    .resize(want.min(MAX_RESULT_FRAME + wire::RES_HEADER), 0);
                if p.hi == p.buf.len() {
                    return; // over the limit: the header check will say so
                }
            }
        }
        match sys::read(p.res.as_fd(), &mut p.buf[p.hi..]) {
            Ok(0) => {
                p.eof = true;
                return;
            }
            Ok(n) => {
                p.hi += n;
                if p.hi < p.buf.len() {
                    // Short read: the pipe is drained (poll reports what comes next);
                    // spare the read that would say EAGAIN.
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                p.eof = true;
                return;
            }
        }
    }
}

/// Checks a result header against what the worker may send now.
fn check_header(h: &ResHeader, w: &Worker) -> Result<(), String> {
    if h.len > MAX_RESULT_FRAME {
        return Err(format!(
            "a result frame of {} bytes is over the {MAX_RESULT_FRAME}-byte limit",
            h.len
        ));
    }
    if let Some(ext) = &h.ext {
        // Only task results come with an extension; what it claims is checked as any
        // length is.
        if !matches!(h.kind, wire::RES_OK | wire::RES_ERR) {
            return Err(format!("a frame of kind {} with an extension", h.kind));
        }
        if usize::from(ext.attachments) > cfutures_remote::oob::MAX_ATTACHMENTS {
            return Err(format!("a result with {} attachments", ext.attachments));
        }
        if let Placement::Segment { len, tag } = ext.payload {
            if len > MAX_RESULT_SEGMENT {
                return Err(format!(
                    "a result payload of {len} bytes is over the {MAX_RESULT_SEGMENT}-byte limit"
                ));
            }
            if usize::from(tag) >= crate::claims::RELEASE_SLOTS && tag != segments::ONE_SHOT {
                return Err(format!("a result segment in slot {tag}"));
            }
            if h.len != wire::RES_HEADER + wire::EXT_LEN {
                return Err("a result both in its frame and out of line".into());
            }
        }
    }
    let ok = match h.kind {
        wire::RES_HELLO => !w.hello && h.id == 0,
        wire::RES_INIT_OK | wire::RES_INIT_ERR => w.hello && !w.init_done && h.id == 0,
        wire::RES_PONG => w.ping.is_some_and(|(id, _)| id == h.id),
        wire::RES_OK | wire::RES_ERR => {
            w.hello && w.init_done && w.unsent > 0 && w.window.front().is_some_and(|j| j.id == h.id)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a frame of kind {} for task {:#x} where task {} was due",
            h.kind,
            h.id,
            w.window
                .front()
                .map_or("none".to_owned(), |j| format!("{:#x}", j.id))
        ))
    }
}

/// What came beside a result frame.
struct Beside {
    /// The payload's segment, mapped: the mapping, the payload's length, its release slot.
    segment: Option<(Arc<cfutures_remote::shm::Mapping>, usize, u8)>,
    attachments: Vec<OwnedFd>,
}

/// Takes the descriptors a result frame's extension names from the worker's control
/// socket (they were sent before the frame, so they are there), and maps its payload
/// segment.
fn take_beside(p: &mut Proc, ext: &Ext) -> Result<Beside, String> {
    let mut fds = p
        .fds
        .take(p.ctl.as_fd(), segments::fd_count(ext), false)?
        .into_iter();
    let segment = match ext.payload {
        Placement::Segment { len, tag } => {
            let fd = fds.next().expect("counted");
            let map = p.maps.map(fd, len)?;
            Some((map, len as usize, tag))
        }
        _ => None,
    };
    Ok(Beside {
        segment,
        attachments: fds.collect(),
    })
}

/// After a death: the job it had claimed (running when it died), and the jobs it never
/// started, in order. A dead worker claims nothing more, so each revoke is final.
///
/// A worker runs one task at a time, so at most one job is claimed and unfinished; a page
/// that says otherwise (its task wrote into it) gives the extra claimed jobs back as
/// `confused`: they fail as the death's, never run again.
fn take_all(w: &mut Worker) -> (Option<Job>, Vec<Job>, Vec<Job>) {
    let mut claimed = None;
    let mut back = Vec::new();
    let mut confused = Vec::new();
    let mut i = 0;
    while let Some(job) = w.window.pop_front() {
        let written = i < w.unsent;
        i += 1;
        if written && !w.claims.revoke(job.seq) {
            if let Some(earlier) = claimed.replace(job) {
                confused.push(earlier);
            }
        } else {
            back.push(job);
        }
    }
    (claimed, back, confused)
}
