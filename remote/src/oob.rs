//! Out of band: how a transport with shared memory (the process pool) carries large
//! payloads and shared data beside its frames. A transport without it (MPI across hosts)
//! needs none of this: every frame is then self-contained.
//!
//! # Out-of-line payloads
//!
//! A transport that can pass large payloads in shared memory implements [`OutOfLine`] and
//! gives it to the job constructors ([`job::call_with`](crate::job::call_with), ...) on the
//! parent's side and, through [`Command`](crate::serve::Command), to the serve loop on the
//! worker's side. A payload of at least [`OutOfLine::threshold`] bytes is then encoded
//! straight into the buffer the transport returns from [`OutOfLine::payload`] (a segment),
//! and the frame carries, after its header, an extension ([`Ext`](crate::wire::Ext)) that
//! says so; smaller payloads stay in the frame. The transport sends the segment beside the
//! frame (the process pool: its descriptor over a socket) and the receiver's transport
//! resolves it before the payload is decoded.
//!
//! # Attachments: shared data
//!
//! A [`SharedSlice`](crate::bulk::SharedSlice) inside a payload travels as a reference —
//! an index into the frame's *attachments* — when it is encoded for a transport that has
//! [`OutOfLine`]; the transport sends each attachment's descriptor
//! ([`Attachment::fd`]) beside the frame, after the payload segment's, and hands the
//! received descriptors to the decoder ([`Command::attachments`](crate::serve::Command),
//! [`Received`](crate::job::Received)). Without a transport that carries them, a
//! `SharedSlice` is encoded as its bytes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bulk::Segment;

/// Where a transport puts large payloads: out of line, in a buffer of its own (a
/// shared-memory segment).
pub trait OutOfLine {
    /// Payloads of at least this many bytes are offered to [`payload`](Self::payload).
    fn threshold(&self) -> usize;

    /// A buffer of exactly `len` bytes for the payload being encoded, and a byte of the
    /// transport's own that the frame carries (the process pool: which word the receiver
    /// clears to release the segment); `None` keeps the payload in the frame. The frame's
    /// extension says whether the last buffer handed out is used (an encoding that fails
    /// falls back to an in-band error).
    fn payload(&mut self, len: usize) -> Option<(&mut [u8], u8)>;

    /// The shared data the frame's payload refers to, in the order of the indices it
    /// holds: their descriptors must travel with the frame (after the payload segment's).
    /// Called once per frame that has any.
    fn attach(&mut self, attachments: Vec<Attachment>);
}

/// Shared data a frame refers to (a [`SharedSlice`](crate::bulk::SharedSlice)'s segment):
/// keeps it alive until the frame is sent.
#[derive(Clone, Debug)]
pub struct Attachment(pub(crate) Arc<Segment>);

impl Attachment {
    /// The descriptor to send beside the frame.
    pub fn fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0.fd)
    }
}

/// The most attachments one frame carries; a payload with more shared data travels the
/// rest as bytes.
pub const MAX_ATTACHMENTS: usize = 32;

thread_local! {
    /// Attachments of the payload being encoded on this thread (`None`: not encoding for a
    /// transport that carries them).
    static SINK: RefCell<Option<Vec<Attachment>>> = const { RefCell::new(None) };
    /// Descriptors that came with the payload being decoded on this thread.
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// The attachments of a frame being decoded: each descriptor, mapped at its first use.
pub(crate) struct Source {
    pub(crate) slots: Vec<SourceSlot>,
    /// Whether the sender is trusted (a worker trusts its verified parent; the parent
    /// trusts no worker): where seals cannot be checked (macOS), untrusted shared data is
    /// copied.
    pub(crate) trusted: bool,
}

pub(crate) enum SourceSlot {
    Fd(OwnedFd),
    Mapped(Arc<Segment>),
    Taken,
}

/// Whether this process has ever held shared data in shared memory (a `SharedSlice` made
/// or mapped here). Until then no value can refer to any, and encoding needs no sink.
static ANY_SHARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes that shared data exists in this process (before any handle to it does).
pub(crate) fn shared_exists() {
    // Relaxed: a value holding the new handle reaches an encoder only through something that
    // synchronises (a channel, a join, a lock), so this store happens before the encoder's
    // load, which then reads it (coherence).
    ANY_SHARED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Runs `encode` with an attachment sink on this thread: `SharedSlice`s encoded inside
/// become references. Returns what `encode` returned and the attachments. The previous
/// state is restored, also if `encode` panics.
pub(crate) fn with_sink<R>(encode: impl FnOnce() -> R) -> (R, Vec<Attachment>) {
    // Relaxed: see `shared_exists`.
    if !ANY_SHARED.load(std::sync::atomic::Ordering::Relaxed) {
        // Nothing to attach (tiny tasks pay nothing for the sink).
        return (encode(), Vec::new());
    }
    struct Restore(Option<Vec<Attachment>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            SINK.with(|s| *s.borrow_mut() = prev);
        }
    }
    let prev = SINK.with(|s| s.borrow_mut().replace(Vec::new()));
    let restore = Restore(prev);
    let r = encode();
    let got = SINK
        .with(|s| s.borrow_mut().replace(Vec::new()))
        .unwrap_or_default();
    drop(restore);
    (r, got)
}

/// Drops the attachments collected so far (an encoding pass is about to be repeated).
pub(crate) fn reset_sink() {
    SINK.with(|s| {
        if let Some(v) = s.borrow_mut().as_mut() {
            v.clear();
        }
    });
}

/// Registers `seg` with the sink of this thread: its index among the frame's attachments,
/// or `None` if no sink is installed (or the frame has all it may carry).
pub(crate) fn attach(seg: &Arc<Segment>) -> Option<u32> {
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let v = s.as_mut()?;
        if let Some(i) = v.iter().position(|a| Arc::ptr_eq(&a.0, seg)) {
            return Some(i as u32);
        }
        if v.len() >= MAX_ATTACHMENTS {
            return None;
        }
        v.push(Attachment(seg.clone()));
        Some(v.len() as u32 - 1)
    })
}

/// Runs `decode` with the descriptors that came with the frame (`trusted`: see [`Source`]);
/// those it does not claim are closed afterwards.
pub(crate) fn with_source<R>(fds: Vec<OwnedFd>, trusted: bool, decode: impl FnOnce() -> R) -> R {
    if fds.is_empty() {
        // (A reference decoded without descriptors is an error either way.)
        return decode();
    }
    struct Restore(Option<Source>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = prev);
        }
    }
    let source = Source {
        slots: fds.into_iter().map(SourceSlot::Fd).collect(),
        trusted,
    };
    let prev = SOURCE.with(|s| s.borrow_mut().replace(source));
    let _restore = Restore(prev);
    decode()
}

/// Applies `f` to the source of this thread (`None` outside [`with_source`]).
pub(crate) fn source<R>(f: impl FnOnce(Option<&mut Source>) -> R) -> R {
    SOURCE.with(|s| f(s.borrow_mut().as_mut()))
}

// ---------------------------------------------------------------------------------------
// Workers keep the shared data they read recently mapped.

/// Segments decoded recently in this process, kept mapped so that the next task naming
/// the same shared data does not map it again (the first touch of a fresh mapping costs a
/// page fault per 64 KiB): at most `max`, each for at most `idle` after its last use.
struct Recent {
    max: usize,
    idle: Duration,
    kept: VecDeque<(Arc<Segment>, Instant)>,
}

static RECENT: Mutex<Option<Recent>> = Mutex::new(None);

/// How many segments `RECENT` keeps (read without its lock, so that a process that keeps
/// none pays nothing to trim them).
static KEPT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Keeps the shared data this process decodes mapped for later frames: at most `max`
/// segments, each dropped once unused for `idle` (see [`trim_shared`]). A worker process
/// turns it on; in the parent, the last handle's drop frees shared data at once.
///
/// So a segment's memory is freed when its last handle in any process is dropped, and at
/// most `idle` later in the workers that read it.
pub fn keep_shared(max: usize, idle: Duration) {
    let mut r = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    *r = Some(Recent {
        max,
        idle,
        kept: VecDeque::new(),
    });
}

/// Drops the kept segments unused for their idle time; returns when the next one expires
/// (`None`: none kept).
pub fn trim_shared(now: Instant) -> Option<Instant> {
    // Relaxed: a hint; the count is exact under the lock, and the one thread that decodes
    // in a worker (the one that trims) counted what it kept.
    if KEPT.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return None;
    }
    let mut r = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    let r = r.as_mut()?;
    let idle = r.idle;
    r.kept
        .retain(|(_, at)| now.saturating_duration_since(*at) < idle);
    KEPT.store(r.kept.len(), std::sync::atomic::Ordering::Relaxed);
    r.kept.iter().map(|(_, at)| *at + idle).min()
}

/// Whether this process keeps any shared data mapped (see [`keep_shared`]).
pub fn keeps_shared() -> bool {
    // Relaxed: see `trim_shared`.
    KEPT.load(std::sync::atomic::Ordering::Relaxed) > 0
}

/// Notes a use of `seg` (decoded here), if [`keep_shared`] is on.
pub(crate) fn used(seg: &Arc<Segment>) {
    let mut r = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    let Some(r) = r.as_mut() else {
        return;
    };
    let now = Instant::now();
    r.kept.retain(|(s, _)| !Arc::ptr_eq(s, seg));
    r.kept.push_back((seg.clone(), now));
    while r.kept.len() > r.max {
        r.kept.pop_front();
    }
    KEPT.store(r.kept.len(), std::sync::atomic::Ordering::Relaxed);
}
