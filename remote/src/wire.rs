//! The wire format and the function-address technique (see the process pool's
//! `DESIGN-NOTES.md`).
//!
//! # Frames
//!
//! Every frame is `len: u32 LE` followed by `len` bytes:
//!
//! * parent → worker: `kind: u8, id: u64, fn_offset: i64, fn_tag: u64, payload`
//!   (`kind` is [`CMD_RUN`] or [`CMD_INIT`]; the payload is the postcard encoding of the
//!   task, argument, or chunk);
//! * worker → parent: `kind: u8, id: u64, run_ns: u64, payload` (`kind` is one of the
//!   `RES_*` constants; the payload is the postcard encoding of the output, or of a
//!   [`TaskError`]).
//!
//! Payloads are postcard with bulk fast paths (see [`crate::bulk`] for what is fast, and
//! `DESIGN-NOTES.md` for the codec): vectors of plain numbers and strings at the top level,
//! and byte and float vectors at any depth, are copied as raw bytes.
//!
//! # Out-of-line payloads and attachments
//!
//! For a transport with shared memory ([`OutOfLine`]), a frame may carry its payload out
//! of line (in a segment sent beside it) and the descriptors of shared data its payload
//! refers to. Such a frame has [`OUT_OF_LINE`] set in its `kind` byte and an extension
//! ([`Ext`], [`EXT_LEN`] bytes) right after its header: the number of attachments, where
//! the payload is (in the frame, after the extension; or in a segment of `len` bytes), and
//! a byte of the transport's own. Frames without the flag are exactly as above: a
//! transport without shared memory never sees the flag.
//!
//! # Functions
//!
//! What to run crosses as the address of a monomorphized *trampoline* (a plain `fn` of type
//! `Tramp`), as an offset from `anchor` (so address-space randomisation does not
//! matter), plus a keyed tag that only this parent can compute. The worker runs the same
//! executable (checked at start), so the same offset names the same code there.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Instant;

use cfutures_core::{panic_message, ChunkOutput, Task, TaskError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::oob::{self, OutOfLine};

/// Run a task (parent → worker).
pub const CMD_RUN: u8 = 1;
/// Run the initializer (parent → worker, the first frame after the greeting).
pub const CMD_INIT: u8 = 2;
/// The parent's greeting (parent → worker, the very first frame): its key and what the
/// worker checks that it runs the same build (see [`crate::handshake`]). No function.
pub const CMD_GREET: u8 = 3;
/// Answer with [`RES_PONG`] (same id) once every frame before this one is done. No function.
pub const CMD_PING: u8 = 4;
/// No more work: stop serving once every frame before this one is done (the worker exits).
/// It ends the stream even where a copy of the parent's end keeps it open (a forked child
/// of the parent holding one). No function.
pub const CMD_EXIT: u8 = 5;

/// The task succeeded; payload: the output.
pub const RES_OK: u8 = 1;
/// The task failed; payload: a `TaskError`.
pub const RES_ERR: u8 = 2;
/// The worker started; payload: `Result<u32 /* pid */, String /* why it refuses */>`.
pub const RES_HELLO: u8 = 3;
/// The initializer succeeded.
pub const RES_INIT_OK: u8 = 4;
/// The initializer failed; payload: a `TaskError`. The worker exits.
pub const RES_INIT_ERR: u8 = 5;
/// The answer to a [`CMD_PING`]; no payload.
pub const RES_PONG: u8 = 6;

/// Bytes of a command frame before the payload (length prefix included).
pub const CMD_HEADER: usize = 4 + 1 + 8 + 8 + 8;
/// Bytes of a result frame before the payload (length prefix included).
pub const RES_HEADER: usize = 4 + 1 + 8 + 8;

/// The largest frame accepted (the length prefix is a `u32`).
pub const MAX_FRAME: usize = u32::MAX as usize;

/// Set in a frame's `kind` byte when an [`Ext`] follows its header.
pub const OUT_OF_LINE: u8 = 0x80;
/// Bytes of a frame's [`Ext`].
pub const EXT_LEN: usize = 1 + 1 + 1 + 8;

/// A frame's extension: what travels beside it (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ext {
    /// Descriptors of shared data that travel with the frame, after the payload segment's.
    pub attachments: u8,
    /// Where the payload is.
    pub payload: Placement,
}

/// Where a frame's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// In the frame, after the extension.
    InBand,
    /// In a segment sent beside the frame (before its attachments): its first `len` bytes.
    Segment {
        /// The payload's length.
        len: u64,
        /// A byte of the transport's own (see [`OutOfLine::payload`]).
        tag: u8,
    },
}

impl Ext {
    /// The extension's bytes.
    pub fn to_bytes(self) -> [u8; EXT_LEN] {
        let mut b = [0u8; EXT_LEN];
        b[0] = self.attachments;
        if let Placement::Segment { len, tag } = self.payload {
            b[1] = 1;
            b[2] = tag;
            b[3..11].copy_from_slice(&len.to_le_bytes());
        }
        b
    }

    /// Reads an extension.
    ///
    /// # Errors
    ///
    /// If `b` is shorter than [`EXT_LEN`] or names an unknown placement.
    pub fn parse(b: &[u8]) -> Result<Ext, String> {
        if b.len() < EXT_LEN {
            return Err("a frame's extension is cut short".into());
        }
        let payload = match b[1] {
            0 => Placement::InBand,
            1 => Placement::Segment {
                len: u64_at(b, 3),
                tag: b[2],
            },
            p => return Err(format!("a frame's payload has an unknown placement {p}")),
        };
        Ok(Ext {
            attachments: b[0],
            payload,
        })
    }

    /// The extension of a complete command frame, and its in-band payload; `None` for a
    /// frame without one (its payload follows the header).
    ///
    /// # Errors
    ///
    /// If the frame is too short for its header and extension.
    #[inline]
    pub fn of_command(frame: &[u8]) -> Result<(Option<Ext>, &[u8]), String> {
        if frame.len() < CMD_HEADER {
            return Err("a command frame shorter than its header".into());
        }
        if frame[4] & OUT_OF_LINE == 0 {
            return Ok((None, &frame[CMD_HEADER..]));
        }
        let ext = Ext::parse(&frame[CMD_HEADER..])?;
        Ok((Some(ext), &frame[CMD_HEADER + EXT_LEN..]))
    }
}

/// A trampoline: decodes its input, runs, appends the encoded outcome to `out`; `true` if
/// the outcome is a value, `false` if it is a [`TaskError`].
pub(crate) type Tramp = fn(input: &[u8], out: &mut Out<'_>) -> bool;

/// The base every function offset is measured from. Never called.
#[inline(never)]
fn anchor(_: &[u8], _: &mut Out<'_>) -> bool {
    // A body of its own, so that identical-code folding has nothing to merge it with.
    std::hint::black_box(0x5eed_cf00_u32) == 0
}

/// A trampoline whose offset the handshake compares: same offset in parent and worker
/// means the same code layout.
fn probe(_: &[u8], _: &mut Out<'_>) -> bool {
    std::hint::black_box(0xcf_u8) == 0xcf
}

/// A function named on the wire: its offset from `anchor` and its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FnId {
    /// The function's address minus the anchor's.
    pub offset: i64,
    /// The keyed tag of `offset` (only the parent and its workers can compute it).
    pub tag: u64,
}

/// The per-parent secret key of the function tags (the worker receives its parent's).
static KEY: OnceLock<[u64; 2]> = OnceLock::new();

pub(crate) fn key() -> [u64; 2] {
    *KEY.get_or_init(|| {
        use std::collections::hash_map::RandomState;
        use std::hash::BuildHasher;
        let s = RandomState::new();
        [
            s.hash_one(0x1234_u64 ^ std::process::id() as u64),
            s.hash_one(Instant::now()),
        ]
    })
}

/// Installs the parent's key (worker side, at start).
pub(crate) fn set_key(k: [u64; 2]) {
    let _ = KEY.set(k);
}

/// The tag of `offset`: a keyed SipHash only a holder of the key can compute.
pub(crate) fn tag(offset: i64) -> u64 {
    let k = key();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    k[0].hash(&mut h);
    offset.hash(&mut h);
    k[1].hash(&mut h);
    h.finish()
}

fn offset_of(t: Tramp) -> i64 {
    (t as usize as i64).wrapping_sub(anchor as Tramp as usize as i64)
}

/// The offset of the handshake probe.
pub(crate) fn probe_offset() -> i64 {
    offset_of(probe)
}

/// Names `t` on the wire.
///
/// # Errors
///
/// If `t` lives in another loaded module than the pool (a Rust `dylib`), where a
/// module-relative offset would not survive address-space randomisation.
pub(crate) fn fn_id(t: Tramp) -> Result<FnId, TaskError> {
    thread_local! {
        static LAST_OK: Cell<usize> = const { Cell::new(0) };
    }
    let addr = t as usize;
    if LAST_OK.with(|c| c.get()) != addr {
        if module_base(addr) != module_base(anchor as Tramp as usize) {
            return Err(TaskError::Codec {
                message: "the function lives in a dynamically loaded library, not in the \
                          executable that the pool's workers run; link it statically"
                    .into(),
            });
        }
        LAST_OK.with(|c| c.set(addr));
    }
    let offset = offset_of(t);
    Ok(FnId {
        offset,
        tag: tag(offset),
    })
}

fn module_base(addr: usize) -> usize {
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-pointer.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(addr as *const libc::c_void, &mut info) == 0 {
            0
        } else {
            info.dli_fbase as usize
        }
    }
}

/// Resolves a function named on the wire, if its tag is genuine.
///
/// # Safety
///
/// Call only in a worker whose handshake succeeded (it runs the same executable as its
/// parent, with the parent's key installed).
pub(crate) unsafe fn resolve(id: FnId) -> Option<Tramp> {
    if id.tag != tag(id.offset) {
        return None;
    }
    let addr = (anchor as Tramp as usize as i64).wrapping_add(id.offset) as usize;
    // SAFETY: the tag is genuine, so the parent computed `id` in `fn_id` from a function
    // pointer of type `Tramp` (1: `fn_id` is the only place tags are made, and only the
    // parent and its workers hold the key); `fn_id` checked that function lives in the same
    // module as `anchor` (2), so its offset from `anchor` is a property of the file, not of
    // where it was loaded; and this worker runs the same file (3: the caller's contract,
    // checked by the handshake). So `addr` is the address of that same `Tramp` function in
    // this process.
    Some(unsafe { std::mem::transmute::<usize, Tramp>(addr) })
}

// ---------------------------------------------------------------------------------------
// Frame building.

/// Appends a command frame header (length patched by [`finish`]); returns its start.
pub fn begin_cmd(buf: &mut Vec<u8>, kind: u8, id: u64, f: FnId) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&f.offset.to_le_bytes());
    buf.extend_from_slice(&f.tag.to_le_bytes());
    start
}

/// A complete command frame of `kind` with no function and no payload
/// ([`CMD_PING`], [`CMD_EXIT`]).
pub fn control_frame(kind: u8, id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(CMD_HEADER);
    let s = begin_cmd(&mut out, kind, id, FnId { offset: 0, tag: 0 });
    let _ = finish(&mut out, s);
    out
}

/// The header of a result frame, read as soon as its bytes are in (before the payload), so
/// that a receiver can check it at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResHeader {
    /// The frame's length, prefix included.
    pub len: usize,
    /// One of the `RES_*` kinds.
    pub kind: u8,
    /// The id of the command frame it answers (0 for the greeting and the initializer).
    pub id: u64,
    /// How long the task ran, in nanoseconds.
    pub run_ns: u64,
    /// The frame's extension (its `kind` had [`OUT_OF_LINE`], which `kind` here does not
    /// show).
    pub ext: Option<Ext>,
}

impl ResHeader {
    /// The header at the start of `buf`, once [`RES_HEADER`] bytes are there (and its
    /// extension's, if it has one); `Err` if the frame claims to be shorter than that, or
    /// its extension is malformed (the stream is out of sync).
    pub fn parse(buf: &[u8]) -> Option<Result<ResHeader, String>> {
        if buf.len() < RES_HEADER {
            return None;
        }
        let len = 4 + u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        let flagged = buf[4] & OUT_OF_LINE != 0;
        let min = if flagged {
            RES_HEADER + EXT_LEN
        } else {
            RES_HEADER
        };
        if len < min {
            return Some(Err(format!(
                "a result frame of {len} bytes is shorter than a header"
            )));
        }
        let ext = if flagged {
            if buf.len() < min {
                return None;
            }
            match Ext::parse(&buf[RES_HEADER..]) {
                Ok(e) => Some(e),
                Err(e) => return Some(Err(e)),
            }
        } else {
            None
        };
        Some(Ok(ResHeader {
            len,
            kind: buf[4] & !OUT_OF_LINE,
            id: u64_at(buf, 5),
            run_ns: u64_at(buf, 13),
            ext,
        }))
    }

    /// Where the frame's in-band payload starts (after the header and the extension).
    pub fn payload_start(&self) -> usize {
        if self.ext.is_some() {
            RES_HEADER + EXT_LEN
        } else {
            RES_HEADER
        }
    }
}

/// Appends a result frame header (length and kind patched by [`finish`]); returns its start.
pub fn begin_res(buf: &mut Vec<u8>, id: u64) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.push(0);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    start
}

/// Patches the length of the frame that starts at `start`.
///
/// # Errors
///
/// If the frame is larger than [`MAX_FRAME`].
pub fn finish(buf: &mut [u8], start: usize) -> Result<(), TaskError> {
    let len = buf.len() - start - 4;
    if len > MAX_FRAME {
        return Err(codec(format!(
            "a frame of {len} bytes is larger than the 4 GiB limit"
        )));
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Reads a little-endian `u64` at `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The length of the complete frame at the start of `buf` (prefix included), if complete.
pub fn complete_frame(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    (buf.len() >= 4 + len).then_some(4 + len)
}

/// A [`TaskError::Codec`] with this message.
pub fn codec(message: impl Into<std::sync::Arc<str>>) -> TaskError {
    TaskError::Codec {
        message: message.into(),
    }
}

/// Appends the encoding of `v` to `out` (postcard, with the bulk fast paths); on failure
/// (an error or a panic in its `Serialize`) leaves `out` as it was.
pub fn encode_into<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), TaskError> {
    let start = out.len();
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        codec::encode(v, codec::VecOut::new(out))
    }));
    match r {
        Ok(Ok(())) => Ok(()),
        r => {
            out.truncate(start);
            Err(encode_failure::<T>(r.map(|r| r.map(|_| ()))))
        }
    }
}

/// The codec error for a failed encoding of a `T` (an error, or a panic's payload).
fn encode_failure<T: ?Sized>(
    r: Result<Result<(), postcard::Error>, Box<dyn std::any::Any + Send>>,
) -> TaskError {
    let err = match r {
        Ok(Ok(())) => "unknown".to_owned(),
        Ok(Err(e)) => format!("{e}"),
        Err(p) => {
            let m = format!("its Serialize impl panicked: {}", panic_message(&*p));
            drop_payload(p);
            m
        }
    };
    codec(format!(
        "cannot encode a value of type {}: {err}",
        std::any::type_name::<T>()
    ))
}

/// Decodes a `T` (encoded by [`encode_into`] as the same `T`), naming the type in the
/// error (a panic in its `Deserialize` is an error too).
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, TaskError> {
    decoded(panic::catch_unwind(AssertUnwindSafe(|| {
        codec::decode::<T>(b)
    })))
}

/// Decodes a `T` from `len` bytes at `src`, in memory that another process may still
/// write (a segment): the bytes are copied out with raw copies, never seen as a `&[u8]`.
///
/// # Safety
///
/// `src..src + len` must stay mapped and readable for the duration of the call.
pub unsafe fn decode_shared<T: DeserializeOwned>(
    src: *const u8,
    len: usize,
) -> Result<T, TaskError> {
    // SAFETY: the caller's contract.
    decoded(panic::catch_unwind(AssertUnwindSafe(|| unsafe {
        codec::decode_shared::<T>(src, len)
    })))
}

fn decoded<T>(
    r: Result<Result<T, codec::DeError>, Box<dyn std::any::Any + Send>>,
) -> Result<T, TaskError> {
    let name = std::any::type_name::<T>();
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(codec(format!("cannot decode a value of type {name}: {e}"))),
        Err(p) => {
            let e = codec(format!(
                "cannot decode a value of type {name}: its Deserialize impl panicked: {}",
                panic_message(&*p)
            ));
            drop_payload(p);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encoding a frame's payload: in the frame, or out of line.

/// A frame being built: its header is in `buf` (from `start`), and its payload is added by
/// [`put`](Self::put) (or written straight into `buf` and then [`settle`](Self::settle)d),
/// in the frame or out of line when a transport offers that ([`OutOfLine`]).
pub(crate) struct Out<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
    /// Where the frame starts (its length prefix).
    start: usize,
    ool: Option<&'a mut dyn OutOfLine>,
    ext: Option<Ext>,
}

impl<'a> Out<'a> {
    /// A frame whose header ends at the end of `buf` (it started at `start`).
    pub(crate) fn new(
        buf: &'a mut Vec<u8>,
        start: usize,
        ool: Option<&'a mut (dyn OutOfLine + '_)>,
    ) -> Self {
        Out {
            buf,
            start,
            ool: ool.map(shorten),
            ext: None,
        }
    }

    /// Adds the payload `v` (by reference).
    #[inline]
    pub(crate) fn put<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), TaskError> {
        let Some(ool) = self.ool.as_deref_mut() else {
            return encode_into(v, self.buf);
        };
        if small_and_plain(v) {
            // Nothing to put out of line (tiny tasks skip the machinery).
            return encode_into(v, self.buf);
        }
        let at = self.buf.len();
        let buf = &mut *self.buf;
        let limit = at.saturating_add(ool.threshold().saturating_sub(1));
        let (r, attachments) = oob::with_sink(|| {
            panic::catch_unwind(AssertUnwindSafe(
                || -> Result<Placement, postcard::Error> {
                    if codec::encode_limited(v, buf, limit)? {
                        return Ok(Placement::InBand);
                    }
                    // Too large for the frame: its exact size, then straight into a segment.
                    buf.truncate(at);
                    oob::reset_sink();
                    let size = codec::encoded_size(v)?;
                    oob::reset_sink();
                    match ool.payload(size) {
                        Some((seg, tag)) => {
                            let n = codec::encode(v, codec::SliceOut { buf: seg, pos: 0 })?;
                            Ok(Placement::Segment { len: n as u64, tag })
                        }
                        None => {
                            codec::encode(v, codec::VecOut::new(buf)).map(|()| Placement::InBand)
                        }
                    }
                },
            ))
        });
        match r {
            Ok(Ok(placement)) => {
                self.note(placement, attachments);
                Ok(())
            }
            Ok(Err(e)) => {
                self.buf.truncate(at);
                Err(encode_failure::<T>(Ok(Err(e))))
            }
            Err(p) => {
                self.buf.truncate(at);
                Err(encode_failure::<T>(Err(p)))
            }
        }
    }

    /// Adds the payload `v`, which it owns: a large top-level bulk value is copied out of
    /// line while its memory is given back, so that it is never held twice.
    #[inline]
    pub(crate) fn put_owned<T: Serialize + 'static>(&mut self, v: T) -> Result<(), TaskError> {
        if small_and_plain(&v) {
            return encode_into(&v, self.buf);
        }
        if let Some(ool) = self.ool.as_deref_mut() {
            if let Some((n, raw)) = codec::bulk_view(&v) {
                let size = codec::raw_size(n, raw.len());
                if size >= ool.threshold() {
                    if let Some((seg, tag)) = ool.payload(size) {
                        match codec::encode_consuming(v, seg) {
                            Ok(len) => {
                                self.note(
                                    Placement::Segment {
                                        len: len as u64,
                                        tag,
                                    },
                                    Vec::new(),
                                );
                                return Ok(());
                            }
                            Err(v) => return self.put_then_drop(v),
                        }
                    }
                }
            }
        }
        self.put_then_drop(v)
    }

    #[inline]
    fn put_then_drop<T: Serialize + 'static>(&mut self, v: T) -> Result<(), TaskError> {
        let r = self.put(&v);
        if r.is_err() {
            // Drop the value here, catching a panicking Drop like a panicking task.
            let _ = catch(move || drop(v));
        }
        r
    }

    /// The payload was written into `buf` from `at` by other means (packed numbers): moves
    /// it out of line if it is large and the transport takes it.
    pub(crate) fn settle(&mut self, at: usize) {
        let Some(ool) = self.ool.as_deref_mut() else {
            return;
        };
        let len = self.buf.len() - at;
        if len < ool.threshold() {
            return;
        }
        if let Some((seg, tag)) = ool.payload(len) {
            seg.copy_from_slice(&self.buf[at..]);
            self.buf.truncate(at);
            self.buf.shrink_to(at.max(4096));
            self.note(
                Placement::Segment {
                    len: len as u64,
                    tag,
                },
                Vec::new(),
            );
        }
    }

    #[inline]
    fn note(&mut self, payload: Placement, attachments: Vec<oob::Attachment>) {
        if payload == Placement::InBand && attachments.is_empty() {
            return;
        }
        self.ext = Some(Ext {
            attachments: attachments.len() as u8,
            payload,
        });
        if !attachments.is_empty() {
            if let Some(ool) = self.ool.as_deref_mut() {
                ool.attach(attachments);
            }
        }
    }

    /// Drops the payload written so far (from `at`) and any extension.
    pub(crate) fn reset(&mut self, at: usize) {
        self.buf.truncate(at);
        self.ext = None;
    }

    /// Whether the frame has an extension (its `kind` needs [`OUT_OF_LINE`]).
    #[inline]
    pub(crate) fn has_ext(&self) -> bool {
        self.ext.is_some()
    }

    /// Writes the extension (if any) between the header, which ends at `header_end`, and
    /// the in-band payload, and sets the flag in the frame's `kind`.
    #[inline]
    pub(crate) fn seal(&mut self, header_end: usize) {
        let Some(ext) = self.ext else {
            return;
        };
        let bytes = ext.to_bytes();
        if self.buf.len() == header_end {
            self.buf.extend_from_slice(&bytes);
        } else {
            self.buf.splice(header_end..header_end, bytes);
        }
        self.buf[self.start + 4] |= OUT_OF_LINE;
    }
}

/// Whether `v` certainly stays in its frame: a small value without drop glue holds no
/// vector, string or shared data (numbers, small `Copy` structs), so its encoding is a few
/// times its size at most, far below any threshold. (Were it not, in the frame would still
/// be correct: the threshold is about speed.)
#[inline(always)]
fn small_and_plain<T: ?Sized>(v: &T) -> bool {
    !std::mem::needs_drop::<T>() && std::mem::size_of_val(v) <= 1024
}

/// The same `&mut dyn OutOfLine`, with the object's lifetime bound shortened to the
/// borrow's (allowed for trait objects, even behind `&mut`).
fn shorten<'s>(o: &'s mut (dyn OutOfLine + '_)) -> &'s mut (dyn OutOfLine + 's) {
    o
}

// ---------------------------------------------------------------------------------------
// Worker side of running things.

/// Runs `f` as a task: a panic becomes [`TaskError::Panic`] with its message and location
/// (from core's panic hook, which the worker installs), exactly as in the thread pool.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, TaskError> {
    cfutures_core::panics::catch(f)
}

/// Drops a caught panic's payload under a guard (its own `Drop` may panic).
pub fn drop_payload(p: Box<dyn std::any::Any + Send>) {
    cfutures_core::panics::drop_payload(p)
}

/// Encodes an outcome into `out`: `true` for a value, `false` for an error.
fn outcome<R: Serialize + 'static>(r: Result<R, TaskError>, out: &mut Out<'_>) -> bool {
    let at = out.buf.len();
    let e = match r {
        Ok(v) => match out.put_owned(v) {
            Ok(()) => return true,
            Err(e) => e,
        },
        Err(e) => e,
    };
    out.reset(at);
    encode_error(&e, out.buf);
    false
}

/// Appends an encoded [`TaskError`] (never fails: its wire form is plain strings and numbers).
pub fn encode_error(e: &TaskError, out: &mut Vec<u8>) {
    if encode_into(e, out).is_err() {
        // Unreachable in practice; keep the frame well formed all the same.
        let _ = encode_into(&codec("cannot encode the task's error"), out);
    }
}

/// Makes the value of a zero-sized `Copy` function type.
///
/// # Safety
///
/// `F` must be zero-sized and `Copy`, and a value of `F` must have existed (in this
/// process or in the parent, which runs the same executable).
unsafe fn conjure<F: Copy>() -> F {
    const { assert!(std::mem::size_of::<F>() == 0) };
    // SAFETY: (1) `F` is zero-sized, so reading it from a dangling, well-aligned pointer
    // reads no memory; (2) a value of `F` existed (the caller's contract) so `F` is
    // inhabited and the all-zero-bytes (no bytes) representation is its only one; (3) `F`
    // is `Copy`: duplicating a value of it is exactly what `Copy` permits, and it has no
    // drop glue. On stable Rust the zero-sized `Copy` types implementing `Fn` are fn items
    // and closures capturing nothing (or only zero-sized `Copy` values).
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// Trampoline for `submit_fn(f, arg)`.
pub(crate) fn run_fn<F, A, R>(input: &[u8], out: &mut Out<'_>) -> bool
where
    F: Fn(A) -> R + Copy,
    A: DeserializeOwned,
    R: Serialize + 'static,
{
    let arg = match decode::<A>(input) {
        Ok(a) => a,
        Err(e) => return outcome::<R>(Err(e), out),
    };
    // SAFETY: `F` is zero-sized (checked at compile time in `conjure` and when submitting)
    // and `Copy` (bound); the parent held a value of it when it submitted this call.
    let f: F = unsafe { conjure() };
    outcome(catch(move || f(arg)), out)
}

/// Trampoline for a task type.
pub(crate) fn run_task<T>(input: &[u8], out: &mut Out<'_>) -> bool
where
    T: Task + DeserializeOwned,
    T::Output: Serialize + 'static,
{
    let task = match decode::<T>(input) {
        Ok(t) => t,
        Err(e) => return outcome::<T::Output>(Err(e), out),
    };
    outcome(catch(move || task.run()).and_then(|r| r), out)
}

/// Trampoline for one `map` chunk: each item's panic fails only that item.
pub(crate) fn run_chunk<F, A, R>(input: &[u8], out: &mut Out<'_>) -> bool
where
    F: Fn(A) -> R + Copy,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let items = match crate::prim::decode_items::<A>(input) {
        Ok(a) => a,
        Err(e) => return outcome::<ChunkOutput<R>>(Err(e), out),
    };
    // SAFETY: as in `run_fn`.
    let f: F = unsafe { conjure() };
    // Compact when every item succeeded (a plain `Vec<R>` on the wire, the common case),
    // each item's `Result` otherwise: `ChunkOutput`'s variant tag says which. Core's chunk
    // runner, with core's panic errors (they carry the panic's location), inside a task for
    // the panic hook (quiet or printed as the pool says).
    let results =
        match catch(|| cfutures_core::run_chunk(items, &f, cfutures_core::panics::task_error)) {
            Ok(r) => r,
            Err(e) => return outcome::<ChunkOutput<R>>(Err(e), out),
        };
    let at = out.buf.len();
    if crate::prim::encode_output(&results, out.buf) {
        out.settle(at);
        return true;
    }
    outcome(Ok(results), out)
}

/// Trampoline for the initializer.
pub(crate) fn run_init<F, A>(input: &[u8], out: &mut Out<'_>) -> bool
where
    F: Fn(A) + Copy,
    A: DeserializeOwned,
{
    run_fn::<F, A, ()>(input, out)
}
