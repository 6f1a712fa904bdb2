//! The parent side of a task: its command frame, and the type-erased promise that its result
//! frame completes.
//!
//! An executor turns each submission into an [`Encoded`] job with one of the constructors
//! here ([`call`], [`task`], [`chunk`]), gives the frame an id ([`set_id`]), sends it, and,
//! when the worker's result frame (or a failure) comes back, completes the job's [`Slot`]
//! with an [`Outcome`]. The constructors are the only places frames are built, so every
//! executor of remote tasks encodes them the same way.

use std::ops::Range;

use cfutures_core::{Broken, ChunkOutput, Future, FutureId, MapChunk, Promise, Task, TaskError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::prim;
use crate::task::RemoteTask;
use crate::wire::{self, FnId, Tramp};

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
pub enum Outcome {
    /// The worker's result frame: an encoded value (`true`) or an encoded [`TaskError`]
    /// (`false`), at this range of the payload buffer given to [`Slot::finish`] (executors
    /// copy result payloads into one buffer they reuse, so that results cost no allocation
    /// of their own on the way to being decoded).
    Frame(bool, Range<usize>),
    /// The job failed without a result from the worker (it died, ran out of time, ...).
    Failed(TaskError),
    /// The executor broke.
    Broken(Broken),
    /// The job was cancelled while it ran (or before it was sent again).
    Cancelled,
}

pub(crate) struct TypedSlot<R> {
    pub(crate) promise: Promise<R>,
    pub(crate) id: FutureId,
    pub(crate) decode: fn(&[u8]) -> Result<R, TaskError>,
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
        let p = self.promise;
        let _ = match outcome {
            Outcome::Frame(true, r) => {
                // A user type's `Deserialize` may panic: that fails this future, not the
                // thread that completes it (the executor's).
                let decode = self.decode;
                let bytes = &payloads[r];
                let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(bytes)))
                    .unwrap_or_else(|p| {
                        let e = wire::codec(format!(
                            "cannot decode a value of type {}: its Deserialize impl \
                             panicked: {}",
                            std::any::type_name::<R>(),
                            cfutures_core::panic_message(&*p)
                        ));
                        wire::drop_payload(p);
                        Err(e)
                    });
                p.set_outcome(v)
            }
            Outcome::Frame(false, r) => {
                p.set_exception(match wire::decode::<TaskError>(&payloads[r]) {
                    Ok(e) | Err(e) => e,
                })
            }
            Outcome::Failed(e) => p.set_exception(e),
            Outcome::Broken(b) => p.set_broken(b),
            Outcome::Cancelled => p.set_cancelled(),
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

/// Builds a job running `tramp`, with `encode` appending the payload.
fn build<R>(
    tramp: Tramp,
    capacity: usize,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), TaskError>,
    decode: fn(&[u8]) -> Result<R, TaskError>,
) -> (Encoded, Future<R>)
where
    R: DeserializeOwned + Send + Sync + 'static,
{
    build_with(tramp, capacity, encode, decode, |slot| Box::new(slot))
}

/// [`build`], with `boxed` making the job's slot of its typed slot.
fn build_with<R>(
    tramp: Tramp,
    capacity: usize,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), TaskError>,
    decode: fn(&[u8]) -> Result<R, TaskError>,
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
            encode(&mut frame)?;
            wire::finish(&mut frame, start)
        })
        .err();
    let slot = boxed(TypedSlot {
        id: future.id(),
        promise,
        decode,
    });
    (Encoded { frame, slot, error }, future)
}

/// Room for a frame at once in the common case (postcard is rarely larger than the value in
/// memory), rather than growing it by doubling.
fn capacity_for<V: ?Sized>(value: &V) -> usize {
    wire::CMD_HEADER + std::mem::size_of_val(value).clamp(16, 1 << 16)
}

/// `f(arg)` (`submit_fn`): `f` must be zero-sized (a fn item or a closure capturing
/// nothing), which [`assert_zero_sized`](crate::assert_zero_sized) checks at compile time.
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
        |frame| wire::encode_into(arg, frame),
        wire::decode::<R>,
    )
}

/// A [`RemoteTask`].
pub fn task<T>(task: &T) -> (Encoded, Future<T::Output>)
where
    T: RemoteTask,
    T::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    build(
        wire::run_task::<T> as Tramp,
        capacity_for(task),
        |frame| wire::encode_into(task, frame),
        wire::decode::<T::Output>,
    )
}

/// One `map` chunk: `f` over `items` in one worker, each item's panic failing only itself.
/// Chunks of primitive numbers travel packed, other items as postcard.
pub fn chunk<F, A, R>(items: &Vec<A>) -> (Encoded, Future<ChunkOutput<R>>)
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
        |frame| {
            if prim::encode_items(items, frame) {
                return Ok(());
            }
            frame.reserve(std::mem::size_of_val(&items[..]).min(1 << 16));
            wire::encode_into(&items[..], frame)
        },
        prim::decode_output::<R>,
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
    });
    (Encoded { frame, slot, error }, future)
}

/// Testing hook: the offset of the trampoline that runs `f` on an `A`.
#[doc(hidden)]
pub fn fn_offset<F, A, R>(_f: F) -> i64
where
    F: Fn(A) -> R + Copy,
    A: DeserializeOwned,
    R: Serialize,
{
    wire::fn_id(wire::run_fn::<F, A, R> as Tramp)
        .expect("same module")
        .offset
}
