//! Large payloads through shared memory: the pool's segments, and the descriptors that
//! travel beside the frames.
//!
//! A payload of at least the pool's threshold (64 KiB by default,
//! [`Builder::shared_memory_threshold`](crate::Builder::shared_memory_threshold)) is
//! encoded straight into a *segment* (a sealable memfd; an unlinked POSIX shared-memory
//! object elsewhere) instead of the frame, and the frame carries an extension saying so
//! (`cfutures_remote::wire::Ext`). The segment's descriptor — and those of the
//! `SharedSlice`s the payload refers to — cross on the worker's *control socket* with one
//! `sendmsg` (`SCM_RIGHTS`) just before the frame's first byte is written to the pipe; the
//! receiver, on a frame whose extension says `k` descriptors, takes the next `k` from the
//! socket (they are already there: they were sent first). Small frames never touch the
//! socket, so tiny tasks keep the pipes' round trip.
//!
//! # Who owns what
//!
//! * **Argument segments** ([`ArgSegments`]): made by the submitting thread, one pool per
//!   process pool, reused (best fit; at most [`RETAIN`] bytes of free segments, freed after
//!   [`IDLE`] unused). A job holds its segment ([`Lease`]) until its result is in; only
//!   then may the segment be written again (the worker that ran the job decoded its
//!   argument before it sent the result, and no other worker has it). A job that ends any
//!   other way (its worker died or was killed, the pool broke, it was cancelled) frees its
//!   segment instead: the parent's unmapping does not touch what a dying worker may still
//!   read. Workers get a read-only descriptor (Linux: the memfd reopened through `/proc`),
//!   and map it read-only, cached by file identity ([`MapCache`]).
//! * **Result segments** ([`ResultSegments`]): made by the worker, at most
//!   [`RELEASE_SLOTS`] of them reused, each with a word on the claim page: the worker sets
//!   it before it sends a result in that segment, the parent clears it once it has
//!   decoded the result ([`Release`]), and the worker writes a segment only while its word
//!   is clear. The parent maps them read-only, cached by identity (`ResultMaps`), and
//!   reads them only by raw copies (a task could still scribble on its own segment: a
//!   `&[u8]` over it in the parent would not be sound). A result larger than [`RETAIN`], or
//!   one that finds every slot busy, goes in a one-shot segment the worker drops as soon as
//!   it is sent.
//! * Every segment is sealed against shrinking (a file cut under a mapping turns the next
//!   access into `SIGBUS`), and a receiver checks it (and the file's size against the
//!   payload's) before it maps anything.
//! * A segment lives while any process holds a descriptor or a mapping of it; the kernel
//!   frees it with the last, also when processes are killed. Nothing is ever named in the
//!   filesystem on Linux (`/dev/shm` stays empty).

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cfutures_remote::oob::{Attachment, OutOfLine, MAX_ATTACHMENTS};
use cfutures_remote::shm::{self, Mapping};
use cfutures_remote::wire::{Ext, Placement};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::claims::{ClaimPage, RELEASE_SLOTS};

/// The default threshold: payloads of at least this many bytes go through shared memory.
/// (Measured: below it a segment's bookkeeping costs more than the pipe's copies; see
/// `BENCHMARKS.md`.)
pub(crate) const DEFAULT_THRESHOLD: usize = 64 << 10;
/// The most bytes of idle segments each side keeps for reuse (per pool for arguments, per
/// worker for results and for mappings); a larger segment is used once.
pub(crate) const RETAIN: usize = 64 << 20;
/// How long an unused segment (or a cached mapping) is kept.
pub(crate) const IDLE: Duration = Duration::from_secs(1);
/// The tag of a result segment that has no release slot (used once).
pub(crate) const ONE_SHOT: u8 = 0xff;
/// The most descriptors one frame carries: its payload segment and its attachments.
pub(crate) const MAX_FDS: usize = 1 + MAX_ATTACHMENTS;

/// A segment's size for a payload of `len` bytes: powers of two up to 1 MiB, then whole
/// MiB (so that one segment serves payloads of similar sizes).
fn capacity(len: usize) -> usize {
    if len <= 1 << 20 {
        len.next_power_of_two().max(DEFAULT_THRESHOLD)
    } else {
        len.div_ceil(1 << 20) << 20
    }
}

/// A segment and its writer's mapping.
struct Seg {
    /// The descriptor readers get: read-only if one could be made (the writer keeps only
    /// its mapping, which keeps the file alive: one descriptor per segment).
    fd: OwnedFd,
    map: Mapping,
}

impl Seg {
    fn create(name: &std::ffi::CStr, cap: usize, read_only: bool) -> io::Result<Seg> {
        let (fd, ro) = shm::create_pair(name, cap, read_only)?;
        shm::seal_against_shrinking(fd.as_fd())?;
        let map = Mapping::map_rw(fd.as_fd(), cap)?;
        Ok(Seg {
            fd: ro.unwrap_or(fd),
            map,
        })
    }

    fn cap(&self) -> usize {
        self.map.len()
    }

    /// The descriptor to give a reader.
    fn reader_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// ---------------------------------------------------------------------------------------
// Parent: argument segments.

/// The most argument segments in use at once (in queued and running jobs), per pool: each
/// holds a descriptor, and a program that queues thousands of large tasks must not run out
/// of them. Past it, payloads stay in their frames.
pub(crate) const MAX_IN_USE: usize = 128;

/// The pool's argument segments not in use.
pub(crate) struct ArgSegments {
    threshold: usize,
    free: Mutex<Free>,
    /// Segments held by jobs.
    in_use: std::sync::atomic::AtomicUsize,
    /// Whether `free.segs` is not empty (read without the lock by [`trim`](Self::trim),
    /// which the I/O thread calls at every turn).
    has_free: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Free {
    segs: Vec<Seg>,
    last_use: Option<Instant>,
}

impl ArgSegments {
    pub(crate) fn new(threshold: usize) -> Arc<Self> {
        Arc::new(ArgSegments {
            threshold,
            free: Mutex::new(Free::default()),
            in_use: std::sync::atomic::AtomicUsize::new(0),
            has_free: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn threshold(&self) -> usize {
        self.threshold
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A segment of at least `len` bytes: the smallest free one that fits, or a new one
    /// (unless [`MAX_IN_USE`] are in use).
    fn take(self: &Arc<Self>, len: usize) -> io::Result<Lease> {
        use std::sync::atomic::Ordering::Relaxed;
        // Relaxed: a count; no memory is published through it.
        if self.in_use.fetch_add(1, Relaxed) >= MAX_IN_USE {
            self.in_use.fetch_sub(1, Relaxed);
            return Err(io::Error::other("too many segments in use"));
        }
        let lease = self.take_counted(len);
        if lease.is_err() {
            self.in_use.fetch_sub(1, Relaxed);
        }
        lease
    }

    fn take_counted(self: &Arc<Self>, len: usize) -> io::Result<Lease> {
        let found = {
            let mut f = self.lock();
            f.last_use = Some(Instant::now());
            let best = (0..f.segs.len())
                .filter(|&i| f.segs[i].cap() >= len)
                .min_by_key(|&i| f.segs[i].cap());
            let found = best.map(|i| f.segs.swap_remove(i));
            self.note_free(&f);
            found
        };
        let seg = match found {
            Some(s) => s,
            None => Seg::create(c"cfutures-arg", capacity(len), true)?,
        };
        Ok(Lease {
            seg: Some(seg),
            pool: self.clone(),
            returnable: false,
        })
    }

    fn put(&self, seg: Seg) {
        if seg.cap() > RETAIN {
            return;
        }
        let mut f = self.lock();
        f.last_use = Some(Instant::now());
        f.segs.push(seg);
        // Keep at most RETAIN bytes: the largest go first.
        while f.segs.iter().map(Seg::cap).sum::<usize>() > RETAIN {
            let i = (0..f.segs.len())
                .max_by_key(|&i| f.segs[i].cap())
                .expect("not empty");
            f.segs.swap_remove(i);
        }
        self.note_free(&f);
    }

    fn note_free(&self, f: &Free) {
        // Relaxed: a hint; a segment put back concurrently is trimmed at a later turn.
        self.has_free
            .store(!f.segs.is_empty(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Frees the free segments once unused for [`IDLE`]; when to look again (`None`:
    /// nothing kept).
    pub(crate) fn trim(&self, now: Instant) -> Option<Instant> {
        if !self.has_free.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let mut f = self.lock();
        if f.segs.is_empty() {
            return None;
        }
        let due = f.last_use.map_or(now, |t| t + IDLE);
        if now >= due {
            f.segs.clear();
            self.note_free(&f);
            return None;
        }
        Some(due)
    }
}

/// An argument segment held by a job. Dropped: back to the pool if the job's result came
/// in ([`Bulk::result_in`]), else freed.
pub(crate) struct Lease {
    seg: Option<Seg>,
    pool: Arc<ArgSegments>,
    returnable: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(seg) = self.seg.take() {
            if self.returnable {
                self.pool.put(seg);
            }
        }
        self.pool
            .in_use
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a job sends beside its frame: its payload segment and its attachments.
pub(crate) struct Bulk {
    lease: Option<Lease>,
    attachments: Vec<Attachment>,
    /// Its descriptors went to the worker whose window holds it (reset when it enters a
    /// window).
    pub(crate) announced: bool,
}

impl Bulk {
    /// The descriptors to send, in the order the frame names them.
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = Vec::with_capacity(1 + self.attachments.len());
        if let Some(seg) = self.lease.as_ref().and_then(|l| l.seg.as_ref()) {
            v.push(seg.reader_fd());
        }
        v.extend(self.attachments.iter().map(Attachment::fd));
        v
    }

    /// The job's result came in: its worker has read the argument; the segment may be
    /// written again once the job is dropped.
    pub(crate) fn result_in(&mut self) {
        if let Some(l) = &mut self.lease {
            l.returnable = true;
        }
    }

    /// Sends the descriptors on `ctl` (non-blocking), just before the frame is written.
    pub(crate) fn announce(&mut self, ctl: BorrowedFd<'_>) -> io::Result<()> {
        send_fds(ctl, &self.fds())?;
        self.announced = true;
        Ok(())
    }
}

/// The out-of-line sink of one submission (parent side).
pub(crate) struct ArgSink<'a> {
    pool: &'a Arc<ArgSegments>,
    lease: Option<Lease>,
    attachments: Vec<Attachment>,
}

impl<'a> ArgSink<'a> {
    pub(crate) fn new(pool: &'a Arc<ArgSegments>) -> Self {
        ArgSink {
            pool,
            lease: None,
            attachments: Vec::new(),
        }
    }

    /// What the encoded `frame` needs beside it (`None` for a self-contained frame).
    pub(crate) fn finish(self, frame: &[u8]) -> Option<Box<Bulk>> {
        let ext = match cfutures_remote::wire::Ext::of_command(frame) {
            Ok((Some(ext), _)) => ext,
            _ => return None,
        };
        let lease = match ext.payload {
            Placement::Segment { .. } => self.lease,
            _ => None,
        };
        Some(Box::new(Bulk {
            lease,
            attachments: self.attachments,
            announced: false,
        }))
    }
}

impl OutOfLine for ArgSink<'_> {
    fn threshold(&self) -> usize {
        self.pool.threshold()
    }

    fn payload(&mut self, len: usize) -> Option<(&mut [u8], u8)> {
        // (A failure to make a segment — descriptors or memory exhausted — keeps the
        // payload in the frame, as if it were small.)
        self.lease = Some(self.pool.take(len).ok()?);
        let seg = self.lease.as_mut()?.seg.as_mut()?;
        // SAFETY: a free segment is mapped by no worker for a job: it was freshly made, or
        // returned to the pool after the result of the job that used it came in (its
        // worker had decoded the argument before sending the result, and it is handed to
        // no one until this job is sent). Workers may still hold read-only mappings of it
        // in their caches, but read them only for a job that names it. So no other process
        // reads or writes it during this borrow.
        let buf = unsafe { seg.map.as_mut_slice() };
        Some((&mut buf[..len], 0))
    }

    fn attach(&mut self, attachments: Vec<Attachment>) {
        self.attachments = attachments;
    }
}

// ---------------------------------------------------------------------------------------
// Descriptors beside frames.

/// Sends `fds` with one byte on the control socket, in one `sendmsg` (non-blocking on the
/// parent's end: `WouldBlock` then).
pub(crate) fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    debug_assert!(!fds.is_empty() && fds.len() <= MAX_FDS);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = SendFlags::DONTWAIT;
    loop {
        match rustix::net::sendmsg(sock, &[IoSlice::new(&[0])], &mut cmsg, flags) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The receiving end of a control socket: descriptors in the order they came.
///
/// Every message is one byte with the descriptors of one frame (see [`send_fds`]), and
/// each `recvmsg` reads one byte, so it returns exactly one message's descriptors. The
/// receiver of a frame that says `k` descriptors takes the next `k` in order: those are
/// its own, because every earlier frame took its own, and its own were sent before its
/// first byte.
#[derive(Default)]
pub(crate) struct FdQueue {
    fifo: VecDeque<OwnedFd>,
}

impl FdQueue {
    /// The next `k` descriptors, receiving as needed (`block`: wait for them; else they
    /// must be there already).
    ///
    /// # Errors
    ///
    /// If they do not come: the stream is out of sync (or the peer is gone).
    pub(crate) fn take(
        &mut self,
        sock: BorrowedFd<'_>,
        k: usize,
        block: bool,
    ) -> Result<Vec<OwnedFd>, String> {
        while self.fifo.len() < k {
            if self.fifo.len() > 4 * MAX_FDS {
                return Err("too many descriptors on the control socket".into());
            }
            match self.recv(sock, block) {
                Ok(true) => {}
                Ok(false) => {
                    return Err("the descriptors the frame names did not come".into());
                }
                Err(e) => return Err(format!("the control socket failed: {e}")),
            }
        }
        Ok(self.fifo.drain(..k).collect())
    }

    /// One message; `false` if there is none (non-blocking) or the peer is gone.
    fn recv(&mut self, sock: BorrowedFd<'_>, block: bool) -> io::Result<bool> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let mut flags = RecvFlags::CMSG_CLOEXEC;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let mut flags = RecvFlags::empty();
        if !block {
            flags |= RecvFlags::DONTWAIT;
        }
        let r = loop {
            match rustix::net::recvmsg(sock, &mut [IoSliceMut::new(&mut byte)], &mut cmsg, flags) {
                Ok(r) => break r,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        };
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for fd in fds {
                    #[cfg(not(any(target_os = "linux", target_os = "android")))]
                    let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
                    self.fifo.push_back(fd);
                }
            }
        }
        if r.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "descriptors were cut off",
            ));
        }
        Ok(r.bytes == 1)
    }
}

/// How many descriptors a frame with `ext` brings.
pub(crate) fn fd_count(ext: &Ext) -> usize {
    usize::from(ext.attachments) + usize::from(matches!(ext.payload, Placement::Segment { .. }))
}

// ---------------------------------------------------------------------------------------
// Mappings of the other side's segments.

/// Read-only mappings of segments another process writes, cached by file identity: at
/// most four, at most [`RETAIN`] bytes, each for at most [`IDLE`] after its last use.
#[derive(Default)]
pub(crate) struct MapCache {
    maps: Vec<Cached>,
}

struct Cached {
    ident: (u64, u64),
    map: Arc<Mapping>,
    used: Instant,
}

impl MapCache {
    /// A read-only mapping of `fd`, which must hold at least `len` bytes and be sealed
    /// against shrinking.
    pub(crate) fn map(&mut self, fd: OwnedFd, len: u64) -> Result<Arc<Mapping>, String> {
        let st = shm::stat(fd.as_fd()).map_err(|e| e.to_string())?;
        if !shm::cannot_shrink(fd.as_fd(), &st) {
            return Err("a payload segment that is not a sealed shared-memory file".into());
        }
        let (ident, size) = (st.identity, st.size);
        if size < len || usize::try_from(size).is_err() {
            return Err(format!(
                "a payload of {len} bytes in a segment of {size} bytes"
            ));
        }
        let now = Instant::now();
        if let Some(c) = self
            .maps
            .iter_mut()
            .find(|c| c.ident == ident && c.map.len() as u64 >= len)
        {
            c.used = now;
            return Ok(c.map.clone());
        }
        let map = Arc::new(Mapping::map_ro(fd.as_fd(), size as usize).map_err(|e| e.to_string())?);
        if map.len() <= RETAIN {
            self.maps.retain(|c| c.ident != ident);
            self.maps.push(Cached {
                ident,
                map: map.clone(),
                used: now,
            });
            while self.maps.len() > 4
                || self.maps.iter().map(|c| c.map.len()).sum::<usize>() > RETAIN
            {
                // The least recently used goes.
                let i = (0..self.maps.len())
                    .min_by_key(|&i| self.maps[i].used)
                    .expect("not empty");
                self.maps.remove(i);
            }
        }
        Ok(map)
    }

    /// Whether it keeps no mapping.
    pub(crate) fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// Drops the mappings unused for [`IDLE`]; when to look again.
    pub(crate) fn trim(&mut self, now: Instant) -> Option<Instant> {
        self.maps
            .retain(|c| now.saturating_duration_since(c.used) < IDLE);
        self.maps.iter().map(|c| c.used + IDLE).min()
    }
}

/// What keeps a result payload mapped until it is decoded, then releases its segment to
/// the worker (clears its word on the claim page).
pub(crate) struct Release {
    pub(crate) _map: Arc<Mapping>,
    pub(crate) claims: Arc<ClaimPage>,
    pub(crate) slot: u8,
}

impl Drop for Release {
    fn drop(&mut self) {
        if usize::from(self.slot) < RELEASE_SLOTS {
            self.claims.release(usize::from(self.slot));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Worker: result segments.

struct ResSeg {
    seg: Seg,
    last_use: Instant,
}

/// The worker's result segments (see the module doc).
pub(crate) struct ResultSegments {
    threshold: usize,
    slots: Vec<Option<ResSeg>>,
    /// A segment used once (no slot free, or too large to keep), until it is sent.
    one_shot: Option<Seg>,
    /// The slot (or [`ONE_SHOT`]) the last `payload` handed out.
    reserved: Option<u8>,
    attachments: Vec<Attachment>,
    /// The claim page, whose release words say which segments the parent still reads.
    pub(crate) claims: Option<Arc<ClaimPage>>,
}

impl ResultSegments {
    pub(crate) fn new(threshold: usize) -> Self {
        ResultSegments {
            threshold,
            slots: (0..RELEASE_SLOTS).map(|_| None).collect(),
            one_shot: None,
            reserved: None,
            attachments: Vec::new(),
            claims: None,
        }
    }

    fn is_free(&self, k: usize) -> bool {
        self.claims.as_ref().is_some_and(|c| c.is_released(k))
    }

    /// Sends what the result frame's extension names (before the frame), and marks its
    /// segment busy until the parent releases it.
    pub(crate) fn send_beside(&mut self, ctl: BorrowedFd<'_>, ext: &Ext) -> io::Result<()> {
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        if let Placement::Segment { tag, .. } = ext.payload {
            let seg = if tag == ONE_SHOT {
                self.one_shot.as_ref()
            } else {
                self.slots
                    .get(usize::from(tag))
                    .and_then(Option::as_ref)
                    .map(|r| &r.seg)
            };
            let seg = seg.ok_or_else(|| io::Error::other("a result names no segment"))?;
            fds.push(seg.fd.as_fd());
            if tag != ONE_SHOT {
                if let Some(c) = &self.claims {
                    c.mark_busy(usize::from(tag));
                }
            }
        }
        fds.extend(self.attachments.iter().map(Attachment::fd));
        if fds.is_empty() {
            return Ok(());
        }
        // The worker's end blocks: the parent reads it whenever it reads a frame.
        send_fds_blocking(ctl, &fds)
    }

    /// After a result frame is sent (or dropped): forgets what it carried.
    pub(crate) fn sent(&mut self) {
        self.one_shot = None;
        self.reserved = None;
        self.attachments.clear();
    }

    /// Whether it keeps no segment.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Frees the segments released and unused for [`IDLE`]; when to look again.
    pub(crate) fn trim(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for k in 0..self.slots.len() {
            if let Some(r) = &self.slots[k] {
                if now.saturating_duration_since(r.last_use) >= IDLE && self.is_free(k) {
                    self.slots[k] = None;
                } else {
                    let at = r.last_use + IDLE;
                    next = Some(next.map_or(at, |n: Instant| n.min(at)));
                }
            }
        }
        next
    }
}

/// [`send_fds`] on a blocking socket.
fn send_fds_blocking(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    loop {
        match send_fds(sock, fds) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // (The worker's end is blocking, so this does not happen; but never spin.)
                let mut p = [rustix::event::PollFd::new(
                    &sock,
                    rustix::event::PollFlags::OUT,
                )];
                let _ = rustix::event::poll(&mut p, None);
            }
            r => return r,
        }
    }
}

impl OutOfLine for ResultSegments {
    fn threshold(&self) -> usize {
        self.threshold
    }

    fn payload(&mut self, len: usize) -> Option<(&mut [u8], u8)> {
        self.reserved = None;
        self.one_shot = None;
        let now = Instant::now();
        let cap = capacity(len);
        // A released segment that fits; else an empty slot (or a released one too small,
        // replaced), within RETAIN; else one used once.
        let fits = (0..self.slots.len()).find(|&k| {
            self.is_free(k) && self.slots[k].as_ref().is_some_and(|r| r.seg.cap() >= len)
        });
        let k = match fits {
            Some(k) => Some(k),
            None if cap <= RETAIN => {
                // Make room: released segments go (they are too small), until this one
                // fits within RETAIN.
                let mut kept: usize = self.slots.iter().flatten().map(|r| r.seg.cap()).sum();
                for k in 0..self.slots.len() {
                    if kept + cap <= RETAIN {
                        break;
                    }
                    if self.is_free(k) {
                        if let Some(r) = self.slots[k].take() {
                            kept -= r.seg.cap();
                        }
                    }
                }
                let empty = (0..self.slots.len()).find(|&k| self.slots[k].is_none());
                match empty {
                    Some(k) if kept + cap <= RETAIN => {
                        Seg::create(c"cfutures-result", cap, false).ok().map(|seg| {
                            self.slots[k] = Some(ResSeg { seg, last_use: now });
                            k
                        })
                    }
                    _ => None,
                }
            }
            None => None,
        };
        let (seg, tag) = match k {
            Some(k) => {
                let r = self.slots[k].as_mut()?;
                r.last_use = now;
                (&mut r.seg, k as u8)
            }
            None => {
                self.one_shot = Some(Seg::create(c"cfutures-result", cap, false).ok()?);
                (self.one_shot.as_mut()?, ONE_SHOT)
            }
        };
        self.reserved = Some(tag);
        // SAFETY: the segment is this worker's; the parent reads it only between our
        // sending a result in it and its clearing the slot's word, which we checked is
        // clear (Acquire: its reads happened before), or it is brand new. So nobody else
        // reads or writes it during this borrow.
        let buf = unsafe { seg.map.as_mut_slice() };
        Some((&mut buf[..len], tag))
    }

    fn attach(&mut self, attachments: Vec<Attachment>) {
        self.attachments = attachments;
    }
}

#[cfg(test)]
mod test;
