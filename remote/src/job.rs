//! The parent side of a task: its command frame, and the type-erased promise that its result
//! frame completes.
//!
//! An executor turns each submission into an [`Encoded`] job with one of the constructors
//! here ([`call`], [`task`], [`chunk`]), gives the frame an id ([`set_id`]), sends it, and,
//! when the worker's result frame (or a failure) comes back, completes the job's [`Slot`]
//! with an [`Outcome`]. The constructors are the only places frames are built, so every
//! executor of remote tasks encodes them the same way.
//!
//! A transport with shared memory uses the `*_with` constructors ([`call_with`],
//! [`task_with`], [`chunk_with`], [`IntoJob::into_job_with`]), which take its
//! [`OutOfLine`]: large payloads then go into its segments, and shared data
//! ([`SharedSlice`](crate::bulk::SharedSlice)) becomes attachments (see [`crate::oob`]).
//! The plain constructors make self-contained frames, as before.

use std::ops::Range;
use std::os::fd::OwnedFd;

use cfutures_core::{Broken, ChunkOutput, Future, FutureId, MapChunk, Promise, Task, TaskError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::oob::{self, OutOfLine};
use crate::prim;
use crate::task::RemoteTask;
use crate::wire::{self, FnId, Out, Tramp};

/// The type-erased promise of one job.
pub trait Slot: Send {
    /// The id of the job's future.
    fn future_id(&self) -> FutureId;
    /// True if the future was cancelled (and the job need not run).
    fn is_cancelled(&self) -> bool;
    /// Marks the future running; false if it was cancelled (which is now noticed).
    fn start(&self) -> bool;
    /// Cancels the future (if it is still pending).
    fn cancel(&self);
    /// Completes the future. A [`Outcome::Frame`]'s payload is the range of `payloads`.
    fn finish(self: Box<Self>, outcome: Outcome, payloads: &[u8]);
    /// For a `map` chunk of two items or more, whose command frame is `frame`: one job per
    /// item (its frame, id 0, and its slot), taking over this slot's future, which the
    /// parts complete together, in input order, once the last is done (`src/split.rs`).
    /// This slot is then empty: drop it. `None` for any other job.
    fn split(&mut self, frame: &[u8]) -> Option<Parts> {
        let _ = frame;
        None
    }
}

/// What [`Slot::split`] makes: each part's command frame (id 0) and slot.
pub type Parts = Vec<(Vec<u8>, Box<dyn Slot>)>;

/// How a job ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The worker's result frame: an encoded value (`true`) or an encoded [`TaskError`]
    /// (`false`), at this range of the payload buffer given to [`Slot::finish`] (executors
    /// copy result payloads into one buffer they reuse, so that results cost no allocation
    /// of their own on the way to being decoded).
    Frame(bool, Range<usize>),
    /// The worker's result frame, with what came beside it (a frame with an
    /// [`Ext`](wire::Ext)): an encoded value (`true`) or [`TaskError`] (`false`).
    Received(bool, Received),
    /// The job failed without a result from the worker (it died, ran out of time, ...).
    Failed(TaskError),
    /// The executor broke.
    Broken(Broken),
    /// The job was cancelled while it ran (or before it was sent again).
    Cancelled,
}

/// A result payload that came with a frame's extension, and the descriptors of the shared
/// data it refers to.
#[derive(Debug)]
pub struct Received {
    /// The payload.
    pub payload: ReceivedPayload,
    /// The descriptors that came with the frame after its payload segment's, in order.
    pub attachments: Vec<OwnedFd>,
}

/// Where a received payload is.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReceivedPayload {
    /// At this range of the payload buffer given to [`Slot::finish`].
    InBand(Range<usize>),
    /// In shared memory the sender may still write (see [`SharedPayload`]).
    Shared(SharedPayload),
}

/// A payload in memory that another process may still write (a worker's segment): it is
/// read only by copying out of it, never as a `&[u8]`. Whatever keeps it mapped (and
/// releases it to its writer once read) is dropped when the payload has been decoded.
pub struct SharedPayload {
    ptr: *const u8,
    len: usize,
    _keep: Box<dyn Send>,
}

// SAFETY: the pointer is only read through (raw copies, in `Slot::finish`), and the memory
// it points to is kept mapped by `_keep`, which is `Send`; nothing ties it to a thread.
unsafe impl Send for SharedPayload {}

impl std::fmt::Debug for SharedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPayload")
            .field("len", &self.len)
            .finish()
    }
}

impl SharedPayload {
    /// `len` bytes at `ptr`, kept readable by `keep` (a mapping) until it is dropped.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must stay mapped and readable for as long as `keep` lives.
    pub unsafe fn new(ptr: *const u8, len: usize, keep: Box<dyn Send>) -> Self {
        SharedPayload {
            ptr,
            len,
            _keep: keep,
        }
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A private copy of the bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        // SAFETY: `ptr..ptr + len` is readable while `self` (and so `_keep`) lives (the
        // contract of `new`); `v` is private memory of `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, v.as_mut_ptr(), self.len) };
        v
    }
}

pub(crate) struct TypedSlot<R> {
    pub(crate) promise: Promise<R>,
    pub(crate) id: FutureId,
    pub(crate) decode: fn(&[u8]) -> Result<R, TaskError>,
    /// Decodes straight out of shared memory (`None`: copy the bytes first, then `decode`).
    pub(crate) decode_shared: Option<SharedDecoder<R>>,
}

impl<R: DeserializeOwned + Send + Sync + 'static> TypedSlot<R> {
    /// Decodes a value: a user type's `Deserialize` may panic, which fails this future, not
    /// the thread that completes it (the executor's).
    fn value(&self, payload: Payload<'_>) -> Result<R, TaskError> {
        let (decode, decode_shared) = (self.decode, self.decode_shared);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match payload {
            Payload::Bytes(b) => decode(b),
            Payload::Shared(sp) => match decode_shared {
                // SAFETY: `sp` keeps its bytes mapped while it lives (its contract).
                Some(d) => unsafe { d(sp.ptr, sp.len) },
                None => decode(&sp.to_vec()),
            },
        }))
        .unwrap_or_else(|p| {
            let e = wire::codec(format!(
                "cannot decode a value of type {}: its Deserialize impl panicked: {}",
                std::any::type_name::<R>(),
                cfutures_core::panic_message(&*p)
            ));
            wire::drop_payload(p);
            Err(e)
        })
    }
}

enum Payload<'a> {
    Bytes(&'a [u8]),
    Shared(&'a SharedPayload),
}

impl<R: DeserializeOwned + Send + Sync + 'static> Slot for TypedSlot<R> {
    fn future_id(&self) -> FutureId {
        self.id
    }
    fn is_cancelled(&self) -> bool {
        self.promise.is_cancelled()
    }
    fn start(&self) -> bool {
        self.promise.set_running_or_notify_cancel()
    }
    fn cancel(&self) {
        self.promise.future().cancel();
    }
    fn finish(self: Box<Self>, outcome: Outcome, payloads: &[u8]) {
        let _ = match outcome {
            Outcome::Frame(true, r) => {
                let v = self.value(Payload::Bytes(&payloads[r]));
                self.promise.set_outcome(v)
            }
            Outcome::Frame(false, r) => {
                self.promise
                    .set_exception(match wire::decode::<TaskError>(&payloads[r]) {
                        Ok(e) | Err(e) => e,
                    })
            }
            Outcome::Received(ok, received) => {
                let Received {
                    payload,
                    attachments,
                } = received;
                let payload = match &payload {
                    ReceivedPayload::InBand(r) => Payload::Bytes(&payloads[r.clone()]),
                    ReceivedPayload::Shared(sp) => Payload::Shared(sp),
                };
                // The sender is a worker: not trusted with shared data it could still
                // change (see `oob`).
                let v = oob::with_source(attachments, false, || {
                    if ok {
                        self.value(payload)
                    } else {
                        let e = match payload {
                            Payload::Bytes(b) => wire::decode::<TaskError>(b),
                            Payload::Shared(sp) => wire::decode::<TaskError>(&sp.to_vec()),
                        };
                        Err(match e {
                            Ok(e) | Err(e) => e,
                        })
                    }
                });
                self.promise.set_outcome(v)
            }
            Outcome::Failed(e) => self.promise.set_exception(e),
            Outcome::Broken(b) => self.promise.set_broken(b),
            Outcome::Cancelled => self.promise.set_cancelled(),
        };
    }
}

/// A submission, encoded: what an executor queues.
pub struct Encoded {
    /// The command frame (its id is 0 until [`set_id`]).
    pub frame: Vec<u8>,
    /// The promise the result completes.
    pub slot: Box<dyn Slot>,
    /// Set if the task could not be encoded: the executor fails the slot with it (after
    /// checking that it accepts tasks at all, as Python does with an unpicklable argument).
    pub error: Option<TaskError>,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("frame_len", &self.frame.len())
            .field("future", &self.slot.future_id())
            .field("error", &self.error)
            .finish()
    }
}

/// Builds a job running `tramp`, with `encode` adding the payload.
fn build<R>(
    tramp: Tramp,
    capacity: usize,
    ool: Option<&mut dyn OutOfLine>,
    encode: impl FnOnce(&mut Out<'_>) -> Result<(), TaskError>,
    decode: fn(&[u8]) -> Result<R, TaskError>,
    decode_shared: Option<SharedDecoder<R>>,
) -> (Encoded, Future<R>)
where
    R: DeserializeOwned + Send + Sync + 'static,
{
    build_with(
        tramp,
        capacity,
        ool,
        encode,
        decode,
        decode_shared,
        |slot| Box::new(slot),
    )
}

/// [`build`], with `boxed` making the job's slot of its typed slot.
fn build_with<R>(
    tramp: Tramp,
    capacity: usize,
    ool: Option<&mut dyn OutOfLine>,
    encode: impl FnOnce(&mut Out<'_>) -> Result<(), TaskError>,
    decode: fn(&[u8]) -> Result<R, TaskError>,
    decode_shared: Option<SharedDecoder<R>>,
    boxed: impl FnOnce(TypedSlot<R>) -> Box<dyn Slot>,
) -> (Encoded, Future<R>)
where
    R: DeserializeOwned + Send + Sync + 'static,
{
    let promise = Promise::<R>::new();
    let future = promise.future();
    let mut frame = Vec::with_capacity(capacity);
    let error = wire::fn_id(tramp)
        .and_then(|id| {
            let start = wire::begin_cmd(&mut frame, wire::CMD_RUN, 0, id);
            let mut out = Out::new(&mut frame, start, ool);
            encode(&mut out)?;
            out.seal(start + wire::CMD_HEADER);
            wire::finish(&mut frame, start)
        })
        .err();
    let slot = boxed(TypedSlot {
        id: future.id(),
        promise,
        decode,
        decode_shared,
    });
    (Encoded { frame, slot, error }, future)
}

/// Room for a frame at once in the common case (postcard is rarely larger than the value in
/// memory), rather than growing it by doubling.
fn capacity_for<V: ?Sized>(value: &V) -> usize {
    wire::CMD_HEADER + std::mem::size_of_val(value).clamp(16, 1 << 16)
}

/// The shared-memory decoder of a `T`.
fn shared_decoder<T: DeserializeOwned>() -> Option<SharedDecoder<T>> {
    Some(wire::decode_shared::<T>)
}

/// Decodes a `T` out of shared memory (see [`wire::decode_shared`]).
pub(crate) type SharedDecoder<T> = unsafe fn(*const u8, usize) -> Result<T, TaskError>;

/// `f(arg)` (`submit_fn`): `f` must be zero-sized (a fn item or a closure capturing
/// nothing), which [`assert_zero_sized`](crate::assert_zero_sized) checks at compile time.
/// The frame is self-contained (see [`call_with`]).
pub fn call<F, A, R>(arg: &A) -> (Encoded, Future<R>)
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    const { crate::assert_zero_sized::<F>() };
    build(
        wire::run_fn::<F, A, R> as Tramp,
        capacity_for(arg),
        None,
        |out| out.put(arg),
        wire::decode::<R>,
        shared_decoder::<R>(),
    )
}

/// [`call`] for a transport with shared memory: a large argument goes out of line (an
/// owned bulk value, such as a `Vec<u8>`, is moved there while its memory is given back,
/// so it is never held twice), and shared data becomes attachments.
pub fn call_with<F, A, R>(arg: A, ool: &mut dyn OutOfLine) -> (Encoded, Future<R>)
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    const { crate::assert_zero_sized::<F>() };
    let capacity = capacity_for(&arg);
    build(
        wire::run_fn::<F, A, R> as Tramp,
        capacity,
        Some(ool),
        |out| out.put_owned(arg),
        wire::decode::<R>,
        shared_decoder::<R>(),
    )
}

/// A [`RemoteTask`]. The frame is self-contained (see [`task_with`]).
pub fn task<T>(task: &T) -> (Encoded, Future<T::Output>)
where
    T: RemoteTask,
    T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    task_in(task, None)
}

/// [`task`] for a transport with shared memory (see [`call_with`]).
pub fn task_with<T>(task: &T, ool: &mut dyn OutOfLine) -> (Encoded, Future<T::Output>)
where
    T: RemoteTask,
    T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    task_in(task, Some(ool))
}

fn task_in<T>(task: &T, ool: Option<&mut dyn OutOfLine>) -> (Encoded, Future<T::Output>)
where
    T: RemoteTask,
    T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    build(
        wire::run_task::<T> as Tramp,
        capacity_for(task),
        ool,
        |out| out.put(task),
        wire::decode::<T::Output>,
        shared_decoder::<T::Output>(),
    )
}

/// One `map` chunk: `f` over `items` in one worker, each item's panic failing only itself.
/// Chunks of primitive numbers travel packed, other items as postcard. The frame is
/// self-contained (see [`chunk_with`]).
pub fn chunk<F, A, R>(items: &Vec<A>) -> (Encoded, Future<ChunkOutput<R>>)
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    chunk_in::<F, A, R>(items, None)
}

/// [`chunk`] for a transport with shared memory (see [`call_with`]).
pub fn chunk_with<F, A, R>(
    items: &Vec<A>,
    ool: &mut dyn OutOfLine,
) -> (Encoded, Future<ChunkOutput<R>>)
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    chunk_in::<F, A, R>(items, Some(ool))
}

#[allow(clippy::ptr_arg)] // the `Vec` itself is encoded (a top-level bulk type is by type)
fn chunk_in<F, A, R>(
    items: &Vec<A>,
    ool: Option<&mut dyn OutOfLine>,
) -> (Encoded, Future<ChunkOutput<R>>)
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    const { crate::assert_zero_sized::<F>() };
    build_with(
        wire::run_chunk::<F, A, R> as Tramp,
        // Numbers are packed into a frame of the exact size; other items get room as for
        // a single value.
        wire::CMD_HEADER + 16,
        ool,
        |out| {
            let at = out.buf.len();
            if prim::encode_items(items, out.buf) {
                out.settle(at);
                return Ok(());
            }
            out.buf
                .reserve(std::mem::size_of_val(&items[..]).min(1 << 16));
            // The `Vec` (not the slice): the worker decodes a `Vec<A>`, and both ends must
            // see the same type for the top-level fast path.
            out.put(items)
        },
        prim::decode_output::<R>,
        None,
        |slot| Box::new(crate::split::ChunkSlot::<A, R>::new(slot)),
    )
}

/// The frame that runs the initializer `f(arg)` in a new worker, before its first task.
///
/// # Errors
///
/// If `arg` cannot be encoded, or `f` lives in a dynamically loaded library.
pub fn init_frame<F, A>(arg: &A) -> Result<Vec<u8>, TaskError>
where
    F: Fn(A) + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
{
    const { crate::assert_zero_sized::<F>() };
    let id = wire::fn_id(wire::run_init::<F, A> as Tramp)?;
    let mut frame = Vec::new();
    let s = wire::begin_cmd(&mut frame, wire::CMD_INIT, 0, id);
    wire::encode_into(arg, &mut frame)?;
    wire::finish(&mut frame, s)?;
    Ok(frame)
}

/// A submission an executor of remote tasks accepts: every [`RemoteTask`], and every `map`
/// chunk ([`MapChunk`]) of a zero-sized function. Sealed.
///
/// One trait for both lets each executor implement `Submit` once (`impl<T: IntoJob>
/// Submit<T>`): two impls, one for `RemoteTask`s and one for chunks, would be accepted only
/// in the crate that defines `RemoteTask`, where the compiler can see that `MapChunk` is not
/// one.
pub trait IntoJob: Task + Sized + sealed::Sealed {
    /// Encodes it, and makes the future its result completes.
    fn into_job(self) -> (Encoded, Future<Self::Output>);

    /// [`into_job`](Self::into_job) for a transport with shared memory (see
    /// [`call_with`]).
    fn into_job_with(self, ool: &mut dyn OutOfLine) -> (Encoded, Future<Self::Output>);
}

mod sealed {
    pub trait Sealed {}
}

impl<T> sealed::Sealed for T where T: RemoteTask {}

impl<T> IntoJob for T
where
    T: RemoteTask,
    T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn into_job(self) -> (Encoded, Future<T::Output>) {
        task(&self)
    }
    fn into_job_with(self, ool: &mut dyn OutOfLine) -> (Encoded, Future<T::Output>) {
        task_with(&self, ool)
    }
}

impl<F, A> sealed::Sealed for MapChunk<F, A> {}

/// `map` with `chunksize`: one chunk crosses as one frame and runs as one task in a worker;
/// each item's panic fails only that item.
impl<F, A, R> IntoJob for MapChunk<F, A>
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn into_job(self) -> (Encoded, Future<ChunkOutput<R>>) {
        let (_, items) = self.into_parts();
        chunk::<F, A, R>(&items)
    }
    fn into_job_with(self, ool: &mut dyn OutOfLine) -> (Encoded, Future<ChunkOutput<R>>) {
        let (_, items) = self.into_parts();
        chunk_with::<F, A, R>(&items, ool)
    }
}

/// Gives a command frame its job id (unique per executor: results are matched by it).
pub fn set_id(frame: &mut [u8], id: u64) {
    frame[5..13].copy_from_slice(&id.to_le_bytes());
}

/// Testing hook: a raw command frame (`fn_offset`, `fn_tag`, payload) whose result decodes
/// as `R`, to show that a frame naming a function the worker cannot run fails its task.
///
/// # Safety
///
/// With `fn_tag: None` the frame gets a genuine tag, so `fn_offset` must come from
/// [`fn_offset`]. With `Some(tag)`, any values are safe.
#[doc(hidden)]
pub unsafe fn raw<R>(fn_offset: i64, fn_tag: Option<u64>, payload: &[u8]) -> (Encoded, Future<R>)
where
    R: DeserializeOwned + Send + Sync + 'static,
{
    let promise = Promise::<R>::new();
    let future = promise.future();
    let id = FnId {
        offset: fn_offset,
        tag: fn_tag.unwrap_or_else(|| wire::tag(fn_offset)),
    };
    let mut frame = Vec::new();
    let start = wire::begin_cmd(&mut frame, wire::CMD_RUN, 0, id);
    frame.extend_from_slice(payload);
    let error = wire::finish(&mut frame, start).err();
    let slot = Box::new(TypedSlot {
        id: future.id(),
        promise,
        decode: wire::decode::<R>,
        decode_shared: None,
    });
    (Encoded { frame, slot, error }, future)
}

/// Testing hook: the offset of the trampoline that runs `f` on an `A`.
#[doc(hidden)]
pub fn fn_offset<F, A, R>(_f: F) -> i64
where
    F: Fn(A) -> R + Copy,
    A: DeserializeOwned,
    R: Serialize + 'static,
{
    wire::fn_id(wire::run_fn::<F, A, R> as Tramp)
        .expect("same module")
        .offset
}
