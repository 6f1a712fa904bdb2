//! The operating-system calls the pool needs, wrapped once.
//!
//! Most go through [`rustix`], whose wrappers are safe (descriptors are `OwnedFd` /
//! `BorrowedFd`, errors are typed, `EINTR` is visible): sockets, `poll`, `pidfd`, `waitpid`,
//! `kill`, `fcntl`, `memfd_create`. What rustix does not wrap stays on `libc`, each call with
//! its `SAFETY:` argument: `posix_spawn` (the parent is multi-threaded, so `fork` is out),
//! `getauxval(AT_SECURE)`, `close_range`, `fstat` of a number that may be closed.

use std::ffi::{CString, OsStr};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;
use std::time::Duration;

use cfutures_core::WorkerExit;
use rustix::event::{PollFd, PollFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Pid, Signal, WaitOptions};

/// Retries `f` while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A pipe, both ends close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// A pipe, both ends close-on-exec and non-blocking: `(read, write)`.
pub(crate) fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe()?;
    set_nonblocking(r.as_fd())?;
    set_nonblocking(w.as_fd())?;
    Ok((r, w))
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// Sets close-on-exec on `fd`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?)
}

/// Duplicates `fd` to a close-on-exec descriptor numbered at least `min`.
pub(crate) fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, min)?)
}

/// `read(2)`, retrying on `EINTR`. `Ok(0)` is end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| rustix::io::read(fd, &mut *buf))
}

/// `write(2)` to a pipe, retrying on `EINTR`.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry(|| rustix::io::write(fd, buf))
}

/// Writes what the pipe takes of `bufs`, in order (one `writev`).
///
/// A write to a pipe whose reader is gone raises `SIGPIPE`, which Rust programs (and Python)
/// ignore from the start; the error is then `EPIPE`, and the worker's death shows on its
/// result pipe and pidfd.
pub(crate) fn write_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    retry(|| rustix::io::writev(fd, bufs))
}

/// Writes all of `buf` to a blocking descriptor.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no timeout). `EINTR`
/// returns early (with nothing ready), which the caller's loop absorbs.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match rustix::event::poll(fds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What `poll` reported for `fd`.
pub(crate) fn ready(p: &PollFd<'_>) -> (bool, bool) {
    let r = p.revents();
    (
        r.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
        r.intersects(PollFlags::OUT | PollFlags::ERR | PollFlags::HUP),
    )
}

/// A worker process: its pid, and its pidfd where there is one.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) pid: i32,
    pub(crate) pidfd: Option<OwnedFd>,
}

impl Child {
    /// Sends `sig`; errors (the process is gone) are ignored. Through the pidfd where there
    /// is one: it names this process even after it was reaped (the signal then fails), where
    /// a pid could by then name another process. Without one, the pid is one of our own
    /// children, reaped only under the lock that also removes it from the pool.
    pub(crate) fn signal(&self, sig: Signal) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.pidfd {
            match rustix::process::pidfd_send_signal(fd, sig) {
                // Sent, or the process is gone (reaped already).
                Ok(()) | Err(rustix::io::Errno::SRCH) => return,
                // A kernel without the call: by pid.
                Err(_) => {}
            }
        }
        kill(self.pid, sig);
    }
}

/// Sends `sig` to `pid`; errors (the process is gone) are ignored.
fn kill(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// A descriptor that becomes readable when `pid` exits (Linux ≥ 5.3), or `None` where there
/// is none (older kernels, other systems, a descriptor limit): the caller then checks on a
/// timer.
pub(crate) fn pidfd(pid: i32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        let pid = Pid::from_raw(pid)?;
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// `waitpid(pid, WNOHANG)`: `Some(exit)` once the child has exited (and is reaped).
pub(crate) fn try_wait(pid: i32) -> Option<WorkerExit> {
    let p = Pid::from_raw(pid)?;
    match retry(|| rustix::process::waitpid(Some(p), WaitOptions::NOHANG)) {
        Ok(Some((_, status))) => Some(if let Some(c) = status.exit_status() {
            WorkerExit::Code(c)
        } else if let Some(s) = status.terminating_signal() {
            WorkerExit::Signal(s)
        } else {
            WorkerExit::Unknown
        }),
        Ok(None) => None,
        // ECHILD: someone else reaped it.
        Err(_) => Some(WorkerExit::Unknown),
    }
}

/// Whether a spawn error may go away by itself (a resource limit, memory, an interrupted
/// call): then the start is retried, with backoff; other errors (no such file, no
/// permission, an executable the kernel refuses) will not.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    let code = e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|s| s.downcast_ref::<Step>())
            .and_then(|s| s.source.raw_os_error())
    });
    matches!(
        code,
        Some(
            libc::EAGAIN | libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::ENOBUFS
        )
    )
}

/// What a spawn was doing when it failed (the error says which call, with its cause).
#[derive(Debug)]
pub(crate) struct Step {
    what: &'static str,
    source: io::Error,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Step {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Names the step of a spawn an error comes from (keeping its kind and code).
pub(crate) fn step(what: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |source| io::Error::new(source.kind(), Step { what, source })
}

/// The descriptors a worker is started with: in the worker they are numbered `first`,
/// `first + 1`, … in this order.
pub(crate) struct ChildFds<'a> {
    /// The number of the first one in the worker.
    pub(crate) first: RawFd,
    /// The command pipe's read end, the result pipe's write end, the control socket, the
    /// claim page.
    pub(crate) fds: [BorrowedFd<'a>; 4],
    /// Where the worker's stdout goes (`None`: the parent's stdout).
    pub(crate) stdout: Option<BorrowedFd<'a>>,
    /// Where the worker's stderr goes (`None`: the parent's stderr).
    pub(crate) stderr: Option<BorrowedFd<'a>>,
}

/// Starts `path` with `argv0` and `env`, with the descriptors of `fds` in place. Every other
/// descriptor of ours is close-on-exec; the worker closes anything else it inherited (a
/// descriptor another part of the program left inheritable) before it serves.
pub(crate) fn spawn(
    path: &OsStr,
    argv0: &OsStr,
    env: &[CString],
    fds: &ChildFds<'_>,
) -> io::Result<i32> {
    let cpath = CString::new(path.as_bytes()).map_err(io::Error::other)?;
    let carg0 = CString::new(argv0.as_bytes()).map_err(io::Error::other)?;
    let argv = [carg0.as_ptr(), ptr::null()];
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(ptr::null());

    // A source must not be a target itself (dup2(fd, fd) would keep close-on-exec), nor
    // collide with another's target: copy each above every target first (close-on-exec
    // copies, closed when this function returns).
    let floor = fds.first + fds.fds.len() as RawFd;
    let hi: Vec<OwnedFd> = fds
        .fds
        .iter()
        .map(|fd| dup_above(*fd, floor))
        .collect::<io::Result<_>>()?;
    let out_hi = match fds.stdout {
        Some(fd) => Some(dup_above(fd, floor)?),
        None => None,
    };
    let err_hi = match fds.stderr {
        Some(fd) => Some(dup_above(fd, floor)?),
        None => None,
    };

    // SAFETY: the posix_spawn family is called with properly initialised attribute and
    // file-action objects, which are destroyed on every path below; all pointers (path,
    // argv, envp) stay alive until posix_spawn returns, and the descriptors named in the
    // file actions stay open until then.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut fa))?;
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(e);
        }
        let r = (|| {
            for (i, fd) in hi.iter().enumerate() {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut fa,
                    fd.as_raw_fd(),
                    fds.first + i as RawFd,
                ))?;
            }
            // No stdin: a task that reads it must not take the parent's input (Python's
            // spawned workers read nothing either).
            check(libc::posix_spawn_file_actions_addopen(
                &mut fa,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            if let Some(o) = &out_hi {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut fa,
                    o.as_raw_fd(),
                    1,
                ))?;
            }
            if let Some(e) = &err_hi {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut fa,
                    e.as_raw_fd(),
                    2,
                ))?;
            }
            // Start with no blocked signals and default handlers for the usual ones,
            // whatever the spawning thread had.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut defaults);
            for s in [
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGCHLD,
                libc::SIGPIPE,
            ] {
                libc::sigaddset(&mut defaults, s);
            }
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &defaults))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as _,
            ))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                cpath.as_ptr(),
                &fa,
                &attr,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            ))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        r
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// The executable to start workers from: `/proc/self/exe` on Linux (the very file this
/// process runs, even if it was since replaced or deleted on disk), else `current_exe`.
pub(crate) fn worker_executable() -> io::Result<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        Ok("/proc/self/exe".into())
    } else {
        std::env::current_exe()
    }
}

/// Identity of the running executable: device, inode, size, modification time, as bytes.
/// Two processes with the same identity run the same file.
pub(crate) fn exe_identity() -> io::Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(worker_executable()?)?;
    Ok([
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ]
    .iter()
    .flat_map(|x| x.to_le_bytes())
    .collect())
}

/// The number of the first of the worker's four protocol descriptors: random (so a task that
/// writes to a well-known descriptor, 3 or 4, cannot reach the protocol by accident), above
/// the usual low numbers, below the descriptor limit.
pub(crate) fn child_fd_number(seed: u64) -> RawFd {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024)
        .min(1024) as i64;
    // The four, then room above them for `spawn`'s temporary copies of the four and of
    // stdout and stderr (a number too close to the limit would make spawns fail, EMFILE).
    let (lo, hi) = (20i64, limit - 4 - 6);
    if hi <= lo {
        return 3;
    }
    (lo + (seed % (hi - lo) as u64) as i64) as RawFd
}

// ---------------------------------------------------------------------------------------
// Worker side.

/// True if this process runs with privileges its caller does not have (setuid, setgid,
/// file capabilities): the kernel's `AT_SECURE`. Such a process never serves as a worker.
pub(crate) fn is_privileged() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: getauxval reads the auxiliary vector the kernel gave this process; it has
        // no preconditions and returns 0 for an absent entry.
        unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    {
        // SAFETY: issetugid has no preconditions.
        unsafe { libc::issetugid() != 0 }
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd"
    )))]
    {
        // SAFETY: these calls have no preconditions.
        unsafe { libc::getuid() != libc::geteuid() || libc::getgid() != libc::getegid() }
    }
}

/// The parent's pid.
pub(crate) fn parent_pid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

/// The type of the file open at `fd`, if one is.
pub(crate) fn file_type(fd: RawFd) -> Option<rustix::fs::FileType> {
    if fd < 0 {
        return None;
    }
    // Not through a `BorrowedFd` (whose contract is an open descriptor): the number may be
    // closed, which fstat reports.
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into `st` when it returns 0, and touches nothing else;
    // on a closed descriptor it fails with EBADF.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Some(rustix::fs::FileType::from_raw_mode(st.st_mode as _))
}

/// Checks that `fd` is a Unix socket whose other end belongs to process `ppid` (the parent
/// created the pair).
pub(crate) fn is_parents_socket(fd: RawFd, ppid: i32) -> bool {
    if file_type(fd) != Some(rustix::fs::FileType::Socket) {
        return false;
    }
    // SAFETY: `fd` is open (fstat just succeeded, and nothing closes descriptors in a worker
    // before it serves); the borrow ends with this function.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        rustix::net::sockopt::socket_peercred(b).is_ok_and(|c| c.pid.as_raw_nonzero().get() == ppid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // No peer pid here: a socket of the same user is the best check there is.
        let _ = ppid;
        true
    }
}

/// Arms `SIGKILL` on the parent's death (Linux); elsewhere the worker notices at its next
/// read of the command pipe.
pub(crate) fn die_with_parent() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
}

/// Ignores `SIGPIPE` (a write to a closed socket is an error, not a death).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Closes every descriptor above 2 but those in `keep`: whatever the worker inherited that
/// is not the pool's.
pub(crate) fn close_all_but(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&k| k > 2).collect();
    keep.sort_unstable();
    let mut from: RawFd = 3;
    for k in keep.iter().copied().chain([RawFd::MAX]) {
        if from < k {
            close_range(from, k - 1);
        }
        from = k.saturating_add(1);
    }
}

/// Closes the descriptors `lo..=hi`.
fn close_range(lo: RawFd, hi: RawFd) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only closes descriptors. This runs in worker mode before `main`:
        // no Rust object of this program owns any of them yet, and every descriptor the pool
        // uses is in `keep`. What it assumes: that no constructor that ran before this one
        // (another crate's, a C library's, an LD_PRELOAD tool's) keeps a descriptor it means
        // to use later — a worker is the pool's process, and starts from what the pool gave
        // it. Returns -1 (ENOSYS) on kernels before 5.9: then the loop below.
        let r = unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) };
        if r == 0 {
            return;
        }
    }
    let max = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(4096)
        .min(1 << 20) as RawFd;
    for fd in lo..=hi.min(max) {
        // SAFETY: as above; closing a descriptor that is not open fails harmlessly.
        unsafe { libc::close(fd) };
    }
}
