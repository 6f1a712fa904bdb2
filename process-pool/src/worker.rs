//! The worker side: worker-mode detection (a constructor that runs before `main`, and
//! [`init`](crate::init)), the handshake, and the serve loop.

use std::time::Instant;

use crate::sys::{self, CMD_FD, RES_FD};
use crate::wire::{self, FnId};

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
    let k = wire::key();
    let id = sys::exe_identity()?;
    Ok(format!(
        "{VERSION};{};{};{};{};{}",
        std::process::id(),
        k[0],
        k[1],
        wire::probe_offset(),
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
        let mut out = Vec::new();
        let s = wire::begin_res(&mut out, 0);
        let _ = wire::encode_into(&Err::<u32, String>(why), &mut out);
        out[s + 4] = wire::RES_HELLO;
        let _ = wire::finish(&mut out, s);
        let _ = sys::write_all(RES_FD, &out);
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
    if mine != parts[5] || wire::probe_offset() != probe {
        refuse(format!(
            "the worker is not the same build as the parent (executable identity {mine} \
             vs {}, probe offset {} vs {probe}); was the executable rebuilt while it ran?",
            parts[5],
            wire::probe_offset()
        ));
    }
    wire::set_key([k0, k1]);
    wire::install_panic_hook();

    let mut out = Vec::with_capacity(4096);
    let s = wire::begin_res(&mut out, 0);
    let _ = wire::encode_into(&Ok::<u32, String>(std::process::id()), &mut out);
    out[s + 4] = wire::RES_HELLO;
    let _ = wire::finish(&mut out, s);
    if sys::write_all(RES_FD, &out).is_err() {
        std::process::exit(0);
    }
    out.clear();
    serve_loop(out)
}

/// Serves command frames until the command pipe closes.
///
/// Each result is written as soon as its frame has run, never held back to be written
/// together with later ones: the parent attributes a worker's death, and a time limit, to
/// the first task of that worker whose result it has not seen, so a finished task's result
/// must not wait behind the next task (which may be long, and may be the one that dies).
/// An initializer's completion in particular must reach the parent before the first task
/// runs. (Batching results while more frames were queued made tiny tasks ~1.5× cheaper, but
/// broke that attribution.)
fn serve_loop(mut out: Vec<u8>) -> ! {
    let mut buf: Vec<u8> = vec![0; 64 * 1024];
    let (mut lo, mut hi) = (0usize, 0usize);
    loop {
        // Run every complete frame in the buffer.
        while let Some(n) = wire::complete_frame(&buf[lo..hi]) {
            let frame = &buf[lo..lo + n];
            lo += n;
            run_frame(frame, &mut out);
            if sys::write_all(RES_FD, &out).is_err() {
                std::process::exit(0); // the parent is gone
            }
            out.clear();
            if out.capacity() > 1 << 20 {
                out = Vec::with_capacity(4096);
            }
        }
        // Make room for the rest of the current frame, then read more.
        if lo == hi {
            lo = 0;
            hi = 0;
        } else if lo > 0 {
            buf.copy_within(lo..hi, 0);
            hi -= lo;
            lo = 0;
        }
        let need = if hi >= 4 {
            4 + u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize
        } else {
            0
        };
        if need > buf.len() {
            buf.resize(need, 0);
        } else if need <= 64 * 1024 && buf.len() > 1 << 20 {
            buf.truncate(64 * 1024);
            buf.shrink_to_fit();
        }
        if hi == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match sys::read(CMD_FD, &mut buf[hi..]) {
            // End of file: no more work will come (shutdown, retirement, or the parent
            // died). Exit now.
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(n) => hi += n,
        }
    }
}

/// Runs one command frame, leaving one result frame in `out`.
fn run_frame(frame: &[u8], out: &mut Vec<u8>) {
    if frame.len() < wire::CMD_HEADER {
        // Without a complete header the stream cannot be trusted any further.
        std::process::exit(EXIT_PROTOCOL);
    }
    let kind = frame[4];
    let id = wire::u64_at(frame, 5);
    let f = FnId {
        offset: wire::u64_at(frame, 13) as i64,
        tag: wire::u64_at(frame, 21),
    };
    let payload = &frame[wire::CMD_HEADER..];
    let start = wire::begin_res(out, id);
    let t0 = Instant::now();
    let ok = match kind {
        wire::CMD_RUN | wire::CMD_INIT => {
            // SAFETY: the handshake succeeded (we only get here after it): this process
            // runs the parent's executable and holds the parent's key.
            match unsafe { wire::resolve(f) } {
                Some(tramp) => tramp(payload, out),
                None => {
                    wire::encode_error(
                        &wire::codec(format!(
                            "the frame names a function this worker cannot run (offset {}, \
                             bad tag)",
                            f.offset
                        )),
                        out,
                    );
                    false
                }
            }
        }
        k => {
            wire::encode_error(&wire::codec(format!("unknown frame kind {k}")), out);
            false
        }
    };
    let ns = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    out[start + 13..start + 21].copy_from_slice(&ns.to_le_bytes());
    out[start + 4] = match (kind, ok) {
        (wire::CMD_INIT, true) => wire::RES_INIT_OK,
        (wire::CMD_INIT, false) => wire::RES_INIT_ERR,
        (_, true) => wire::RES_OK,
        (_, false) => wire::RES_ERR,
    };
    if let Err(e) = wire::finish(out, start) {
        out.truncate(start + wire::RES_HEADER);
        wire::encode_error(&e, out);
        out[start + 4] = wire::RES_ERR;
        let _ = wire::finish(out, start);
    }
    if kind == wire::CMD_INIT && !ok {
        let _ = sys::write_all(RES_FD, out);
        std::process::exit(EXIT_INIT_FAILED);
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
