//! The worker side: spawn-mode detection ([`maybe_serve`]), and the serve loop over MPI
//! messages ([`serve_comm`], also used by the ranks of world mode).

use std::ffi::c_int;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_remote::handshake;
use cfutures_remote::serve::{self, ServeEnd, Transport};

use crate::raw::{
    self, Comm, CTL_CONFIG, CTL_KILL, TAG_BEAT, TAG_BYE, TAG_CTL, TAG_FRAME, TAG_INFO,
};

/// The first argument of a spawned worker (`MPI_Comm_spawn`'s argv).
pub(crate) const WORKER_ARG: &str = "--cfutures-mpi-worker";

/// The second argument of a spawned echo peer (the raw ping-pong baseline).
pub(crate) const ECHO_ARG: &str = "--echo";

/// The raw baseline: sends back every message, blocking MPI calls, until an empty one.
fn echo(comm: Comm) {
    let mut buf = Vec::new();
    loop {
        let mut st = None;
        while st.is_none() {
            st = comm.iprobe(0, raw::ANY);
        }
        let (src, tag, n) = st.expect("probed");
        if comm.recv(src, tag, n, &mut buf).is_err() || n == 0 {
            return;
        }
        if comm.send(&buf, 0, tag).is_err() {
            return;
        }
    }
}

/// Exit code of a worker whose handshake failed (another build).
pub(crate) const EXIT_REFUSED: i32 = 97;
/// Exit code of a worker told to stop (its task ran past a time limit).
pub(crate) const EXIT_KILLED: i32 = 95;

/// If this process was spawned as a worker: serve, then exit. Returns otherwise.
pub(crate) fn maybe_serve() {
    if std::env::args_os().nth(1).as_deref() != Some(WORKER_ARG.as_ref()) {
        return;
    }
    trace!("worker init");
    // Hash the executable (the handshake's build identity) while MPI starts.
    let _ = std::thread::Builder::new().spawn(cfutures_remote::ident::build_id);
    match raw::ensure_init() {
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(io::stderr(), "cfutures-mpi worker: {e}");
            std::process::exit(EXIT_REFUSED);
        }
    }
    let Some(parent) = raw::parent() else {
        let _ = writeln!(
            io::stderr(),
            "cfutures-mpi: {WORKER_ARG} given, but this process was not spawned by MPI; not \
             serving"
        );
        raw::finalize();
        std::process::exit(EXIT_REFUSED);
    };
    if std::env::args_os().nth(2).as_deref() == Some(ECHO_ARG.as_ref()) {
        echo(parent);
        parent.disconnect();
        raw::finalize();
        std::process::exit(0);
    }
    trace!("worker serving");
    let end = serve_comm(parent, 0);
    trace!("worker disconnect");
    // Freed, not disconnected (as the executor does): a disconnect waits for every rank of
    // both sides, forever if one was lost.
    parent.free();
    raw::finalize();
    trace!("worker finalized");
    std::process::exit(match end {
        ServeEnd::Done => 0,
        ServeEnd::InitFailed => 98,
        _ => 99,
    })
}

/// Polls with backoff: spins (yielding) while there was activity in the last `SPIN`, then
/// sleeps, 20 µs doubling up to 1 ms (5 ms after a second without activity). Open MPI's own blocking calls spin; this does not
/// take a core while idle.
pub(crate) struct Backoff {
    last: Instant,
    sleep: Duration,
}

/// How long after the last activity a poller keeps spinning.
pub(crate) const SPIN: Duration = Duration::from_millis(2);
const MAX_SLEEP: Duration = Duration::from_millis(1);
/// After this long without activity, a poller sleeps up to [`MAX_IDLE_SLEEP`].
const LONG_IDLE: Duration = Duration::from_secs(1);
const MAX_IDLE_SLEEP: Duration = Duration::from_millis(5);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            last: Instant::now(),
            sleep: Duration::from_micros(20),
        }
    }
    pub(crate) fn reset(&mut self) {
        self.last = Instant::now();
        self.sleep = Duration::from_micros(20);
    }
    /// How long to pause now (zero: just yield).
    pub(crate) fn next(&mut self) -> Duration {
        self.next_spinning(true)
    }
    /// [`next`](Self::next), without the spinning phase if `spin` is false (nothing is
    /// expected soon: spinning would only take a core from the tasks).
    pub(crate) fn next_spinning(&mut self, spin: bool) -> Duration {
        if spin && self.last.elapsed() < SPIN {
            return Duration::ZERO;
        }
        let s = self.sleep;
        // Idle for long: wake less often (an idle worker then costs ~0.5% of a core).
        let cap = if self.last.elapsed() > LONG_IDLE {
            MAX_IDLE_SLEEP
        } else {
            MAX_SLEEP
        };
        self.sleep = (self.sleep * 2).min(cap);
        s
    }
    pub(crate) fn pause(&mut self) {
        match self.next() {
            Duration::ZERO => std::thread::yield_now(),
            d => std::thread::sleep(d),
        }
    }
}

struct MpiTransport {
    comm: Comm,
    master: c_int,
    buf: Vec<u8>,
    /// Where the next frame of `buf` starts (a message may carry several frames).
    pos: usize,
    /// Results held back to go in one message (see [`Transport::send`]).
    out: Vec<u8>,
    /// When the frame being run was taken.
    taken: Instant,
}

/// A task that ran shorter than this may have its result held back while the next frame of
/// the same message runs (their results then go in one message).
const SHORT_TASK: Duration = Duration::from_micros(50);
/// At most this many bytes of results are held back.
const HOLD_MAX: usize = 64 * 1024;

impl MpiTransport {
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.comm.send(&self.out, self.master, TAG_FRAME);
        self.out.clear();
        r
    }
}

impl MpiTransport {
    fn recv_tag(&mut self, tag: c_int) -> io::Result<()> {
        self.pos = 0;
        let mut b = Backoff::new();
        loop {
            if let Some((src, t, n)) = self.comm.iprobe(self.master, tag) {
                return self.comm.recv(src, t, n, &mut self.buf);
            }
            b.pause();
        }
    }
}

impl Transport for MpiTransport {
    fn recv(&mut self) -> io::Result<Option<&[u8]>> {
        if self.pos >= self.buf.len() {
            // Nothing more to run here: what was held back goes now, before waiting.
            self.flush()?;
            self.recv_tag(TAG_FRAME)?;
        }
        self.taken = Instant::now();
        let at = self.pos;
        match cfutures_remote::wire::complete_frame(&self.buf[at..]) {
            Some(n) => {
                self.pos += n;
                Ok(Some(&self.buf[at..at + n]))
            }
            None => {
                // A message that does not end with a whole frame: the stream cannot be
                // trusted (the serve loop stops on a frame too short for a header).
                self.pos = self.buf.len();
                Ok(Some(&[]))
            }
        }
    }
    /// Sends a result, or holds it back to go with the next ones when the task was short
    /// and more frames of the same message wait to run (tiny tasks then cost one message
    /// per batch, not per task). The serve loop's rule (each result goes as soon as its
    /// frame has run) is for attributing a worker's death to its task; here a lost worker
    /// fails every task it held, so holding a few microseconds of results back changes
    /// nothing but the number of messages — and at most the next task's run time.
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let more = self.pos < self.buf.len();
        if more && self.taken.elapsed() < SHORT_TASK && self.out.len() + frame.len() <= HOLD_MAX {
            self.out.extend_from_slice(frame);
            return Ok(());
        }
        if self.out.is_empty() {
            return self.comm.send(frame, self.master, TAG_FRAME);
        }
        self.out.extend_from_slice(frame);
        self.flush()
    }
}

/// Serves the executor at rank `master` of `comm` (an intercommunicator to a spawning
/// executor, or the executor's communicator in world mode) until it says EXIT.
pub(crate) fn serve_comm(comm: Comm, master: c_int) -> ServeEnd {
    let mut t = MpiTransport {
        comm,
        master,
        buf: Vec::with_capacity(4096),
        pos: 0,
        out: Vec::new(),
        taken: Instant::now(),
    };
    // 1. The greeting, and the heartbeat interval.
    if let Err(e) = t.recv_tag(TAG_FRAME) {
        return ServeEnd::Io(e);
    }
    let greeting = std::mem::take(&mut t.buf);
    if let Err(e) = t.recv_tag(TAG_CTL) {
        return ServeEnd::Io(e);
    }
    let beat = match t.buf.get(..16) {
        Some(b) if u64::from_le_bytes(b[..8].try_into().expect("8")) == CTL_CONFIG => {
            Duration::from_millis(u64::from_le_bytes(b[8..16].try_into().expect("8")).max(1))
        }
        _ => Duration::from_millis(200),
    };
    t.buf.clear();
    t.pos = 0;
    trace!("greeted");
    let build = match cfutures_remote::ident::build_id() {
        Ok(b) => b,
        Err(e) => {
            let why = format!("cannot identify its executable: {e}");
            let _ = comm.send(&handshake::hello_frame(Err(why.clone())), master, TAG_FRAME);
            return ServeEnd::Io(io::Error::other(why));
        }
    };
    if let Err(why) = handshake::check_greeting(&greeting, &build) {
        let _ = writeln!(io::stderr(), "cfutures-mpi worker: not serving: {why}");
        let _ = comm.send(&handshake::hello_frame(Err(why.clone())), master, TAG_FRAME);
        return ServeEnd::Io(io::Error::other(why));
    }
    trace!("build id checked");
    let pid = std::process::id();
    if let Err(e) = comm.send(&handshake::hello_frame(Ok(pid)), master, TAG_FRAME) {
        return ServeEnd::Io(e);
    }
    let mut info = pid.to_le_bytes().to_vec();
    info.extend_from_slice(raw::processor_name().as_bytes());
    if let Err(e) = comm.send(&info, master, TAG_INFO) {
        return ServeEnd::Io(e);
    }
    // 2. Heartbeats, from their own thread (a long task must not look like a lost worker),
    //    which also obeys the executor's KILL.
    let stop = Arc::new(AtomicBool::new(false));
    let beats = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("cfutures-mpi-heartbeat".into())
            .spawn(move || heartbeat(comm, master, beat, &stop))
    };
    let beats = match beats {
        Ok(h) => h,
        Err(e) => return ServeEnd::Io(e),
    };
    // 3. Serve.
    let end = serve::serve(&mut t);
    let _ = t.flush();
    stop.store(true, Ordering::Relaxed);
    beats.thread().unpark();
    let _ = beats.join();
    // The last message: nothing of this worker arrives after it (see the executor's
    // teardown).
    let _ = comm.send(&[], master, TAG_BYE);
    end
}

fn heartbeat(comm: Comm, master: c_int, every: Duration, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(every);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if comm.send(&[], master, TAG_BEAT).is_err() {
            break;
        }
        drain_ctl(comm, master);
    }
}

/// Obeys the executor's control messages.
fn drain_ctl(comm: Comm, master: c_int) {
    let mut buf = Vec::new();
    while let Some((src, tag, n)) = comm.iprobe(master, TAG_CTL) {
        if comm.recv(src, tag, n, &mut buf).is_err() {
            break;
        }
        let word = buf
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")));
        if word == Some(CTL_KILL) {
            let _ = writeln!(
                io::stderr(),
                "cfutures-mpi worker (pid {}): stopped by the executor (its task ran past its \
                 time limit)",
                std::process::id()
            );
            // SAFETY: `_exit` ends the process at once; no Rust state is used after it.
            unsafe { libc::_exit(EXIT_KILLED) };
        }
    }
}
