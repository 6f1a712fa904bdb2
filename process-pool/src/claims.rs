//! The claim page: a page of memory shared by the parent and one worker, in which every task
//! sent to that worker is claimed exactly once — by the worker, which then runs it, or by the
//! parent, which takes it back to run it elsewhere.
//!
//! Tasks are written to a worker's command pipe ahead of time (its *window*), so that tiny tasks do
//! not wait for a round trip each. A task written there cannot be unwritten; but it can be
//! *revoked*: the parent takes the task's claim first, and the worker, which claims each task
//! just before it runs it, skips a revoked one without a word. Whoever wins the claim decides,
//! so a task runs at most once, and the parent needs no answer from the worker to take its
//! tasks back — which is the point: a worker that is stopped (`SIGSTOP`), or busy with a task
//! that runs for minutes, cannot answer.
//!
//! # Layout and protocol
//!
//! [`SLOTS`] words of 64 bits. The `n`-th task frame the parent writes to the worker (counting
//! from 0; greetings, pings and the initializer do not count) uses slot `n % SLOTS`, whose
//! word holds `n << 2 | state`:
//!
//! * the parent *publishes* `n << 2 | QUEUED` before the frame's first byte is written;
//! * the worker, reading frame `n`, swaps `QUEUED` for `CLAIMED` and runs it — or finds
//!   `REVOKED` and skips it;
//! * the parent *revokes* by swapping `QUEUED` for `REVOKED`; if the swap fails, the worker
//!   has claimed the task (it is running, or has run).
//!
//! A slot is reused only when the parent knows the worker has read the frame that used it
//! before (`SLOTS` frames later; the parent bounds the frames it has written but does not
//! know read to fewer than `SLOTS`).
//!
//! # Memory ordering
//!
//! The race that matters is between the worker's claim and the parent's revoke of the same
//! word: both are compare-exchanges on one location, so the word's modification order alone
//! decides which one wins; each uses `AcqRel`, which orders nothing else here but keeps the
//! reasoning local. The parent's `Release` publish happens before it writes the frame, and the
//! worker claims after reading the frame; the pipe's write and read (system calls that
//! synchronise in the kernel) carry the publish to the worker before its claim.
//!
//! # Release words
//!
//! After the claim words, [`RELEASE_SLOTS`] words say which of the worker's result segments
//! the parent may still be reading (see `crate::segments`): the worker sets word `k` before
//! it sends a result in its segment `k`; the parent clears it (`Release`) once it has
//! decoded that result; the worker writes segment `k` again only after it sees the word
//! clear (`Acquire`), so the parent's reads happen before the worker's next writes.
//!
//! # Safety of the shared words
//!
//! The page is a `memfd` (Linux) or an unlinked POSIX shared-memory object (elsewhere), sized
//! to a page and mapped `MAP_SHARED` read-write in both processes. It is zero-filled on
//! creation (zero is a valid `u64`), page-aligned (so each word is aligned), and only ever
//! accessed through atomic operations, by both processes: no non-atomic access races with
//! them. The mapping lives as long as the [`ClaimPage`], and every `&AtomicU64` handed out
//! borrows it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

/// The number of claim words in a page.
pub(crate) const SLOTS: u64 = 256;
/// The number of release words, after the claim words: one per result segment a worker
/// keeps (see `crate::segments`).
pub(crate) const RELEASE_SLOTS: usize = 8;
const LEN: usize = 4096;
const _: () = assert!((SLOTS as usize + RELEASE_SLOTS) * 8 <= LEN);

const QUEUED: u64 = 1;
const CLAIMED: u64 = 2;
const REVOKED: u64 = 3;

/// What a worker's claim found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Claimed: run it.
    Run,
    /// The parent took it back: skip it.
    Revoked,
    /// The word does not say this task: the stream and the page disagree.
    Confused,
}

/// A mapped claim page.
pub(crate) struct ClaimPage {
    words: NonNull<AtomicU64>,
    fd: OwnedFd,
}

// SAFETY: the page is only accessed through atomics (see the module doc), so sharing and
// sending the pointer between threads is as safe as sharing `&[AtomicU64]`.
unsafe impl Send for ClaimPage {}
// SAFETY: as above.
unsafe impl Sync for ClaimPage {}

impl ClaimPage {
    /// A new, zeroed page (parent side).
    pub(crate) fn create() -> io::Result<Self> {
        let fd = new_shared_fd()?;
        rustix::fs::ftruncate(&fd, LEN as u64)?;
        // Its size is final: a task in the worker that truncated the file would otherwise
        // make the parent's next access to the page a SIGBUS (a worker's task must never
        // be able to crash the parent). Where there are no seals (shm objects elsewhere),
        // see the note on `map`.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        rustix::fs::fcntl_add_seals(
            &fd,
            rustix::fs::SealFlags::SHRINK
                | rustix::fs::SealFlags::GROW
                | rustix::fs::SealFlags::SEAL,
        )?;
        Self::map(fd)
    }

    /// Maps the page the parent handed over (worker side).
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Self> {
        let st = rustix::fs::fstat(&fd)?;
        if (st.st_size as u64) < LEN as u64 {
            return Err(io::Error::other("the claim page is too small"));
        }
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of `LEN` bytes of `fd` at an address the kernel
        // chooses: it aliases no Rust object, and it is unmapped in `Drop`. The file is at
        // least `LEN` bytes, and on Linux it stays so: the parent seals its size before it
        // maps it (`create`) and the worker checked it (`open`), so no process can shrink
        // it under a mapping. (Without seals, elsewhere, a worker's task that truncates the
        // object could make an access fault: that platform's documented limit.)
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let words = NonNull::new(p.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap"))?;
        Ok(ClaimPage { words, fd })
    }

    /// The descriptor, to hand to the worker.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn word(&self, seq: u64) -> &AtomicU64 {
        let i = (seq % SLOTS) as usize;
        // SAFETY: `i < SLOTS` and `SLOTS * 8 <= LEN`, so the word is inside the mapping,
        // which lives as long as `self`; the memory is only accessed atomically (module doc).
        unsafe { &*self.words.as_ptr().add(i) }
    }

    /// Release word `k` (`k < RELEASE_SLOTS`).
    fn release_word(&self, k: usize) -> &AtomicU64 {
        assert!(k < RELEASE_SLOTS);
        // SAFETY: `SLOTS + k < SLOTS + RELEASE_SLOTS` words fit in the page (checked at
        // compile time above), which lives as long as `self`; the memory is only accessed
        // atomically (module doc).
        unsafe { &*self.words.as_ptr().add(SLOTS as usize + k) }
    }

    /// Worker: it is about to send a result in its segment `k`; the parent reads it until
    /// it [`release`](Self::release)s it.
    pub(crate) fn mark_busy(&self, k: usize) {
        // Relaxed: only this worker reads the word back; the parent only clears it.
        self.release_word(k).store(1, Ordering::Relaxed);
    }

    /// Parent: it has read (decoded) the result in the worker's segment `k`.
    pub(crate) fn release(&self, k: usize) {
        // Release: the parent's reads of the segment happen before the worker, seeing the
        // word clear (Acquire), writes it again.
        self.release_word(k).store(0, Ordering::Release);
    }

    /// Worker: whether segment `k` is not being read by the parent.
    pub(crate) fn is_released(&self, k: usize) -> bool {
        // Acquire: pairs with `release`.
        self.release_word(k).load(Ordering::Acquire) == 0
    }

    /// Parent: task `seq` is about to be written.
    pub(crate) fn publish(&self, seq: u64) {
        self.word(seq).store(seq << 2 | QUEUED, Ordering::Release);
    }

    /// Parent: takes task `seq` back; false if the worker claimed it first.
    pub(crate) fn revoke(&self, seq: u64) -> bool {
        self.word(seq)
            .compare_exchange(
                seq << 2 | QUEUED,
                seq << 2 | REVOKED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Worker: claims task `seq` before running it.
    pub(crate) fn claim(&self, seq: u64) -> Claim {
        match self.word(seq).compare_exchange(
            seq << 2 | QUEUED,
            seq << 2 | CLAIMED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Claim::Run,
            Err(w) if w == seq << 2 | REVOKED => Claim::Revoked,
            Err(_) => Claim::Confused,
        }
    }
}

impl Drop for ClaimPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no reference into it outlives
        // `self` (every `&AtomicU64` borrows `self`).
        let _ = unsafe { rustix::mm::munmap(self.words.as_ptr().cast(), LEN) };
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn new_shared_fd() -> io::Result<OwnedFd> {
    Ok(rustix::fs::memfd_create(
        "cfutures-claims",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn new_shared_fd() -> io::Result<OwnedFd> {
    use rustix::shm;
    // A fresh name, unlinked at once: only the descriptor (and whoever we give it to) reach
    // the object, which goes away with the last one.
    let name = format!(
        "/cfutures-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    );
    let fd = shm::open(
        name.as_str(),
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )?;
    let _ = shm::unlink(name.as_str());
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_side_wins_each_claim() {
        let parent = ClaimPage::create().unwrap();
        let fd = parent.fd().try_clone_to_owned().unwrap();
        let worker = ClaimPage::open(fd).unwrap();
        parent.publish(0);
        parent.publish(1);
        assert_eq!(worker.claim(0), Claim::Run);
        assert!(!parent.revoke(0), "a claimed task cannot be revoked");
        assert!(parent.revoke(1));
        assert_eq!(worker.claim(1), Claim::Revoked);
        // A slot reused SLOTS frames later names the new frame only.
        parent.publish(SLOTS);
        assert_eq!(worker.claim(0), Claim::Confused);
        assert_eq!(worker.claim(SLOTS), Claim::Run);
    }
}
