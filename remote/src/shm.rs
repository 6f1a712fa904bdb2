//! Shared memory, wrapped once: anonymous files (a `memfd` on Linux; elsewhere a POSIX
//! shared-memory object unlinked as soon as it is made), their mappings, and seals.
//!
//! Used by [`SharedSlice`](crate::bulk::SharedSlice) and by transports that move large
//! payloads through segments (the process pool). Nothing here is visible by name in the
//! filesystem: a segment lives as long as a descriptor or a mapping of it does, in any
//! process, and is freed by the kernel with the last one — also when processes are killed.
//!
//! # Seals (Linux)
//!
//! A memfd is created sealable. A segment that others map is sealed against shrinking
//! (`F_SEAL_SHRINK`: a file cut under someone's mapping would turn their next access into
//! `SIGBUS`); shared data that must never change is sealed against writes and resizing
//! (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): the kernel then refuses
//! `write`, writable shared mappings, `mprotect(PROT_WRITE)` of existing ones and
//! `ftruncate`, in every process, whatever descriptor it holds. A receiver checks the seals
//! of what it is given ([`is_sealed_read_only`], [`is_sealed_against_shrinking`]) before
//! it trusts a mapping of it.
//!
//! Elsewhere (macOS) there are no seals: a POSIX shared-memory object cannot be resized
//! once sized there, and read-only data is given to others only as a descriptor opened
//! read-only, which cannot be mapped writable nor written ([`create_pair`]).

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};

/// Creates a shared-memory file of `len` bytes (zero-filled), close-on-exec; on Linux a
/// sealable memfd.
///
/// # Errors
///
/// What the system says (`EMFILE`, `ENOMEM`, ...).
pub fn create(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    Ok(create_pair(name, len, false)?.0)
}

/// As [`create`], and a second descriptor of the same file opened read-only (if asked and
/// possible): the one to give to readers, who then cannot write or resize it whatever they
/// do. On Linux, by reopening `/proc/self/fd/N` (`None` if `/proc` is not mounted); elsewhere,
/// by opening the object a second time before it is unlinked.
///
/// # Errors
///
/// As [`create`].
pub fn create_pair(
    name: &CStr,
    len: usize,
    read_only: bool,
) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::MemfdFlags;
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let ro = if read_only {
            let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            rustix::fs::open(
                path.as_str(),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .ok()
        } else {
            None
        };
        Ok((fd, ro))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        use rustix::fs::Mode;
        use rustix::shm;
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let _ = name;
        // A fresh name, unlinked at once: only the descriptors reach the object. A crash in
        // the microseconds between open and unlink would leave one name behind; retry on a
        // collision.
        for _ in 0..16 {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            // (Relaxed: only uniqueness matters.)
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "/cfut-{}-{:x}-{n:x}",
                std::process::id(),
                stamp & 0xffff_ffff
            );
            let fd = match shm::open(
                name.as_str(),
                shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
                Mode::RUSR | Mode::WUSR,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            };
            let ro = if read_only {
                shm::open(name.as_str(), shm::OFlags::RDONLY, Mode::empty()).ok()
            } else {
                None
            };
            let _ = shm::unlink(name.as_str());
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
            if let Some(ro) = &ro {
                rustix::io::fcntl_setfd(ro, rustix::io::FdFlags::CLOEXEC)?;
            }
            if len > 0 {
                rustix::fs::ftruncate(&fd, len as u64)?;
            }
            return Ok((fd, ro));
        }
        Err(io::Error::from(io::ErrorKind::AlreadyExists))
    }
}

/// The size of the file.
///
/// # Errors
///
/// If `fstat` fails (not an open descriptor).
pub fn size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// The identity of the file (device, inode): two descriptors with the same identity name
/// the same segment (while either is open, the inode cannot be reused).
///
/// # Errors
///
/// If `fstat` fails.
pub fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// What a receiver checks of a segment it is given, in one `fstat`: its identity (see
/// [`identity`]), its size, and whether it is a regular file (every segment is; a socket
/// or a pipe is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Device and inode.
    pub identity: (u64, u64),
    /// Size in bytes.
    pub size: u64,
    /// A regular file.
    pub regular: bool,
}

/// [`Stat`] of `fd`.
///
/// # Errors
///
/// If `fstat` fails.
pub fn stat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    let st = rustix::fs::fstat(fd)?;
    Ok(Stat {
        identity: (st.st_dev as u64, st.st_ino as u64),
        size: st.st_size as u64,
        regular: rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::RegularFile,
    })
}

/// Whether nobody can shrink the regular file `st` describes (see
/// [`is_sealed_against_shrinking`]), with one system call on Linux and none elsewhere.
pub fn cannot_shrink(fd: BorrowedFd<'_>, st: &Stat) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        st.regular && is_sealed_against_shrinking(fd)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fd;
        st.regular
    }
}

/// Whether `fd` is a regular file (what every segment is; a socket or a pipe is not).
pub fn is_regular_file(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
    })
}

/// Seals the file against shrinking (Linux; elsewhere a shared-memory object cannot be
/// resized once sized, so there is nothing to do).
///
/// # Errors
///
/// If the file is not sealable.
pub fn seal_against_shrinking(fd: BorrowedFd<'_>) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::fs::fcntl_add_seals(fd, rustix::fs::SealFlags::SHRINK)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = fd;
    Ok(())
}

/// Seals the file for good: no write, no resize, no more seals (Linux). No writable
/// mapping of it may exist (the kernel refuses with `EBUSY`).
///
/// # Errors
///
/// If the file is not sealable, or is still mapped writable.
pub fn seal_read_only(fd: BorrowedFd<'_>) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::SealFlags;
        rustix::fs::fcntl_add_seals(
            fd,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = fd;
    Ok(())
}

/// Whether the kernel guarantees that nobody can change or shrink the file: sealed
/// `F_SEAL_WRITE | F_SEAL_SHRINK` (Linux). Elsewhere `false`: nothing can be verified.
pub fn is_sealed_read_only(fd: BorrowedFd<'_>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::SealFlags;
        rustix::fs::fcntl_get_seals(fd)
            .is_ok_and(|s| s.contains(SealFlags::WRITE | SealFlags::SHRINK))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fd;
        false
    }
}

/// Whether nobody can shrink the file under a mapping (which would make the mapping's
/// holder fault with `SIGBUS`): sealed `F_SEAL_SHRINK` on Linux; elsewhere a regular
/// shared-memory object, which cannot be resized once sized.
pub fn is_sealed_against_shrinking(fd: BorrowedFd<'_>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::SealFlags;
        rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(SealFlags::SHRINK))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        is_regular_file(fd)
    }
}

/// A shared mapping of the first `len` bytes of a file, unmapped on drop.
///
/// Reading it as a `&[u8]` ([`as_slice`](Self::as_slice)) or writing it as a `&mut [u8]`
/// ([`as_mut_slice`](Self::as_mut_slice)) is `unsafe`: other processes may map the same
/// file, and the caller must know, from its protocol or from the file's seals, that no one
/// writes it meanwhile. [`as_ptr`](Self::as_ptr) with raw copies needs no such promise.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: a mapping is memory owned by this value (unmapped on drop); the raw pointer is
// what makes it !Send/!Sync by default, not any thread affinity. Access through `&self` only
// reads (`as_slice` is `unsafe`, with its own contract), writes need `&mut self`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn map(fd: BorrowedFd<'_>, len: usize, writable: bool) -> io::Result<Self> {
        if len == 0 {
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len: 0,
                writable,
            });
        }
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a fresh shared mapping at an address the kernel chooses (null hint, no
        // MAP_FIXED): it overlaps no memory Rust knows about. Unmapped in `Drop`.
        let p =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
            writable,
        })
    }

    /// Maps the first `len` bytes of `fd` read-write.
    ///
    /// # Errors
    ///
    /// If the file is shorter than `len` (touching past its end would be `SIGBUS`), or the
    /// system refuses.
    pub fn map_rw(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        Self::check_len(fd, len)?;
        Self::map(fd, len, true)
    }

    /// Maps the first `len` bytes of `fd` read-only.
    ///
    /// # Errors
    ///
    /// As [`map_rw`](Self::map_rw).
    pub fn map_ro(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        Self::check_len(fd, len)?;
        Self::map(fd, len, false)
    }

    fn check_len(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
        if size(fd)? < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a shared-memory segment is shorter than its mapping would be",
            ));
        }
        Ok(())
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte (dangling if empty).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The mapped bytes.
    ///
    /// # Safety
    ///
    /// No process may write these bytes while the returned borrow lives (the protocol of
    /// whoever shares the file says so, or its seals).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is our live mapping (or dangling with length 0), and
        // the caller guarantees nobody writes it during the borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, writable.
    ///
    /// # Safety
    ///
    /// No other process may read or write these bytes while the returned borrow lives.
    ///
    /// # Panics
    ///
    /// If the mapping is read-only.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        assert!(self.writable, "a read-only mapping");
        // SAFETY: as `as_slice`; `&mut self` excludes every other borrow in this process,
        // the caller every access from other processes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: our own mapping, unmapped once; every borrow of it ended with `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}
