//! The few POSIX calls the pool needs, wrapped once: pipes, non-blocking I/O, `poll`,
//! `posix_spawn`, `waitpid`, `kill`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use cfutures_core::WorkerExit;

/// The worker's end of the command pipe (parent → worker), as seen in the worker.
pub(crate) const CMD_FD: RawFd = 3;
/// The worker's end of the result pipe (worker → parent), as seen in the worker.
pub(crate) const RES_FD: RawFd = 4;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A pipe, both ends close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // SAFETY: as above. (No pipe2 here: the pool spawns only from its own thread, but
        // another thread of the program may fork between pipe and fcntl; the window is tiny.)
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        for fd in fds {
            set_cloexec(fd)?;
        }
    }
    // SAFETY: pipe just returned these two fresh descriptors; we own them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets close-on-exec on `fd`.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on any int is memory-safe; it fails with EBADF on a bad descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on any int is memory-safe.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Duplicates `fd` to a close-on-exec descriptor numbered at least `min`.
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on any int is memory-safe.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `read(2)`, retrying on EINTR. `Ok(0)` is end of file.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `write(2)`, retrying on EINTR.
pub(crate) fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Writes all of `buf` to a blocking descriptor.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// `poll(2)` with a timeout in milliseconds (-1: none), retrying on EINTR (returns 0 then).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid slice of pollfd structures.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(0)
    } else {
        Err(e)
    }
}

/// Sends `sig` to `pid`; errors (the process is gone) are ignored.
pub(crate) fn kill(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions. `pid` is always one of our own
    // unreaped children, so it cannot have been recycled for another process.
    unsafe { libc::kill(pid, sig) };
}

/// Decodes a `waitpid` status.
fn decode_status(status: libc::c_int) -> WorkerExit {
    if libc::WIFEXITED(status) {
        WorkerExit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        WorkerExit::Signal(libc::WTERMSIG(status))
    } else {
        WorkerExit::Unknown
    }
}

/// `waitpid(pid, WNOHANG)`: `Some(exit)` once the child has exited (and is reaped).
pub(crate) fn try_wait(pid: i32) -> Option<WorkerExit> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(decode_status(status));
        }
        if r == 0 {
            return None;
        }
        // -1: EINTR → retry; ECHILD (someone else reaped it) → unknown.
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Some(WorkerExit::Unknown);
        }
    }
}

/// Blocking `waitpid(pid)`.
pub(crate) fn wait(pid: i32) -> WorkerExit {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return decode_status(status);
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return WorkerExit::Unknown;
        }
    }
}

/// Starts `path` with `argv` and `envp`, with `cmd` as its fd 3, `res` as its fd 4, and
/// stdout going to `stdout` (a descriptor of ours, or `None` to keep ours).
pub(crate) fn spawn(
    path: &OsStr,
    argv0: &OsStr,
    env: &[CString],
    cmd: &OwnedFd,
    res: &OwnedFd,
    stdout: Option<RawFd>,
) -> io::Result<i32> {
    let cpath = CString::new(path.as_bytes()).map_err(io::Error::other)?;
    let carg0 = CString::new(argv0.as_bytes()).map_err(io::Error::other)?;
    let argv = [carg0.as_ptr(), ptr::null()];
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(ptr::null());

    // The sources must not be 3 or 4 themselves (dup2(fd, fd) would keep close-on-exec), nor
    // collide with each other's targets: move them above 10 first (close-on-exec copies,
    // closed when this function returns).
    let cmd_hi = dup_above(cmd.as_raw_fd(), 10)?;
    let res_hi = dup_above(res.as_raw_fd(), 10)?;
    let out_hi = match stdout {
        Some(fd) => Some(dup_above(fd, 10)?),
        None => None,
    };

    // SAFETY: the posix_spawn family is called with properly initialised attribute and
    // file-action objects, which are destroyed on every path below; all pointers (path,
    // argv, envp) stay alive until posix_spawn returns.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut fa))?;
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(e);
        }
        let r = (|| {
            check(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                cmd_hi.as_raw_fd(),
                CMD_FD,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                res_hi.as_raw_fd(),
                RES_FD,
            ))?;
            if let Some(o) = &out_hi {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut fa,
                    o.as_raw_fd(),
                    1,
                ))?;
            }
            // Start with no blocked signals and default handlers for the usual ones,
            // whatever the spawning thread had.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut defaults);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD] {
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

/// Identity of the running executable: device, inode, size, modification time. Two
/// processes with the same identity run the same file.
pub(crate) fn exe_identity() -> io::Result<[u64; 5]> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(worker_executable()?)?;
    Ok([
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ])
}
