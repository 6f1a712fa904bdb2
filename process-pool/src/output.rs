//! Captured output ([`Builder::capture_output`](crate::Builder::capture_output)): what each
//! task prints, attributed to that task, kept (its last bytes) to go with its failure.
//!
//! # How output is attributed
//!
//! A capturing worker's standard output *and* standard error are one pipe to the parent (so
//! the two stay in the order they were written). After each task, and after the initializer,
//! the worker flushes Rust's and C's standard output and writes a *marker* to that pipe — a
//! 16-byte pattern that depends on a random number of the pool's, then the task's id —
//! before it writes the task's result. So in the output stream, the bytes before a task's
//! marker (and after the previous one) are that task's; and since the marker is written
//! before the result, it is in the pipe by the time the parent has read the result.
//!
//! The parent reads the output pipe after the result pipe, whenever it reads either. A
//! result is taken only once its task's marker has been read, or the pipe was read empty
//! after the result (a task that closed its standard output writes no marker): output of
//! task `k` is never attributed to `k + 1`, however many tiny tasks are queued in a
//! worker's window. When a worker dies, its pipe is read to the end (what a process the task
//! forked still writes excepted), and what follows the last marker is the dying task's.
//!
//! Each task's output keeps its last `limit` bytes (and the count of all of them): a task
//! that prints without end costs `2 × limit` bytes at most.
//!
//! What belongs to no failure — a task that succeeded, the initializer, an attempt that is
//! retried, a marker for a task no longer expected — is written, after the state lock is
//! released, where uncaptured output goes ([`WorkerOutput`](crate::WorkerOutput)), one task
//! at a time.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use cfutures_core::TaskOutput;

use crate::sys;

/// A marker's length: the pattern, then the task's id (`u64`, little-endian).
const MARKER_LEN: usize = 24;
/// The pattern's length.
const MAGIC_LEN: usize = 16;
/// Segments closed by a marker but not yet claimed by a result, kept at most (a task could
/// forge markers; the parent's memory stays bounded).
const MAX_SEGMENTS: usize = 512;
/// Bytes read from one output pipe per round at most (the rest in the next round: a task
/// that prints without pause does not hold the I/O thread).
const READ_BUDGET: usize = 1 << 20;
/// Bytes read from a dead worker's pipe at most (a process the task forked may keep
/// writing to it).
const DEATH_BUDGET: usize = 16 << 20;

/// The marker pattern of a pool whose random number is `nonce`. It starts with a NUL byte,
/// which text output never holds, so that looking for it costs little.
pub(crate) fn magic(nonce: u64) -> [u8; MAGIC_LEN] {
    let mut m = [0u8; MAGIC_LEN];
    m[..8].copy_from_slice(b"\0cfpp:o\xff");
    m[8..].copy_from_slice(&nonce.to_le_bytes());
    m
}

/// The worker side, after a task (or the initializer) with this id ran and before its result
/// is written: flushes what the task left buffered, then writes the marker.
pub(crate) fn end_of_task(magic: &[u8; MAGIC_LEN], id: u64) {
    use std::io::Write;
    // SAFETY: `fflush(NULL)` flushes every C output stream; it has no preconditions.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    let mut marker = [0u8; MARKER_LEN];
    marker[..MAGIC_LEN].copy_from_slice(magic);
    marker[MAGIC_LEN..].copy_from_slice(&id.to_le_bytes());
    let mut out = std::io::stdout().lock();
    let _ = out.flush();
    // One `write` of its own, not through `out`'s line buffer (which would write up to a
    // newline byte, and the id may hold one, then the rest): a pipe takes a write this small
    // whole, so the marker is never torn, even by a kill. A task that closed its standard
    // output gets no marker: the parent copes (above).
    let _ = sys::write(out.as_fd(), &marker);
}

/// The last `limit` bytes of one task's output, and how many it printed in all.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8], limit: usize) {
        self.total += data.len() as u64;
        if data.len() >= limit {
            self.bytes.clear();
            self.bytes.extend_from_slice(&data[data.len() - limit..]);
            return;
        }
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > 2 * limit.max(4096) {
            self.trim(limit);
        }
    }

    fn trim(&mut self, limit: usize) {
        if self.bytes.len() > limit {
            self.bytes.drain(..self.bytes.len() - limit);
        }
    }

    fn into_output(mut self, limit: usize) -> TaskOutput {
        self.trim(limit);
        TaskOutput::new(self.bytes, self.total)
    }
}

/// The parent side: one worker's output pipe, cut into tasks at the markers.
pub(crate) struct Capture {
    fd: OwnedFd,
    magic: [u8; MAGIC_LEN],
    limit: usize,
    /// The read buffer: `carry` bytes that may begin a marker, then what the next read brings.
    buf: Vec<u8>,
    carry: usize,
    /// What was printed since the last marker.
    current: Tail,
    /// Output closed by a marker, by task id, not yet claimed by its task's result.
    segments: VecDeque<(u64, Tail)>,
    /// The last read found the pipe empty, or at its end.
    drained: bool,
    eof: bool,
}

impl Capture {
    /// `fd`: the output pipe's read end (made non-blocking here).
    pub(crate) fn new(fd: OwnedFd, nonce: u64, limit: usize) -> io::Result<Self> {
        sys::set_nonblocking(fd.as_fd())?;
        Ok(Capture {
            fd,
            magic: magic(nonce),
            limit,
            buf: Vec::new(),
            carry: 0,
            current: Tail::default(),
            segments: VecDeque::new(),
            drained: true,
            eof: false,
        })
    }

    /// The descriptor to poll (`None` once at its end).
    pub(crate) fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.eof).then(|| self.fd.as_fd())
    }

    /// Reads what the pipe holds now (never blocks), up to a budget: a round's, or, for a
    /// worker that died, everything it left.
    pub(crate) fn read(&mut self, dead: bool, forward: &mut Vec<u8>) {
        if self.eof {
            self.drained = true;
            return;
        }
        let budget = if dead { DEATH_BUDGET } else { READ_BUDGET };
        if self.buf.len() < 64 * 1024 {
            self.buf.resize(64 * 1024, 0);
        }
        let mut read = 0;
        self.drained = false;
        while read < budget {
            match sys::read(self.fd.as_fd(), &mut self.buf[self.carry..]) {
                Ok(0) => {
                    self.eof = true;
                    self.drained = true;
                    break;
                }
                Ok(n) => {
                    read += n;
                    let len = self.carry + n;
                    self.scan(len, forward);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    break;
                }
                Err(_) => {
                    self.eof = true;
                    self.drained = true;
                    break;
                }
            }
        }
        if self.eof && self.carry > 0 {
            // A marker cut short by the end: it was output after all.
            let c = self.carry;
            self.current.push(&self.buf[..c], self.limit);
            self.carry = 0;
        }
    }

    /// Cuts `buf[..len]` at the markers; keeps a possible marker's beginning for later.
    fn scan(&mut self, len: usize, forward: &mut Vec<u8>) {
        let Capture {
            buf,
            magic,
            limit,
            current,
            segments,
            carry,
            ..
        } = self;
        let limit = *limit;
        let b = &buf[..len];
        let mut from = 0; // the first byte not yet given to a task
        let mut at = 0; // where to look for the next marker
        *carry = 0;
        while let Some(k) = b[at..].iter().position(|&x| x == magic[0]) {
            let i = at + k;
            let avail = len - i;
            if avail >= MARKER_LEN {
                if b[i..i + MAGIC_LEN] == magic[..] {
                    current.push(&b[from..i], limit);
                    let id = u64::from_le_bytes(
                        b[i + MAGIC_LEN..i + MARKER_LEN]
                            .try_into()
                            .expect("8 bytes"),
                    );
                    let mut done = std::mem::take(current);
                    done.trim(limit);
                    segments.push_back((id, done));
                    if segments.len() > MAX_SEGMENTS {
                        if let Some((_, stray)) = segments.pop_front() {
                            forward.extend_from_slice(&stray.bytes);
                        }
                    }
                    from = i + MARKER_LEN;
                    at = from;
                } else {
                    at = i + 1;
                }
            } else if b[i..].starts_with(&magic[..avail.min(MAGIC_LEN)]) {
                // Perhaps a marker, cut by the read: keep it for the next one.
                current.push(&b[from..i], limit);
                buf.copy_within(i..len, 0);
                *carry = avail;
                return;
            } else {
                at = i + 1;
            }
        }
        current.push(&b[from..len], limit);
    }

    /// True if the last read stopped at its budget, not at the pipe's end: there may be
    /// more to read (and a result may wait for it).
    pub(crate) fn behind(&self) -> bool {
        !self.drained && !self.eof
    }

    /// True once the output of task `id`, whose result has been read, is all in: its marker
    /// was read, or the pipe was read empty after the result.
    pub(crate) fn ready_for(&self, id: u64) -> bool {
        self.drained || self.segments.iter().any(|(s, _)| *s == id)
    }

    /// The output of task `id` (its result came). Output closed before it by markers of
    /// other tasks (no longer expected: a task's forgery, or a revoked task) is forwarded.
    pub(crate) fn take(&mut self, id: u64, forward: &mut Vec<u8>) -> TaskOutput {
        match self.segments.iter().position(|(s, _)| *s == id) {
            Some(i) => {
                for (_, stray) in self.segments.drain(..i) {
                    forward.extend_from_slice(&stray.bytes);
                }
                let (_, tail) = self.segments.pop_front().expect("found above");
                tail.into_output(self.limit)
            }
            // No marker (the task closed its standard output): nothing is known to be its.
            None => TaskOutput::new(Vec::new(), 0),
        }
    }

    /// The worker died: what it printed since its last marker (the dying task's output).
    /// Segments no task claimed are forwarded.
    pub(crate) fn take_rest(&mut self, forward: &mut Vec<u8>) -> TaskOutput {
        for (_, stray) in self.segments.drain(..) {
            forward.extend_from_slice(&stray.bytes);
        }
        if self.carry > 0 {
            let c = self.carry;
            self.current.push(&self.buf[..c], self.limit);
            self.carry = 0;
        }
        std::mem::take(&mut self.current).into_output(self.limit)
    }
}

/// Writes forwarded output where uncaptured output goes (`fd`: the pool's stdout target;
/// `None`: this process's standard output). Errors are ignored: there is no one to tell.
pub(crate) fn forward(fd: Option<BorrowedFd<'_>>, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    match fd {
        Some(fd) => {
            let _ = sys::write_all(fd, bytes);
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        }
    }
    bytes.clear();
    if bytes.capacity() > 1 << 20 {
        *bytes = Vec::new();
    }
}
