//! One worker as the parent sees it: the jobs in its *window* (written, or being written, to
//! its command pipe, in order), what is still to be written, its claim page, and why it is
//! being killed.
//!
//! # The window
//!
//! Results come back in the order the jobs were written (a worker runs one at a time), so the
//! first job of the window — its *head* — is the one whose result comes next, and the one to
//! blame if the worker dies (if the worker had claimed it: see [`crate::claims`]). Jobs behind
//! the head have not started; they can be taken back ([`Worker::take_back`]) when the head
//! runs long or the worker stops, and they go back to the queue when the worker dies.
//!
//! Frames are written straight from the jobs (`writev` of several frames at once), never
//! copied into an output buffer: a large argument is held once, in its job, until its result
//! is in (it is needed to run the job elsewhere if its worker dies before starting it).
//!
//! A job whose payload is out of line (or that refers to shared data) first sends its
//! descriptors on the worker's control socket (`crate::segments`), and only as the first
//! frame of a `writev`: once they are sent the job counts as partly written (it is not
//! taken back unwritten: the worker will read its descriptors, so it must read its frame).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_core::events::{Event, WorkerCounters};
use cfutures_remote::job::Slot;
use cfutures_remote::wire;

use crate::claims::{ClaimPage, SLOTS};
use crate::retry::Attempts;
use crate::segments::Bulk;
use crate::state::Obs;
use crate::sys;

/// One task on its way to a worker.
pub(crate) struct Job {
    /// Unique in the pool; result frames name it.
    pub(crate) id: u64,
    /// The command frame.
    pub(crate) frame: Vec<u8>,
    pub(crate) slot: Box<dyn Slot>,
    pub(crate) limit: Option<Duration>,
    /// Marked running (when it was first dispatched: it stays so when it is taken back or
    /// requeued, as Python's running futures cannot go back to pending).
    pub(crate) started: bool,
    /// `cancel` asked to stop it; it is killed as soon as it is the head of its window.
    pub(crate) cancel: bool,
    /// Its number in its worker's stream (for the claim page), while in a window.
    pub(crate) seq: u64,
    /// What it sends beside its frame (a payload segment, shared data), if anything.
    pub(crate) bulk: Option<Box<Bulk>>,
    /// Its retry policy and what happened to it so far (`None`: a death fails it).
    pub(crate) retry: Option<Box<Attempts>>,
    /// The worker (key) it started on: set when it became the head of that worker's window
    /// (its `Started` event), cleared when it goes back to wait.
    pub(crate) on: Option<u64>,
}

impl Job {
    /// Whether its descriptors must be sent (to the worker whose window holds it) before
    /// its frame.
    fn to_announce(&self) -> bool {
        self.bulk.as_ref().is_some_and(|b| !b.announced)
    }

    /// Whether its descriptors went to its worker (it must then be written in full).
    fn announced(&self) -> bool {
        self.bulk.as_ref().is_some_and(|b| b.announced)
    }
}

/// Why the parent killed a worker (its death is then not a surprise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The task with this id ran past its limit.
    TimeLimit(Duration, u64),
    /// The task with this id was cancelled while running.
    Cancel(u64),
    /// `terminate_workers`, `kill_workers`, or the pool broke.
    Forced,
    /// The worker's result stream was out of sync: this says how.
    Protocol(String),
}

pub(crate) struct Worker {
    pub(crate) key: u64,
    pub(crate) pid: i32,
    /// The process, to signal (through its pidfd where there is one).
    pub(crate) child: Arc<sys::Child>,
    /// The command pipe's write end (non-blocking); dropped once the last frame is written
    /// after [`close`](Self::close), or at once when the worker is abandoned.
    pub(crate) cmd: Option<Arc<OwnedFd>>,
    /// The parent's end of the control socket (non-blocking): descriptors of large
    /// payloads and shared data go there, before their frames (the worker also checks,
    /// through it, that its descriptors come from its parent).
    pub(crate) ctl: Arc<OwnedFd>,
    /// The control socket was full at the last flush: wait for it, not the pipe.
    pub(crate) ctl_blocked: bool,
    /// False once no more job may be sent (retirement, shutdown, a kill).
    pub(crate) open: bool,
    /// Frames written before any job frame: the greeting, the initializer, a ping, the exit.
    /// Only added to while no job frame waits to be written.
    pub(crate) preamble: Vec<u8>,
    pub(crate) preamble_pos: usize,
    /// Index in `window` of the first job not completely written, and how much of it is.
    pub(crate) unsent: usize,
    pub(crate) unsent_pos: usize,
    pub(crate) window: VecDeque<Job>,
    pub(crate) claims: Arc<ClaimPage>,
    /// The stream number of the next job frame.
    pub(crate) next_seq: u64,
    /// Every job frame numbered below this one has been read by the worker.
    pub(crate) read_seq: u64,
    /// Its jobs were taken back before it claimed its head (it is stopped, or slow to
    /// start): no new job until it answers the ping sent then.
    pub(crate) stalled: bool,
    /// The ping in flight: its id and `next_seq` when it was sent.
    pub(crate) ping: Option<(u64, u64)>,
    /// Jobs written to it, for `max_tasks_per_child`.
    pub(crate) dispatched: u64,
    pub(crate) hello: bool,
    pub(crate) init_done: bool,
    pub(crate) ewma_ns: Option<u64>,
    /// Since when the head may run (its time limit and its age count from here).
    pub(crate) head_since: Instant,
    /// The `head_since` of the head whose window was last taken back (once per head).
    pub(crate) reclaimed: Option<Instant>,
    pub(crate) kill: Option<Kill>,
    /// The pool's events and counts, and this worker's counts.
    pub(crate) obs: Arc<Obs>,
    pub(crate) counters: Arc<WorkerCounters>,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key: u64,
        child: Arc<sys::Child>,
        cmd: OwnedFd,
        ctl: Arc<OwnedFd>,
        claims: Arc<ClaimPage>,
        preamble: Vec<u8>,
        obs: Arc<Obs>,
        counters: Arc<WorkerCounters>,
    ) -> Self {
        Worker {
            obs,
            counters,
            key,
            pid: child.pid,
            child,
            cmd: Some(Arc::new(cmd)),
            ctl,
            ctl_blocked: false,
            open: true,
            preamble,
            preamble_pos: 0,
            unsent: 0,
            unsent_pos: 0,
            window: VecDeque::new(),
            claims,
            next_seq: 0,
            read_seq: 0,
            stalled: false,
            ping: None,
            dispatched: 0,
            hello: false,
            init_done: false,
            ewma_ns: None,
            head_since: Instant::now(),
            reclaimed: None,
            kill: None,
        }
    }

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
    pub(crate) fn depth(&self, now: Instant) -> usize {
        const QUEUED_WORK_NS: u64 = 100_000;
        if !self.window.is_empty() && now.saturating_duration_since(self.head_since) > LONG_HEAD {
            return 1;
        }
        match self.ewma_ns {
            None => 1,
            Some(ns) => (QUEUED_WORK_NS / ns.max(1)).clamp(1, 64) as usize,
        }
    }

    pub(crate) fn has_room(&self, max_tasks: Option<u64>, now: Instant) -> bool {
        self.open
            && self.kill.is_none()
            && !self.stalled
            && self.window.len() < self.depth(now)
            && self.next_seq - self.read_seq < SLOTS - 1
            && max_tasks.map_or(true, |m| self.dispatched < m)
    }

    /// Adds `job` to the window (it is written by the next [`flush`](Self::flush)).
    pub(crate) fn send(&mut self, mut job: Job) {
        let head = self.window.is_empty();
        if head {
            self.head_since = Instant::now();
        }
        job.seq = self.next_seq;
        if let Some(b) = &mut job.bulk {
            // Descriptors sent to another worker (which died, or had it taken back) do not
            // count here.
            b.announced = false;
        }
        self.next_seq += 1;
        self.claims.publish(job.seq);
        self.window.push_back(job);
        self.dispatched += 1;
        if head {
            self.head_started();
        }
    }

    /// The head (if any) starts now, from the pool's point of view (its time limit counts
    /// from here): counted, and its `Started` event sent, once per stay at the head.
    pub(crate) fn head_started(&mut self) {
        let Some(h) = self.window.front_mut() else {
            return;
        };
        if h.on.is_some() {
            return;
        }
        h.on = Some(self.key);
        self.obs.stats.started();
        let (key, pid) = (self.key, self.pid as u32);
        self.obs
            .bus
            .emit(|| Event::started(h.slot.future_id(), key, Some(pid)));
    }

    /// True while something waits to be written.
    pub(crate) fn has_output(&self) -> bool {
        self.preamble_pos < self.preamble.len() || self.unsent < self.window.len()
    }

    /// Writes what the pipe takes now (never blocks).
    pub(crate) fn flush(&mut self) {
        let Some(cmd) = &self.cmd else {
            return;
        };
        self.ctl_blocked = false;
        while self.has_output() {
            // A job's descriptors go just before its frame, and only when that frame comes
            // first in this write (so that no frame is announced and then left unwritten
            // behind a short write of the ones before it).
            if self.preamble_pos == self.preamble.len() {
                if let Some(job) = self.window.get_mut(self.unsent) {
                    if job.to_announce() {
                        let bulk = job.bulk.as_mut().expect("to announce");
                        match bulk.announce(self.ctl.as_fd()) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                self.ctl_blocked = true;
                                return;
                            }
                            // EPIPE (the worker died): its death shows on its pidfd and
                            // result pipe.
                            Err(_) => return,
                        }
                    }
                }
            }
            let mut bufs: Vec<IoSlice<'_>> = Vec::with_capacity(8);
            if self.preamble_pos < self.preamble.len() {
                bufs.push(IoSlice::new(&self.preamble[self.preamble_pos..]));
            }
            for (i, job) in self.window.iter().enumerate().skip(self.unsent).take(64) {
                if job.to_announce() {
                    break;
                }
                let from = if i == self.unsent { self.unsent_pos } else { 0 };
                bufs.push(IoSlice::new(&job.frame[from..]));
            }
            let Ok(mut n) = sys::write_vectored(cmd.as_fd(), &bufs) else {
                // EAGAIN: later, on POLLOUT; EPIPE: the death shows on the result pipe and
                // the pidfd.
                return;
            };
            if n == 0 {
                return;
            }
            let left = self.preamble.len() - self.preamble_pos;
            if left > 0 {
                let k = n.min(left);
                self.preamble_pos += k;
                n -= k;
                if self.preamble_pos == self.preamble.len() {
                    if self.preamble.capacity() > 64 * 1024 {
                        // A large initializer's frame: not kept for the worker's life.
                        self.preamble = Vec::new();
                    } else {
                        self.preamble.clear();
                    }
                    self.preamble_pos = 0;
                }
            }
            while n > 0 {
                let left = self.window[self.unsent].frame.len() - self.unsent_pos;
                if n >= left {
                    n -= left;
                    self.unsent += 1;
                    self.unsent_pos = 0;
                } else {
                    self.unsent_pos += n;
                    n = 0;
                }
            }
        }
        if !self.open {
            // The exit frame is out: the pipe closes.
            self.cmd = None;
        }
    }

    /// Removes the head after its result came in; the worker has read every frame up to it.
    pub(crate) fn pop_head(&mut self, run_ns: u64) -> Option<Job> {
        let job = self.window.pop_front()?;
        self.unsent = self.unsent.saturating_sub(1);
        self.read_seq = self.read_seq.max(job.seq + 1);
        self.ewma_ns = Some(match self.ewma_ns {
            None => run_ns,
            Some(e) => (e * 7 + run_ns) / 8,
        });
        self.head_since = Instant::now();
        self.head_started();
        Some(job)
    }

    /// Takes job `i` of the window back if the worker has not started it: a job completely
    /// written is revoked on the claim page (which fails if the worker claimed it first); a
    /// job not written at all is simply removed (the jobs after it are renumbered). A job
    /// partly written stays.
    pub(crate) fn take_one(&mut self, i: usize) -> Option<Job> {
        let written = i < self.unsent;
        let untouched = !self.window[i].announced()
            && (i > self.unsent || (i == self.unsent && self.unsent_pos == 0));
        if written {
            if !self.claims.revoke(self.window[i].seq) {
                return None;
            }
            self.unsent -= 1;
        } else if untouched {
            let seq = self.window[i].seq;
            for (k, later) in self.window.iter_mut().enumerate().skip(i + 1) {
                later.seq = seq + (k - i - 1) as u64;
                self.claims.publish(later.seq);
            }
            self.next_seq -= 1;
        } else {
            return None;
        }
        self.dispatched = self.dispatched.saturating_sub(1);
        let job = self.window.remove(i).expect("index in the window");
        if i == 0 {
            // (The new head starts when the caller is done taking jobs back:
            // `head_started`.)
            self.head_since = Instant::now();
        }
        Some(job)
    }

    /// Takes back every job of the window that the worker has not started, in order. If the
    /// head was among them, the worker is stalled (stopped, or slow to start): it gets a
    /// ping, and no new job until the answer.
    pub(crate) fn take_back(&mut self) -> Vec<Job> {
        let mut back = Vec::new();
        let mut i = 0;
        let mut head_taken = false;
        while i < self.window.len() {
            match self.take_one(i) {
                Some(job) => {
                    head_taken |= i == 0;
                    back.push(job);
                }
                None => i += 1,
            }
        }
        if head_taken && self.window.is_empty() && self.ping() {
            self.stalled = true;
        }
        self.head_started();
        self.ping_if_behind();
        back
    }

    /// Sends a ping, if none is in flight and nothing waits to be written before it (the
    /// window is empty); true if one is now in flight.
    fn ping(&mut self) -> bool {
        if self.ping.is_some() {
            return true;
        }
        if !self.open || !self.window.is_empty() {
            return false;
        }
        let id = PING_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.preamble
            .extend_from_slice(&wire::control_frame(wire::CMD_PING, id));
        self.ping = Some((id, self.next_seq));
        self.flush();
        true
    }

    /// After tasks were taken back before the worker read them: if many stream numbers are
    /// in use that no result will free (taken-back frames answer nothing), a ping learns
    /// what the worker has read, so that the claim page's slots never run out (which would
    /// leave the worker with no room, for good).
    pub(crate) fn ping_if_behind(&mut self) {
        if self.next_seq - self.read_seq >= SLOTS / 2 {
            self.ping();
        }
    }

    /// The answer to the ping came: every frame before it was read.
    pub(crate) fn pong(&mut self, id: u64) {
        if let Some((p, seq)) = self.ping {
            if p == id {
                self.ping = None;
                self.stalled = false;
                self.read_seq = self.read_seq.max(seq);
            }
        }
    }

    /// No more jobs: the worker runs what it has, reads the exit frame, and exits. (An
    /// explicit frame, not only end of file: a forked child of the parent may hold a copy of
    /// the pipe's write end, and end of file would then never come.)
    pub(crate) fn close(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        if self.unsent < self.window.len() {
            // Jobs still to be written (only when the worker is being killed): no exit
            // frame can follow them in order without them; the kill ends it.
            self.cmd = None;
            return;
        }
        self.preamble
            .extend_from_slice(&wire::control_frame(wire::CMD_EXIT, 0));
        self.flush();
    }

    /// Stops writing to it at once (it is being killed).
    pub(crate) fn abandon(&mut self) {
        self.open = false;
        self.cmd = None;
    }
}

/// A head running for longer than this is a long task: nothing more is queued behind it.
pub(crate) const LONG_HEAD: Duration = Duration::from_millis(5);

/// Jobs behind a head that has run (or waited to start) this long are taken back for other
/// workers: the bound on how long a task can be stranded behind a long or stopped head.
pub(crate) const RECLAIM_AFTER: Duration = Duration::from_millis(10);

/// Ids of pings (a counter of their own: they never meet job ids, which results name).
static PING_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 62);
