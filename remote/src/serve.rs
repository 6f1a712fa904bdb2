//! The worker side: the loop that runs command frames and sends back result frames, over
//! any [`Transport`] (the process pool's pipes, MPI messages).

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::oob::{self, OutOfLine};
use crate::wire::{self, FnId, Out, Placement};

/// How a worker receives command frames and sends result frames.
///
/// A transport implements [`recv`](Self::recv) and [`send`](Self::send); one with shared
/// memory also implements [`recv_command`](Self::recv_command), which resolves a frame's
/// out-of-line payload and attachments and offers its [`OutOfLine`] for the result (see
/// [`crate::oob`]).
pub trait Transport {
    /// The next complete command frame (length prefix included), or `None` at the end of
    /// the stream (no more work will come).
    ///
    /// # Errors
    ///
    /// If the transport failed; the worker stops serving.
    fn recv(&mut self) -> io::Result<Option<&[u8]>>;

    /// Sends one complete result frame (with what its extension says travels beside it).
    ///
    /// # Errors
    ///
    /// If the transport failed (the parent is gone); the worker stops serving.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;

    /// The next command, its payload resolved. The default reads [`recv`](Self::recv)'s
    /// frames, whose payloads are in the frame ([`Command::in_band`]).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    fn recv_command(&mut self) -> io::Result<Option<Command<'_>>> {
        Ok(self.recv()?.map(Command::in_band))
    }
}

/// A command frame as the serve loop runs it.
pub struct Command<'a> {
    /// The frame (header, extension if any, in-band payload).
    pub frame: &'a [u8],
    /// The payload: in the frame, or (resolved by the transport) out of line. `None` if it
    /// is out of line and the transport could not resolve it (the task fails with a codec
    /// error).
    pub payload: Option<&'a [u8]>,
    /// The descriptors of the shared data the payload refers to.
    pub attachments: Vec<OwnedFd>,
    /// Where the result's payload may go when it is large (`None`: in its frame).
    pub out_of_line: Option<&'a mut dyn OutOfLine>,
}

impl std::fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("frame_len", &self.frame.len())
            .field("payload_len", &self.payload.map(<[u8]>::len))
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

impl<'a> Command<'a> {
    /// A frame whose payload is in the frame itself (a payload out of line is unresolved).
    pub fn in_band(frame: &'a [u8]) -> Self {
        let payload = match wire::Ext::of_command(frame) {
            Ok((None, p)) => Some(p),
            Ok((Some(ext), p)) if ext.payload == Placement::InBand => Some(p),
            _ => None,
        };
        Command {
            frame,
            payload,
            attachments: Vec::new(),
            out_of_line: None,
        }
    }
}

/// Why [`serve`] returned.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeEnd {
    /// The command stream ended: no more work (shutdown, retirement, or the parent died).
    Done,
    /// The initializer failed; its error was sent. The worker should exit.
    InitFailed,
    /// A command frame was too short to hold a header: the stream cannot be trusted.
    Protocol,
    /// The transport failed.
    Io(io::Error),
}

/// Serves command frames until the stream ends, or a [`CMD_EXIT`](wire::CMD_EXIT) frame.
///
/// Each result is sent as soon as its frame has run, never held back to go out together
/// with later ones: the parent attributes a worker's death, and a time limit, to the first
/// task of that worker whose result it has not seen, so a finished task's result must not
/// wait behind the next task (which may be long, and may be the one that dies). An
/// initializer's completion in particular must reach the parent before the first task
/// runs. (Batching results while more frames were queued made tiny tasks ~1.5× cheaper, but
/// broke that attribution.)
///
/// Call it only in a worker whose handshake succeeded ([`crate::handshake`]): it runs the
/// same executable as its parent and holds the parent's key.
pub fn serve(t: &mut impl Transport) -> ServeEnd {
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let cmd = match t.recv_command() {
            Ok(Some(c)) if c.frame.len() > 4 && c.frame[4] == wire::CMD_EXIT => {
                return ServeEnd::Done
            }
            Ok(Some(c)) => c,
            Ok(None) => return ServeEnd::Done,
            Err(e) => return ServeEnd::Io(e),
        };
        let ran = run_frame(cmd, &mut out);
        if let Err(e) = t.send(&out) {
            return ServeEnd::Io(e);
        }
        out.clear();
        if out.capacity() > 1 << 20 {
            out = Vec::with_capacity(4096);
        }
        match ran {
            Ran::Ok => {}
            Ran::InitFailed => return ServeEnd::InitFailed,
            Ran::Protocol => return ServeEnd::Protocol,
        }
    }
}

enum Ran {
    Ok,
    InitFailed,
    Protocol,
}

/// Runs one command frame, leaving one result frame in `out` (nothing for a frame too short
/// to have a header).
fn run_frame(cmd: Command<'_>, out: &mut Vec<u8>) -> Ran {
    let Command {
        frame,
        payload,
        attachments,
        out_of_line,
    } = cmd;
    if frame.len() < wire::CMD_HEADER {
        // Without a complete header the stream cannot be trusted any further.
        return Ran::Protocol;
    }
    let kind = frame[4] & !wire::OUT_OF_LINE;
    let id = wire::u64_at(frame, 5);
    let f = FnId {
        offset: wire::u64_at(frame, 13) as i64,
        tag: wire::u64_at(frame, 21),
    };
    let start = wire::begin_res(out, id);
    if kind == wire::CMD_PING {
        out[start + 4] = wire::RES_PONG;
        let _ = wire::finish(out, start);
        return Ran::Ok;
    }
    let t0 = Instant::now();
    let mut o = Out::new(out, start, out_of_line);
    let ok = match (kind, payload) {
        (wire::CMD_RUN | wire::CMD_INIT, Some(payload)) => {
            // SAFETY: `serve`'s contract: the handshake succeeded, so this process runs the
            // parent's executable and holds the parent's key.
            match unsafe { wire::resolve(f) } {
                // The parent is verified (the handshake): its shared data is trusted.
                Some(tramp) => oob::with_source(attachments, true, || tramp(payload, &mut o)),
                None => {
                    wire::encode_error(
                        &wire::codec(format!(
                            "the frame names a function this worker cannot run (offset {}, \
                             bad tag)",
                            f.offset
                        )),
                        o.buf,
                    );
                    false
                }
            }
        }
        (wire::CMD_RUN | wire::CMD_INIT, None) => {
            wire::encode_error(
                &wire::codec(
                    "the task's payload is out of line, and this worker's transport could \
                     not resolve it",
                ),
                o.buf,
            );
            false
        }
        (k, _) => {
            wire::encode_error(&wire::codec(format!("unknown frame kind {k}")), o.buf);
            false
        }
    };
    o.seal(start + wire::RES_HEADER);
    let flag = if o.has_ext() { wire::OUT_OF_LINE } else { 0 };
    let ns = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    out[start + 13..start + 21].copy_from_slice(&ns.to_le_bytes());
    out[start + 4] = flag
        | match (kind, ok) {
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
        Ran::InitFailed
    } else {
        Ran::Ok
    }
}

/// A [`Transport`] over a byte stream (a pipe, a socket): frames are cut out of a buffer
/// at their length prefix.
#[derive(Debug)]
pub struct StreamReader {
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
}

impl Default for StreamReader {
    fn default() -> Self {
        StreamReader {
            buf: vec![0; 64 * 1024],
            lo: 0,
            hi: 0,
        }
    }
}

impl StreamReader {
    /// The next complete frame that `keep` accepts (frames it refuses are skipped), reading
    /// more with `read` (which returns 0 at end of file) as needed; `None` at end of file.
    ///
    /// # Errors
    ///
    /// What `read` returns.
    pub fn next(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<Option<&[u8]>> {
        loop {
            while let Some(n) = wire::complete_frame(&self.buf[self.lo..self.hi]) {
                let at = self.lo;
                self.lo += n;
                if keep(&self.buf[at..at + n]) {
                    return Ok(Some(&self.buf[at..at + n]));
                }
            }
            // Make room for the rest of the current frame, then read more.
            if self.lo == self.hi {
                self.lo = 0;
                self.hi = 0;
            } else if self.lo > 0 {
                self.buf.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            }
            let need = if self.hi >= 4 {
                4 + u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize
            } else {
                0
            };
            if need > self.buf.len() {
                self.buf.resize(need, 0);
            } else if need <= 64 * 1024 && self.buf.len() > 1 << 20 {
                // A large frame went through: give the memory back.
                self.buf.truncate(64 * 1024);
                self.buf.shrink_to_fit();
            }
            if self.hi == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match read(&mut self.buf[self.hi..])? {
                0 => return Ok(None),
                n => self.hi += n,
            }
        }
    }
}
