//! The worker side: worker-mode detection (a constructor that runs before `main`, and
//! [`init`](crate::init)), the checks before serving, and the worker's transport.
//!
//! # Who can make a process serve
//!
//! Worker mode is entered only by a process that (1) finds [`ENV`] in its environment,
//! (2) does not run with elevated privileges (`AT_SECURE`: setuid, setgid, file
//! capabilities), and (3) finds, at the four descriptors the variable names, a pipe to read,
//! a pipe to write, a Unix socket whose other end was made by its parent process, and a
//! claim page. Only then does it read the parent's greeting (the key and the build checks:
//! see `cfutures_remote::handshake`) and answer. A process that fails (1)–(3) prints one line
//! to its standard error, writes to no other descriptor, and exits with [`EXIT_REFUSED`].
//! The variable holds no secret: the protocol version, the parent's pid and the number of
//! the first descriptor.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use cfutures_remote::handshake;
use cfutures_remote::serve::{self, Command, ServeEnd, StreamReader, Transport};
use cfutures_remote::shm::Mapping;
use cfutures_remote::wire::{self, Ext, Placement};

use crate::claims::{Claim, ClaimPage};
use crate::segments::{self, FdQueue, MapCache, ResultSegments};
use crate::sys;

/// The environment variable that puts a process in worker mode: `cfpp2:<parent pid>:<fd>`,
/// where `fd` is the first of four: the command pipe (read), the result pipe (write), the
/// control socket, the claim page; then `:<hex>` when the pool captures output (the number
/// its output markers are made of: see `crate::output`; no secret).
pub(crate) const ENV: &str = "CFUTURES_PROCESS_POOL_WORKER";
const VERSION: &str = "cfpp2";

/// Exit code of a process that refused to serve (see the module doc).
pub(crate) const EXIT_REFUSED: i32 = 97;
/// Exit code of a worker that could not start for a reason that may pass (a resource
/// limit): the parent retries the start.
pub(crate) const EXIT_TRANSIENT: i32 = 96;
/// Exit code of a worker whose initializer failed.
pub(crate) const EXIT_INIT_FAILED: i32 = 98;
/// Exit code of a worker that received a malformed frame stream.
pub(crate) const EXIT_PROTOCOL: i32 = 99;

/// The value of [`ENV`] for a worker of this process whose descriptors start at `first`
/// (and whose output is captured with markers made of `capture`).
pub(crate) fn env_value(first: RawFd, capture: Option<u64>) -> String {
    match capture {
        None => format!("{VERSION}:{}:{first}", std::process::id()),
        Some(nonce) => format!("{VERSION}:{}:{first}:{nonce:x}", std::process::id()),
    }
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

/// Refuses worker mode: one line on standard error (nothing that helps forge a worker), and
/// exit.
fn refuse(why: &str) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "cfutures-process-pool: not serving as a worker process: {why}"
    );
    std::process::exit(EXIT_REFUSED)
}

fn serve(v: &str) -> ! {
    if sys::is_privileged() {
        refuse(&format!(
            "{ENV} is set, but this program runs with elevated privileges (setuid, setgid \
             or capabilities)"
        ));
    }
    let parts: Vec<&str> = v.split(':').collect();
    let nums: Option<Vec<i32>> = parts
        .iter()
        .skip(1)
        .take(2)
        .map(|p| p.parse().ok())
        .collect();
    let capture: Option<Option<u64>> = match parts.get(3) {
        None => Some(None),
        Some(hex) => u64::from_str_radix(hex, 16).ok().map(Some),
    };
    let (ppid, first, capture) = match (parts.first(), nums.as_deref(), capture) {
        (Some(&VERSION), Some(&[ppid, first]), Some(capture))
            if first > 2 && first < i32::MAX - 4 && parts.len() <= 4 =>
        {
            (ppid, first, capture)
        }
        _ => refuse(&format!(
            "{ENV} is set, but not by a process pool of this version (was it set by hand?)"
        )),
    };
    let (cmd, res, ctl, claims) = (first, first + 1, first + 2, first + 3);
    // A worker never outlives its parent: on Linux the kernel kills us when the parent
    // (the pool's I/O thread, which started us) goes; everywhere, end of file on the
    // command pipe ends the serve loop.
    sys::die_with_parent();
    if sys::parent_pid() != ppid {
        refuse("the process pool that started it is gone");
    }
    use rustix::fs::FileType;
    let genuine = sys::file_type(cmd) == Some(FileType::Fifo)
        && sys::file_type(res) == Some(FileType::Fifo)
        && sys::is_parents_socket(ctl, ppid)
        && sys::file_type(claims) == Some(FileType::RegularFile);
    if !genuine {
        refuse(&format!(
            "{ENV} is set, but the process pool's descriptors are not where it says (was it \
             set by hand?)"
        ));
    }
    // Everything else this process inherited is not ours to keep open (a descriptor the
    // parent left inheritable, a copy of another pool's pipe, ...).
    sys::close_all_but(&[cmd, res, ctl, claims]);
    // SAFETY: the four descriptors were checked to be open (fstat succeeded on each) and
    // were kept above; nothing else in this process owns them (worker mode starts before
    // `main`), so each becomes owned here exactly once.
    let [cmd, res, ctl, claims] =
        [cmd, res, ctl, claims].map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    for fd in [&cmd, &res, &ctl, &claims] {
        let _ = sys::set_cloexec(fd.as_fd());
    }
    sys::ignore_sigpipe();

    let mut io = WorkerIo {
        cmd,
        res,
        ctl,
        reader: StreamReader::default(),
        claims: None,
        seq: 0,
        confused: false,
        fds: FdQueue::default(),
        args: MapCache::default(),
        current: None,
        results: ResultSegments::new(usize::MAX),
        marker: capture.map(crate::output::magic),
    };
    let greeting = match io.reader.next(|b| sys::read(io.cmd.as_fd(), b), |_| true) {
        Ok(Some(frame)) => frame.to_vec(),
        // The parent went away before greeting.
        _ => std::process::exit(0),
    };
    // What may fail for a while (a descriptor or memory limit): the worker exits without
    // greeting, which the parent takes as a start that failed, and retries. Only a greeting
    // that names another build is a refusal (retrying cannot help).
    let transient = |why: String| -> ! {
        let _ = writeln!(
            std::io::stderr(),
            "cfutures-process-pool: a worker process could not start: {why}"
        );
        std::process::exit(EXIT_TRANSIENT)
    };
    let build = sys::exe_identity()
        .unwrap_or_else(|e| transient(format!("cannot identify its executable: {e}")));
    let options = match handshake::check_greeting_options(&greeting, &build) {
        Ok(options) => options,
        Err(why) => {
            // The parent is verified: it gets the details; standard error gets one line.
            let _ = sys::write_all(io.res.as_fd(), &handshake::hello_frame(Err(why)));
            refuse("the process pool's parent is not the same build as this program");
        }
    };
    let page = ClaimPage::open(claims)
        .unwrap_or_else(|e| transient(format!("cannot map the claim page: {e}")));
    let page = Arc::new(page);
    let threshold = usize::try_from(options.segment_threshold).unwrap_or(usize::MAX);
    io.results = ResultSegments::new(threshold);
    io.results.claims = Some(page.clone());
    io.claims = Some(page);
    // Shared data read here stays mapped for the next tasks (a while).
    cfutures_remote::oob::keep_shared(4, segments::IDLE);
    if sys::write_all(
        io.res.as_fd(),
        &handshake::hello_frame(Ok(std::process::id())),
    )
    .is_err()
    {
        std::process::exit(0);
    }
    match serve::serve(&mut io) {
        // End of the command stream: no more work will come (shutdown, retirement, or the
        // parent died); or the parent is gone.
        ServeEnd::Done | ServeEnd::Io(_) if !io.confused => std::process::exit(0),
        ServeEnd::InitFailed => std::process::exit(EXIT_INIT_FAILED),
        _ => std::process::exit(EXIT_PROTOCOL),
    }
}

/// The worker's transport: frames in on the command pipe and out on the result pipe, the
/// descriptors of large payloads and shared data beside them on the control socket; each
/// task frame is claimed on the claim page before it runs, and skipped if the parent took
/// it back.
struct WorkerIo {
    cmd: OwnedFd,
    res: OwnedFd,
    /// Descriptors come (and go) here, each message just before its frame.
    ctl: OwnedFd,
    reader: StreamReader,
    claims: Option<Arc<ClaimPage>>,
    /// The stream number of the next task frame.
    seq: u64,
    /// The claim page and the stream disagree: stop.
    confused: bool,
    fds: FdQueue,
    /// The parent's argument segments, mapped here.
    args: MapCache,
    /// The argument segment of the command running now.
    current: Option<Arc<Mapping>>,
    /// Large results go here.
    results: ResultSegments,
    /// The output marker's pattern, when the pool captures output.
    marker: Option<[u8; 16]>,
}

impl WorkerIo {
    /// Before blocking on the command pipe: while segments or mappings are kept, wait only
    /// until the next one is due to be given back, and give it back.
    fn idle_wait(fd: BorrowedFd<'_>, args: &mut MapCache, results: &mut ResultSegments) {
        loop {
            if args.is_empty() && results.is_empty() && !cfutures_remote::oob::keeps_shared() {
                return; // (no clock read for tiny tasks)
            }
            let now = Instant::now();
            let next = [
                args.trim(now),
                results.trim(now),
                cfutures_remote::oob::trim_shared(now),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(due) = next else {
                return;
            };
            let mut p = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let _ = sys::poll(&mut p, Some(due.saturating_duration_since(now)));
            if !p[0].revents().is_empty() {
                return;
            }
        }
    }
}

impl Transport for WorkerIo {
    fn recv(&mut self) -> std::io::Result<Option<&[u8]>> {
        Ok(self.recv_command()?.map(|c| c.frame))
    }

    fn recv_command(&mut self) -> std::io::Result<Option<Command<'_>>> {
        let WorkerIo {
            cmd,
            ctl,
            reader,
            claims,
            seq,
            confused,
            fds,
            args,
            current,
            results,
            ..
        } = self;
        *current = None;
        let fd: BorrowedFd<'_> = cmd.as_fd();
        let mut beside: Vec<OwnedFd> = Vec::new();
        let frame = reader.next(
            |b| {
                Self::idle_wait(fd, args, results);
                sys::read(fd, b)
            },
            |frame| {
                beside.clear();
                if *confused {
                    return true;
                }
                // Descriptors sent with the frame come off the socket whether it runs or
                // not (the next frame's follow them).
                if frame.len() > 4 && frame[4] & wire::OUT_OF_LINE != 0 {
                    let got = match Ext::of_command(frame) {
                        Ok((Some(ext), _)) => {
                            fds.take(ctl.as_fd(), segments::fd_count(&ext), true).ok()
                        }
                        _ => None,
                    };
                    match got {
                        Some(v) => beside = v,
                        None => {
                            *confused = true;
                            return true;
                        }
                    }
                }
                if frame.len() < 5 || frame[4] & !wire::OUT_OF_LINE != wire::CMD_RUN {
                    return true;
                }
                let s = *seq;
                *seq += 1;
                match claims.as_ref().map_or(Claim::Run, |c| c.claim(s)) {
                    Claim::Run => true,
                    Claim::Revoked => false,
                    Claim::Confused => {
                        // Stop reading: `recv` ends the stream below.
                        *confused = true;
                        true
                    }
                }
            },
        )?;
        if *confused {
            return Ok(None);
        }
        let Some(frame) = frame else {
            return Ok(None);
        };
        if frame.len() >= wire::CMD_HEADER && frame[4] & wire::OUT_OF_LINE == 0 {
            // The common case: everything is in the frame.
            return Ok(Some(Command {
                frame,
                payload: Some(&frame[wire::CMD_HEADER..]),
                attachments: Vec::new(),
                out_of_line: Some(results),
            }));
        }
        let mut beside = beside.into_iter();
        let payload = match Ext::of_command(frame) {
            Ok((None, p)) => Some(p),
            Ok((Some(ext), p)) => match ext.payload {
                Placement::Segment { len, .. } => beside
                    .next()
                    .and_then(|fd| args.map(fd, len).ok())
                    .map(|m| &**current.insert(m))
                    .map(|m| {
                        // SAFETY: the parent writes an argument segment only while no job
                        // that names it is outstanding, and this job is until its result
                        // reaches the parent, which happens after this borrow ends (the
                        // result is sent after the command has run). `len` bytes are
                        // mapped: `MapCache::map` checked the file against it.
                        let all = unsafe { m.as_slice() };
                        &all[..len as usize]
                    }),
                _ => Some(p),
            },
            Err(_) => None,
        };
        Ok(Some(Command {
            frame,
            payload,
            attachments: beside.collect(),
            out_of_line: Some(results),
        }))
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        if frame.len() > crate::io::MAX_RESULT_FRAME && frame[4] & wire::OUT_OF_LINE == 0 {
            // Over what the parent accepts in a frame (it would take the frame for a stream
            // out of sync): the task fails with a codec error instead.
            let mut err = Vec::with_capacity(256);
            let start = wire::begin_res(&mut err, wire::u64_at(frame, 5));
            wire::encode_error(
                &wire::codec(format!(
                    "the result is {} bytes, over the {}-byte limit of a process-pool result \
                     in a frame (large results travel in shared memory unless \
                     shared_memory_threshold turned it off)",
                    frame.len(),
                    crate::io::MAX_RESULT_FRAME
                )),
                &mut err,
            );
            err[start + 4] = wire::RES_ERR;
            let _ = wire::finish(&mut err, start);
            return self.send(&err);
        }
        if let Some(magic) = &self.marker {
            // The end of a task's (or the initializer's) output, before its result.
            let ends_task = frame.len() >= wire::RES_HEADER
                && matches!(
                    frame[4] & !wire::OUT_OF_LINE,
                    wire::RES_OK | wire::RES_ERR | wire::RES_INIT_OK | wire::RES_INIT_ERR
                );
            if ends_task {
                crate::output::end_of_task(magic, wire::u64_at(frame, 5));
            }
        }
        // What the result's extension names goes first, on the control socket.
        if frame.len() > wire::RES_HEADER && frame[4] & wire::OUT_OF_LINE != 0 {
            let ext = Ext::parse(&frame[wire::RES_HEADER..]).map_err(std::io::Error::other)?;
            self.results.send_beside(self.ctl.as_fd(), &ext)?;
        }
        let r = sys::write_all(self.res.as_fd(), frame);
        self.results.sent();
        self.current = None;
        r
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
