//! The I/O thread: reads results, sees deaths, spawns and reaps workers, enforces time
//! limits, and completes futures outside the lock.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cfutures_core::{Broken, TaskError, WorkerExit};

use crate::executor::WorkerDeathPolicy;
use crate::state::{Done, Shared, State};
use crate::sys;
use crate::window::{Job, Kill, Worker};
use crate::worker;
use cfutures_remote::job::Outcome;
use cfutures_remote::wire;

pub(crate) struct Proc {
    pub(crate) key: u64,
    pub(crate) pid: i32,
    pub(crate) res: OwnedFd,
    pub(crate) buf: Vec<u8>,
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    pub(crate) eof: bool,
}

pub(crate) struct Io {
    pub(crate) shared: Arc<Shared>,
    pub(crate) wake_r: OwnedFd,
    pub(crate) procs: Vec<Proc>,
    pub(crate) next_key: u64,
    pub(crate) pollfds: Vec<libc::pollfd>,
    /// The payloads of the results taken in this round (see [`Outcome::Frame`]).
    pub(crate) payloads: Vec<u8>,
}

impl Io {
    pub(crate) fn new(shared: Arc<Shared>, wake_r: OwnedFd) -> Self {
        Io {
            shared,
            wake_r,
            procs: Vec::new(),
            next_key: 1,
            pollfds: Vec::new(),
            payloads: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
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
    pub(crate) fn build_pollset(&mut self, st: &mut State) -> bool {
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
    pub(crate) fn next_deadline(st: &mut State) -> i32 {
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
    pub(crate) fn read_ready(&mut self) {
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
    pub(crate) fn take_results(&mut self, st: &mut State, done: &mut Done) {
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

    pub(crate) fn apply_requests(&mut self, st: &mut State) {
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
    pub(crate) fn handle_deaths(&mut self, st: &mut State, done: &mut Done) {
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
    pub(crate) fn spawn_needed(&mut self, st: &mut State, done: &mut Done) {
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

    pub(crate) fn spawn(&mut self) -> io::Result<Worker> {
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
        if let Some(init) = &cfg.init {
            out.extend_from_slice(init);
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
pub(crate) fn desync(w: &mut Worker, pid: i32) {
    w.kill.get_or_insert(Kill::Protocol);
    sys::kill(pid, libc::SIGKILL);
}

/// Waits for a worker whose result pipe closed: it is exiting, so its status comes within
/// microseconds; one that closed the pipe but lives on is killed.
pub(crate) fn reap(pid: i32) -> WorkerExit {
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
