//! The worker side: worker-mode detection (a constructor that runs before `main`, and
//! [`init`](crate::init)), the handshake, and the serve loop.

use cfutures_remote::handshake;
use cfutures_remote::serve::{self, ServeEnd, StreamReader, Transport};

use crate::sys::{self, CMD_FD, RES_FD};

/// The environment variable that puts a process in worker mode. Its value carries the
/// parent's pid, tag key, probe offset and executable identity.
pub(crate) const ENV: &str = "CFUTURES_PROCESS_POOL_WORKER";
const VERSION: &str = "cfpp1";

/// Exit code of a worker that refused to serve (different build, bad environment).
pub(crate) const EXIT_REFUSED: i32 = 97;
/// Exit code of a worker whose initializer failed.
pub(crate) const EXIT_INIT_FAILED: i32 = 98;
/// Exit code of a worker that received a malformed frame stream.
pub(crate) const EXIT_PROTOCOL: i32 = 99;

/// The value of [`ENV`] for this parent.
pub(crate) fn env_value() -> std::io::Result<String> {
    let k = handshake::key();
    let id = sys::exe_identity()?;
    Ok(format!(
        "{VERSION};{};{};{};{};{}",
        std::process::id(),
        k[0],
        k[1],
        handshake::probe_offset(),
        id.map(|x| x.to_string()).join(",")
    ))
}

/// Checks worker mode; in a worker, serves and exits (never returns).
pub(crate) fn maybe_serve() {
    let Some(v) = std::env::var_os(ENV) else {
        return;
    };
    // Not inherited by whatever the tasks start.
    // (Single-threaded here: before `main`, or at the very start of it.)
    std::env::remove_var(ENV);
    serve(&v.to_string_lossy())
}

fn serve(v: &str) -> ! {
    // Our protocol descriptors must not leak into processes the tasks start.
    let _ = sys::set_cloexec(CMD_FD);
    let _ = sys::set_cloexec(RES_FD);
    // SAFETY: setting a signal disposition to SIG_IGN is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let refuse = |why: String| -> ! {
        let _ = sys::write_all(RES_FD, &handshake::hello_frame(Err(why)));
        std::process::exit(EXIT_REFUSED)
    };

    let parts: Vec<&str> = v.split(';').collect();
    if parts.len() != 6 || parts[0] != VERSION {
        refuse(format!(
            "worker environment {v:?} is not understood by this build (protocol {VERSION})"
        ));
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (Some(ppid), Some(k0), Some(k1), Some(probe)) = (
        num(parts[1]),
        parts[2].parse::<u64>().ok(),
        parts[3].parse::<u64>().ok(),
        num(parts[4]),
    ) else {
        refuse(format!("malformed worker environment {v:?}"));
    };

    // A worker never outlives its parent: on Linux the kernel kills us when the parent
    // (the pool's I/O thread, which started us) goes; everywhere, end of file on the
    // command pipe ends the serve loop.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // SAFETY: getppid has no preconditions.
    if i64::from(unsafe { libc::getppid() }) != ppid {
        // The parent died before we could arm the death signal.
        std::process::exit(EXIT_REFUSED);
    }

    let mine = match sys::exe_identity() {
        Ok(id) => id.map(|x| x.to_string()).join(","),
        Err(e) => refuse(format!("cannot identify the worker executable: {e}")),
    };
    if mine != parts[5] || handshake::probe_offset() != probe {
        refuse(format!(
            "the worker is not the same build as the parent (executable identity {mine} \
             vs {}, probe offset {} vs {probe}); was the executable rebuilt while it ran?",
            parts[5],
            handshake::probe_offset()
        ));
    }
    handshake::accept([k0, k1]);
    if sys::write_all(RES_FD, &handshake::hello_frame(Ok(std::process::id()))).is_err() {
        std::process::exit(0);
    }
    let mut pipes = Pipes::default();
    match serve::serve(&mut pipes) {
        // End of the command stream: no more work will come (shutdown, retirement, or the
        // parent died); or the parent is gone.
        ServeEnd::Done | ServeEnd::Io(_) => std::process::exit(0),
        ServeEnd::InitFailed => std::process::exit(EXIT_INIT_FAILED),
        _ => std::process::exit(EXIT_PROTOCOL),
    }
}

/// The worker's transport: command frames from [`CMD_FD`], results to [`RES_FD`].
#[derive(Default)]
struct Pipes {
    reader: StreamReader,
}

impl Transport for Pipes {
    fn recv(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.reader.next(|buf| sys::read(CMD_FD, buf))
    }
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        sys::write_all(RES_FD, frame)
    }
}

// ---------------------------------------------------------------------------------------
// The constructor: worker mode starts before `main`, in every binary that links this crate
// (programs, examples, test binaries, benchmarks), with no line of setup.

extern "C" fn before_main() {
    maybe_serve();
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[used]
#[link_section = ".init_array"]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[cfg(any(target_os = "macos", target_os = "ios"))]
#[used]
#[link_section = "__DATA,__mod_init_func"]
static BEFORE_MAIN: extern "C" fn() = before_main;
