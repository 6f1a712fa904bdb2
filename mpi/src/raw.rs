//! Thin wrappers over the MPI calls this crate makes (rsmpi's `ffi`): non-blocking sends and
//! probes with explicit requests, errors returned rather than fatal, spawn and parent.
//!
//! rsmpi 0.8 has no `MPI_Comm_spawn`, and its requests must complete inside a scope (a
//! request to a rank that died never completes); the executor needs both, so it speaks to
//! MPI through these few functions.

#![allow(unsafe_code)]

use std::ffi::{c_int, CString};
use std::io;
use std::mem::MaybeUninit;
use std::ptr;

use mpi::ffi;

/// Message tags of the protocol (see `DESIGN-NOTES.md`).
pub(crate) const TAG_FRAME: c_int = 1;
/// Worker → executor: a heartbeat (empty).
pub(crate) const TAG_BEAT: c_int = 2;
/// Executor → worker's heartbeat thread: a control word (`CTL_*`).
pub(crate) const TAG_CTL: c_int = 3;
/// Worker → executor, once after its hello: `pid`, then the host name.
pub(crate) const TAG_INFO: c_int = 4;

/// Worker → executor: its last message, after EXIT (empty).
pub(crate) const TAG_BYE: c_int = 5;

/// `MPI_ANY_SOURCE` and `MPI_ANY_TAG` (both -1 in Open MPI and MPICH; checked in tests).
pub(crate) const ANY: c_int = -1;

/// Control: the heartbeat interval in milliseconds follows (first message after the greeting).
pub(crate) const CTL_CONFIG: u64 = 1;
/// Control: the worker ran past a time limit; exit now.
pub(crate) const CTL_KILL: u64 = 2;

/// A communicator handle. MPI is initialized with `MPI_THREAD_MULTIPLE`, so handles may be
/// used from any thread; the executor still makes every call of its communicator on its
/// driver thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Comm(pub(crate) ffi::MPI_Comm);

// SAFETY: an MPI communicator handle is an opaque pointer into the MPI library, which (at
// `MPI_THREAD_MULTIPLE`) may be used from any thread.
unsafe impl Send for Comm {}
// SAFETY: as `Send`.
unsafe impl Sync for Comm {}

fn check(rc: c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed: {}",
            error_string(rc)
        )))
    }
}

/// MPI's text for an error code.
pub(crate) fn error_string(rc: c_int) -> String {
    let mut buf = vec![0u8; 512];
    let mut len: c_int = 0;
    // SAFETY: `buf` has room for MPI_MAX_ERROR_STRING (256 in Open MPI) bytes.
    unsafe { ffi::MPI_Error_string(rc, buf.as_mut_ptr().cast(), &mut len) };
    buf.truncate(len.max(0) as usize);
    format!("{} (MPI error {rc})", String::from_utf8_lossy(&buf))
}

impl Comm {
    /// `MPI_COMM_WORLD`.
    pub(crate) fn world() -> Comm {
        // SAFETY: reading an extern constant set by the MPI library.
        Comm(unsafe { ffi::RSMPI_COMM_WORLD })
    }

    /// This process's rank (in the local group).
    pub(crate) fn rank(self) -> c_int {
        let mut r = 0;
        // SAFETY: a valid communicator; `r` is written.
        unsafe { ffi::MPI_Comm_rank(self.0, &mut r) };
        r
    }

    /// The size of the local group.
    pub(crate) fn size(self) -> c_int {
        let mut r = 0;
        // SAFETY: as `rank`.
        unsafe { ffi::MPI_Comm_size(self.0, &mut r) };
        r
    }

    /// The size of the remote group (an intercommunicator).
    pub(crate) fn remote_size(self) -> c_int {
        let mut r = 0;
        // SAFETY: as `rank`.
        unsafe { ffi::MPI_Comm_remote_size(self.0, &mut r) };
        r
    }

    /// Errors on this communicator are returned, not fatal: a rank that died must not take
    /// the executor down with it.
    pub(crate) fn errors_return(self) {
        // SAFETY: a valid communicator and a predefined error handler.
        unsafe { ffi::MPI_Comm_set_errhandler(self.0, ffi::RSMPI_ERRORS_RETURN) };
    }

    /// `MPI_Comm_dup` (collective).
    pub(crate) fn dup(self) -> io::Result<Comm> {
        let mut c = MaybeUninit::uninit();
        // SAFETY: a valid communicator; `c` is written on success.
        let rc = unsafe { ffi::MPI_Comm_dup(self.0, c.as_mut_ptr()) };
        check(rc, "MPI_Comm_dup")?;
        // SAFETY: written by a successful MPI_Comm_dup.
        let c = Comm(unsafe { c.assume_init() });
        c.errors_return();
        Ok(c)
    }

    /// `MPI_Comm_free` (local in practice: it does not wait for the other ranks).
    pub(crate) fn free(mut self) {
        // SAFETY: a valid communicator, not used after this.
        unsafe { ffi::MPI_Comm_free(&mut self.0) };
    }

    /// `MPI_Comm_disconnect`: waits until the other side disconnects too.
    pub(crate) fn disconnect(mut self) {
        // SAFETY: a valid communicator, not used after this.
        unsafe { ffi::MPI_Comm_disconnect(&mut self.0) };
    }

    /// A message waiting from `src` with `tag` (either may be `ANY`): `(source, tag, bytes)`.
    pub(crate) fn iprobe(self, src: c_int, tag: c_int) -> Option<(c_int, c_int, usize)> {
        let mut flag: c_int = 0;
        let mut st = MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: a valid communicator; `flag` and `st` are written.
        let rc = unsafe { ffi::MPI_Iprobe(src, tag, self.0, &mut flag, st.as_mut_ptr()) };
        if rc != 0 || flag == 0 {
            return None;
        }
        // SAFETY: written by a successful MPI_Iprobe that found a message.
        let st = unsafe { st.assume_init() };
        let mut count: c_int = 0;
        // SAFETY: `st` is a probe's status; counting bytes.
        unsafe { ffi::MPI_Get_count(&st, ffi::RSMPI_UINT8_T, &mut count) };
        Some((st.MPI_SOURCE, st.MPI_TAG, count.max(0) as usize))
    }

    /// Receives the message from `src` with `tag` into `buf` (resized to `len`).
    pub(crate) fn recv(
        self,
        src: c_int,
        tag: c_int,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        buf.clear();
        buf.resize(len, 0);
        // SAFETY: `buf` holds `len` writable bytes; a valid communicator.
        let rc = unsafe {
            ffi::MPI_Recv(
                buf.as_mut_ptr().cast(),
                len as c_int,
                ffi::RSMPI_UINT8_T,
                src,
                tag,
                self.0,
                ffi::RSMPI_STATUS_IGNORE,
            )
        };
        check(rc, "MPI_Recv")
    }

    /// Receives the message from `src` with `tag` (its length `len` known from a probe)
    /// into `buf`, waiting no later than `deadline`: `Ok(false)` if it did not complete by
    /// then (a sender cut off mid-message). The request is then cancelled and `buf`'s memory
    /// is given up (MPI may still write it), leaving `buf` empty.
    pub(crate) fn recv_within(
        self,
        src: c_int,
        tag: c_int,
        len: usize,
        buf: &mut Vec<u8>,
        deadline: std::time::Instant,
    ) -> io::Result<bool> {
        buf.clear();
        buf.resize(len, 0);
        let mut req = MaybeUninit::uninit();
        // SAFETY: `buf` holds `len` writable bytes and is not touched until the request
        // completes, or is leaked below if it does not.
        let rc = unsafe {
            ffi::MPI_Irecv(
                buf.as_mut_ptr().cast(),
                len_of(buf)?,
                ffi::RSMPI_UINT8_T,
                src,
                tag,
                self.0,
                req.as_mut_ptr(),
            )
        };
        check(rc, "MPI_Irecv")?;
        // SAFETY: written by a successful MPI_Irecv.
        let mut req = unsafe { req.assume_init() };
        let mut spins = 0u32;
        loop {
            let mut flag: c_int = 0;
            // SAFETY: an active request.
            let rc = unsafe { ffi::MPI_Test(&mut req, &mut flag, ffi::RSMPI_STATUS_IGNORE) };
            check(rc, "MPI_Test")?;
            if flag != 0 {
                return Ok(true);
            }
            if std::time::Instant::now() > deadline {
                // SAFETY: an active request, cancelled then freed (not used after).
                unsafe {
                    ffi::MPI_Cancel(&mut req);
                    ffi::MPI_Request_free(&mut req);
                }
                std::mem::forget(std::mem::take(buf));
                return Ok(false);
            }
            spins += 1;
            if spins > 1000 {
                std::thread::sleep(std::time::Duration::from_micros(50));
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Blocking send (for small messages, which MPI sends eagerly).
    pub(crate) fn send(self, buf: &[u8], dest: c_int, tag: c_int) -> io::Result<()> {
        // SAFETY: `buf` is readable for its length during the call.
        let rc = unsafe {
            ffi::MPI_Send(
                buf.as_ptr().cast(),
                len_of(buf)?,
                ffi::RSMPI_UINT8_T,
                dest,
                tag,
                self.0,
            )
        };
        check(rc, "MPI_Send")
    }

    /// Starts a send of `buf`, which the returned [`Send`] owns until it completes.
    pub(crate) fn isend(self, buf: Vec<u8>, dest: c_int, tag: c_int) -> io::Result<Sending> {
        let mut req = MaybeUninit::uninit();
        // SAFETY: `buf` moves into the returned value, which keeps it alive (its heap buffer
        // does not move) until the request completes or is freed.
        let rc = unsafe {
            ffi::MPI_Isend(
                buf.as_ptr().cast(),
                len_of(&buf)?,
                ffi::RSMPI_UINT8_T,
                dest,
                tag,
                self.0,
                req.as_mut_ptr(),
            )
        };
        check(rc, "MPI_Isend")?;
        Ok(Sending {
            // SAFETY: written by a successful MPI_Isend.
            req: unsafe { req.assume_init() },
            buf: Some(buf),
        })
    }
}

fn len_of(buf: &[u8]) -> io::Result<c_int> {
    c_int::try_from(buf.len())
        .map_err(|_| io::Error::other("a message larger than 2 GiB cannot be sent over MPI"))
}

/// A send in progress, owning its buffer.
#[derive(Debug)]
pub(crate) struct Sending {
    req: ffi::MPI_Request,
    buf: Option<Vec<u8>>,
}

// SAFETY: a request handle is an opaque pointer into the MPI library (THREAD_MULTIPLE).
unsafe impl Send for Sending {}

impl Sending {
    /// True once the send completed (or failed: the peer is gone).
    pub(crate) fn test(&mut self) -> bool {
        let mut flag: c_int = 0;
        // SAFETY: an active request (or MPI_REQUEST_NULL once completed, which tests true).
        let rc = unsafe { ffi::MPI_Test(&mut self.req, &mut flag, ffi::RSMPI_STATUS_IGNORE) };
        rc != 0 || flag != 0
    }

    /// Gives the request up (its peer is lost): MPI may still complete it in the
    /// background, so the buffer is leaked rather than freed under it.
    pub(crate) fn abandon(mut self) {
        // SAFETY: an active request; after `MPI_Request_free` the handle is not used.
        unsafe { ffi::MPI_Request_free(&mut self.req) };
        std::mem::forget(self.buf.take());
    }
}

/// `MPI_Comm_get_parent`: the intercommunicator to the spawning executor, if any.
pub(crate) fn parent() -> Option<Comm> {
    let mut c = MaybeUninit::uninit();
    // SAFETY: `c` is written.
    unsafe { ffi::MPI_Comm_get_parent(c.as_mut_ptr()) };
    // SAFETY: written by MPI_Comm_get_parent.
    let c = unsafe { c.assume_init() };
    // SAFETY: reading an extern constant.
    if c == unsafe { ffi::RSMPI_COMM_NULL } {
        None
    } else {
        let c = Comm(c);
        c.errors_return();
        Some(c)
    }
}

/// Spawns `n` copies of `program` with `args` (`MPI_Comm_spawn` from this process alone,
/// over `MPI_COMM_SELF`), with the MPI info `hints` (`host`, `hostfile`, ...): the
/// intercommunicator to them.
pub(crate) fn spawn(
    program: &str,
    args: &[String],
    n: usize,
    hints: &[(String, String)],
) -> io::Result<Comm> {
    let prog = CString::new(program).map_err(io::Error::other)?;
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()).map_err(io::Error::other))
        .collect::<io::Result<_>>()?;
    let mut argv: Vec<*mut std::ffi::c_char> = cargs.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv.push(ptr::null_mut());
    // SAFETY: reading extern constants.
    let (self_comm, info_null) = unsafe { (ffi::RSMPI_COMM_SELF, ffi::RSMPI_INFO_NULL) };
    let mut info = info_null;
    if !hints.is_empty() {
        // SAFETY: `info` is written.
        unsafe { ffi::MPI_Info_create(&mut info) };
        for (k, v) in hints {
            let (k, v) = (
                CString::new(k.as_str()).map_err(io::Error::other)?,
                CString::new(v.as_str()).map_err(io::Error::other)?,
            );
            // SAFETY: a created info object and NUL-terminated strings.
            unsafe { ffi::MPI_Info_set(info, k.as_ptr(), v.as_ptr()) };
        }
    }
    let mut inter = MaybeUninit::uninit();
    let mut errcodes = vec![0 as c_int; n];
    // Spawn errors are returned, not fatal (a missing program is an `Err`, not an abort).
    // SAFETY: a predefined communicator and error handler.
    unsafe { ffi::MPI_Comm_set_errhandler(self_comm, ffi::RSMPI_ERRORS_RETURN) };
    // SAFETY: `prog` and `argv` are NUL-terminated and live across the call; `errcodes`
    // has room for `n` codes; `inter` is written.
    let rc = unsafe {
        ffi::MPI_Comm_spawn(
            prog.as_ptr(),
            argv.as_mut_ptr(),
            n as c_int,
            info,
            0,
            self_comm,
            inter.as_mut_ptr(),
            errcodes.as_mut_ptr(),
        )
    };
    if info != info_null {
        // SAFETY: an info object created above.
        unsafe { ffi::MPI_Info_free(&mut info) };
    }
    check(rc, "MPI_Comm_spawn")?;
    if let Some(e) = errcodes.iter().find(|&&e| e != 0) {
        return Err(io::Error::other(format!(
            "MPI_Comm_spawn started only part of the workers: {}",
            error_string(*e)
        )));
    }
    // SAFETY: written by a successful MPI_Comm_spawn.
    let c = Comm(unsafe { inter.assume_init() });
    c.errors_return();
    Ok(c)
}

/// This machine's name as MPI sees it.
pub(crate) fn processor_name() -> String {
    mpi::environment::processor_name().unwrap_or_else(|_| "?".into())
}

/// `MPI_Abort` over `comm`: ends every process of the job (the last resort when nothing
/// else can end it).
pub(crate) fn abort(comm: Comm, code: c_int) -> ! {
    // SAFETY: a valid communicator.
    unsafe { ffi::MPI_Abort(comm.0, code) };
    std::process::exit(code)
}

/// `MPI_Finalize`, unless it already ran.
pub(crate) fn finalize() {
    let mut done: c_int = 0;
    // SAFETY: `done` is written.
    unsafe { ffi::MPI_Finalized(&mut done) };
    if done == 0 {
        // SAFETY: MPI is initialized and not finalized; this crate's communicators were
        // freed or disconnected.
        unsafe { ffi::MPI_Finalize() };
    }
}

/// At exit, MPI must be finalized (under `mpirun`, a process that exits without it is an
/// abnormal termination). Bounded: a lost worker must not make the exit hang.
extern "C" fn finalize_at_exit() {
    crate::launch::watchdog(crate::launch::FINALIZE_LIMIT);
    trace!("finalize at exit");
    finalize();
    trace!("finalized");
}

/// Initializes MPI with `MPI_THREAD_MULTIPLE` if it is not yet: true if this call did (the
/// caller then owns finalizing it).
pub(crate) fn ensure_init() -> io::Result<bool> {
    if mpi::environment::is_initialized() {
        let t = mpi::environment::threading_support();
        if t != mpi::Threading::Multiple {
            return Err(io::Error::other(format!(
                "cfutures-mpi needs MPI initialized with Threading::Multiple, it was with {t:?} \
                 (use mpi::initialize_with_threading(Threading::Multiple))"
            )));
        }
        return Ok(false);
    }
    match mpi::initialize_with_threading(mpi::Threading::Multiple) {
        Some((universe, t)) => {
            // SAFETY: reading extern constants set by the MPI library.
            let any = unsafe { (ffi::RSMPI_ANY_SOURCE, ffi::RSMPI_ANY_TAG) };
            assert_eq!(any, (ANY, ANY), "this MPI's ANY_SOURCE/ANY_TAG are not -1");
            // MPI stays initialized for the life of the process (it cannot be initialized
            // twice): it is finalized when the process exits (or by `world`).
            std::mem::forget(universe);
            // SAFETY: registering a plain `extern "C"` function.
            unsafe { libc::atexit(finalize_at_exit) };
            if t != mpi::Threading::Multiple {
                return Err(io::Error::other(format!(
                    "this MPI library grants {t:?}, cfutures-mpi needs Threading::Multiple"
                )));
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Before a singleton MPI_Init (a program started without `mpirun`): asks Open MPI to let
/// the job outlive a worker that dies (`orte_enable_recovery`; without it, the death of one
/// spawned worker aborts all of them), unless the environment already says otherwise. Under
/// `mpirun`, pass `--enable-recovery` instead.
pub(crate) fn singleton_recovery() {
    let under_mpirun = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if under_mpirun || mpi::environment::is_initialized() {
        return;
    }
    for (k, v) in [
        ("OMPI_MCA_orte_enable_recovery", "1"),
        ("OMPI_MCA_orte_abort_on_non_zero_status", "0"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
}
