//! One worker as the parent sees it: the jobs in its window (sent, in order), its output
//! buffer, and why it is being killed.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use cfutures_remote::job::Slot;

use crate::sys;

pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) frame: Vec<u8>,
    pub(crate) slot: Box<dyn Slot>,
    pub(crate) limit: Option<Duration>,
    /// Already marked running (it was in a worker that died before starting it).
    pub(crate) started: bool,
    /// `cancel` asked to stop it; it is killed as soon as it is the head of its window.
    pub(crate) cancel: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The task with this id ran past its limit.
    TimeLimit(Duration, u64),
    /// The task with this id was cancelled while running.
    Cancel(u64),
    Forced,
    /// The worker's result stream was malformed.
    Protocol,
}

pub(crate) struct Worker {
    pub(crate) key: u64,
    pub(crate) pid: i32,
    pub(crate) cmd: Option<OwnedFd>,
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    pub(crate) window: VecDeque<Job>,
    pub(crate) dispatched: u64,
    pub(crate) hello: bool,
    pub(crate) init_done: bool,
    pub(crate) ewma_ns: Option<u64>,
    pub(crate) head_since: Instant,
    pub(crate) kill: Option<Kill>,
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
    pub(crate) fn depth(&self, now: Instant) -> usize {
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

    pub(crate) fn has_room(&self, max_tasks: Option<u64>, now: Instant) -> bool {
        self.cmd.is_some()
            && self.kill.is_none()
            && self.window.len() < self.depth(now)
            && max_tasks.map_or(true, |m| self.dispatched < m)
    }

    /// Writes what the pipe takes now (never blocks).
    pub(crate) fn flush(&mut self) {
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

    pub(crate) fn send(&mut self, job: Job) {
        self.out.extend_from_slice(&job.frame);
        if self.window.is_empty() {
            self.head_since = Instant::now();
        }
        self.window.push_back(job);
        self.dispatched += 1;
    }
}
