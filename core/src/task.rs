//! What executors run: [`Task`], the fallible adapter [`Fallible`], and [`MapChunk`], the
//! batch task `map` submits.

use std::any::Any;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::TaskError;

/// Something that runs once and produces an output: what an executor accepts.
///
/// Every `FnOnce() -> R` is a task whose output is `R` (it cannot fail except by panicking;
/// executors catch panics). To fail a future the way a Python exception does — so that
/// [`Future::exception`](crate::Future::exception) and `FIRST_EXCEPTION` see it — return a
/// `Result` through [`fallible`], or implement `Task` for your own type and return
/// `Err(TaskError)` from [`run`](Task::run).
pub trait Task {
    /// What the task produces.
    type Output;
    /// Runs the task.
    ///
    /// # Errors
    ///
    /// The task's failure, which becomes the future's failure.
    fn run(self) -> Result<Self::Output, TaskError>;
}

impl<F, R> Task for F
where
    F: FnOnce() -> R,
{
    type Output = R;
    fn run(self) -> Result<R, TaskError> {
        Ok(self())
    }
}

/// A closure returning `Result<R, E>` whose `Err` fails the future (instead of becoming a
/// `Future<Result<R, E>>`). Made by [`fallible`].
#[derive(Clone, Copy, Debug)]
pub struct Fallible<F>(pub F);

impl<F, R, E> Task for Fallible<F>
where
    F: FnOnce() -> Result<R, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    type Output = R;
    fn run(self) -> Result<R, TaskError> {
        (self.0)().map_err(|e| TaskError::from_boxed(e.into()))
    }
}

/// Makes a task whose `Err` fails its future: the future holds `R`, and the error is
/// available from `exception()` and as [`Error::Failed`](crate::Error::Failed) from `result()`.
///
/// Any error convertible to `Box<dyn Error + Send + Sync>` works (`std::io::Error`, your own
/// error types, `String`, `&str`).
///
/// # Examples
///
/// ```
/// use cfutures_core::{fallible, InlineExecutor, Submit};
///
/// let ex = InlineExecutor::new();
/// let ok = ex.submit(fallible(|| "42".parse::<u32>())).unwrap();
/// let bad = ex.submit(fallible(|| "forty-two".parse::<u32>())).unwrap();
/// assert_eq!(*ok.result().unwrap(), 42);
/// let err = bad.exception().unwrap().expect("it failed");
/// assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
/// ```
pub fn fallible<F, R, E>(f: F) -> Fallible<F>
where
    F: FnOnce() -> Result<R, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    Fallible(f)
}

/// A task with a name, made by [`named`]: runs as the task it wraps.
#[derive(Clone, Debug)]
pub struct Named<T> {
    name: Arc<str>,
    task: T,
}

impl<T> Named<T> {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The task.
    pub fn into_inner(self) -> T {
        self.task
    }
}

impl<T: Task> Task for Named<T> {
    type Output = T::Output;
    fn run(self) -> Result<T::Output, TaskError> {
        let Named { name, task } = self;
        // While it runs, the name labels this thread's innermost future (costs nothing
        // unless the thread parks and a wait cycle is reported).
        let _naming = crate::deadlock::name_current(&name);
        task.run()
    }
}

/// Names a task, for the reports that name tasks: a wait cycle's
/// [`Error::Deadlock`](crate::Error::Deadlock) says `future #… (task 'fetch') waits on …`.
/// Works with any executor that runs tasks with [`Promise::run`](crate::Promise::run) (all
/// of cfutures' in-process executors); costs one `Arc<str>` (none for the unnamed tasks).
///
/// # Examples
///
/// ```
/// use cfutures_core::{named, InlineExecutor, Submit};
///
/// let ex = InlineExecutor::new();
/// let f = ex.submit(named("answer", || 42)).unwrap();
/// assert_eq!(*f.result().unwrap(), 42);
/// ```
pub fn named<T: Task>(name: impl Into<Arc<str>>, task: T) -> Named<T> {
    Named {
        name: name.into(),
        task,
    }
}

/// Drops a task that will not run (its future was cancelled, or its executor broke).
///
/// A panic in the drop (a captured value's `Drop`) is caught and dropped: the task's future
/// already has its outcome, so there is no one to report it to, and it must not kill a
/// worker thread (whose pool would then wait for it forever) or unwind out of the
/// `shutdown` that cancelled the task.
pub fn discard_task<K>(task: K) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(task))) {
        // The payload may panic on drop too.
        crate::error::drop_payload(payload);
    }
}

/// A batch of `map` items run as one task: `f` applied to each item, each item's panic
/// caught on its own, so one failing item fails only its own slot.
///
/// `map` with `chunksize` submits these; an executor that accepts `MapChunk` (the thread
/// pool accepts any task; the process pool sends one chunk as one message) works with
/// `map`.
#[derive(Debug)]
pub struct MapChunk<F, A> {
    f: Arc<F>,
    items: Vec<A>,
}

impl<F, A> MapChunk<F, A> {
    /// A chunk of `items` for `f`.
    pub fn new(f: Arc<F>, items: Vec<A>) -> Self {
        MapChunk { f, items }
    }
    /// The function.
    pub fn function(&self) -> &Arc<F> {
        &self.f
    }
    /// The items.
    pub fn items(&self) -> &[A] {
        &self.items
    }
    /// The function and the items.
    pub fn into_parts(self) -> (Arc<F>, Vec<A>) {
        (self.f, self.items)
    }
}

impl<F, A, R> Task for MapChunk<F, A>
where
    F: Fn(A) -> R,
{
    type Output = ChunkOutput<R>;
    fn run(self) -> Result<Self::Output, TaskError> {
        // `panics::task_error`: each item's panic with its location (the chunk runs inside
        // `Promise::run`'s `panics::catch`, which counts the thread as in a task).
        Ok(run_chunk(self.items, &*self.f, crate::panics::task_error))
    }
}

/// Turns a caught panic's payload into the item's error.
pub type PanicToError = fn(Box<dyn Any + Send>) -> TaskError;

/// Applies `f` to every item, each item's panic caught on its own and turned into that
/// item's error by `panic_to_error`: what [`MapChunk`] does (with
/// [`TaskError::from_panic`]), for executors that run a chunk's items themselves (a
/// process pool's worker, which records where each panic happened).
///
/// The items run in one `catch_unwind` (a panic is rare; catching per item costs a call
/// per item and stops the loop from being optimised); after a panic the rest run one by
/// one. When `A` and `R` have the same size and alignment (`u64 -> u64`, say) the results
/// are written over the items in their own buffer: no allocation, and memory the submitting
/// thread just wrote (and will free) instead of fresh pages in the worker.
pub fn run_chunk<A, R>(
    items: Vec<A>,
    f: &impl Fn(A) -> R,
    panic_to_error: PanicToError,
) -> ChunkOutput<R> {
    let same_layout = mem::size_of::<A>() == mem::size_of::<R>()
        && mem::align_of::<A>() == mem::align_of::<R>()
        && mem::size_of::<A>() != 0;
    if same_layout {
        return in_place::run(items, f, panic_to_error);
    }
    let mut items = items.into_iter();
    let mut values: Vec<R> = Vec::with_capacity(items.len());
    let all = panic::catch_unwind(AssertUnwindSafe(|| {
        for a in items.by_ref() {
            values.push(f(a));
        }
    }));
    match all {
        Ok(()) => ChunkOutput::Values(values),
        // The item at `values.len()` panicked (it was moved out of `items` before the call).
        Err(payload) => mixed(values, payload, items, f, panic_to_error),
    }
}

/// The results of a chunk in which an item panicked: the values before it, its panic,
/// then the remaining items, run one by one.
fn mixed<A, R>(
    values: Vec<R>,
    payload: Box<dyn Any + Send>,
    rest: impl ExactSizeIterator<Item = A>,
    f: &impl Fn(A) -> R,
    panic_to_error: PanicToError,
) -> ChunkOutput<R> {
    let mut out: Vec<Result<R, TaskError>> = Vec::with_capacity(values.len() + 1 + rest.len());
    out.extend(values.into_iter().map(Ok));
    out.push(Err(panic_to_error(payload)));
    out.extend(
        rest.map(|a| panic::catch_unwind(AssertUnwindSafe(|| f(a))).map_err(panic_to_error)),
    );
    ChunkOutput::Mixed(out)
}

mod in_place {
    //! `run_chunk` for items and results of the same layout: results overwrite items.

    use std::mem::ManuallyDrop;
    use std::panic::{self, AssertUnwindSafe};
    use std::ptr;

    use super::{mixed, ChunkOutput, PanicToError};

    /// The buffer, as `[R; written] ++ [A; len - read]` with `written <= read` (one item,
    /// at `written`, is in `f` while the two differ), and its capacity in elements.
    struct Buffer<A> {
        ptr: *mut A,
        cap: usize,
        len: usize,
        read: usize,
        written: usize,
    }

    /// Runs `f` on every item, writing each result where its item was.
    ///
    /// Requires `size_of::<A>() == size_of::<R>() != 0` and equal alignments (checked by
    /// the caller), so the allocation of `cap` `A`s is exactly one of `cap` `R`s.
    pub(super) fn run<A, R>(
        items: Vec<A>,
        f: &impl Fn(A) -> R,
        panic_to_error: PanicToError,
    ) -> ChunkOutput<R> {
        debug_assert!(
            std::mem::size_of::<A>() == std::mem::size_of::<R>()
                && std::mem::align_of::<A>() == std::mem::align_of::<R>()
        );
        let mut items = ManuallyDrop::new(items);
        let mut b = Buffer {
            ptr: items.as_mut_ptr(),
            cap: items.capacity(),
            len: items.len(),
            read: 0,
            written: 0,
        };
        let all = panic::catch_unwind(AssertUnwindSafe(|| {
            let out = b.ptr.cast::<R>();
            while b.read < b.len {
                // SAFETY: `read < len`: slot `read` holds an initialised `A`, which is moved
                // out here and never read again (`read` moves past it first).
                let a = unsafe { ptr::read(b.ptr.add(b.read)) };
                b.read += 1;
                let r = f(a);
                // SAFETY: `written < read`, so slot `written` is an `A` already moved out (or
                // an `R` slot past the last written); the same size and alignment make it a
                // valid place for an `R`.
                unsafe { ptr::write(out.add(b.written), r) };
                b.written += 1;
            }
        }));
        match all {
            Ok(()) => {
                // SAFETY: every slot `0..len` now holds an initialised `R`; the allocation
                // was made for `cap` `A`s, which has the layout of `cap` `R`s (same size and
                // alignment), so a `Vec<R>` may own and free it.
                let values = unsafe { Vec::from_raw_parts(b.ptr.cast::<R>(), b.len, b.cap) };
                ChunkOutput::Values(values)
            }
            Err(payload) => {
                // Item `written` panicked: `[R; written]`, then a hole, then the
                // `A`s `read..len`. Move both out, then free the buffer.
                let out = b.ptr.cast::<R>();
                // SAFETY: slots `0..written` hold initialised `R`s, moved out once here.
                let values: Vec<R> = (0..b.written)
                    .map(|i| unsafe { ptr::read(out.add(i)) })
                    .collect();
                // SAFETY: slots `read..len` hold initialised `A`s, moved out once here.
                let rest: Vec<A> = (b.read..b.len)
                    .map(|i| unsafe { ptr::read(b.ptr.add(i)) })
                    .collect();
                // SAFETY: the allocation was made by a `Vec<A>` with capacity `cap`; with
                // length 0 dropping it frees the memory and drops no element (all moved).
                drop(unsafe { Vec::from_raw_parts(b.ptr, 0, b.cap) });
                mixed(values, payload, rest.into_iter(), f, panic_to_error)
            }
        }
    }
}

/// What a [`MapChunk`] produces: each item's result, in input order.
///
/// Stored compactly in the common case: when every item succeeded it is a plain `Vec<R>`
/// ([`ChunkOutput::Values`]), so a chunk of `u64`s moves 8 bytes per item rather than a
/// `Result<R, TaskError>` (40). Only a chunk with a failing item keeps each item's own
/// result ([`ChunkOutput::Mixed`]). Iterate it to get each item's `Result`.
///
/// # Examples
///
/// ```
/// use cfutures_core::{ChunkOutput, MapChunk, Task};
/// use std::sync::Arc;
///
/// let out = MapChunk::new(Arc::new(|x: u32| x * 2), vec![1, 2, 3]).run().unwrap();
/// assert!(matches!(out, ChunkOutput::Values(_)));
/// let doubled: Vec<u32> = out.into_iter().map(Result::unwrap).collect();
/// assert_eq!(doubled, [2, 4, 6]);
///
/// let out = MapChunk::new(Arc::new(|x: u32| 10 / x), vec![5, 0, 2]).run().unwrap();
/// let results: Vec<_> = out.into_iter().collect();
/// assert!(results[1].as_ref().unwrap_err().is_panic());
/// assert_eq!(*results[2].as_ref().unwrap(), 5);
/// ```
#[derive(Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ChunkOutput<R> {
    /// Every item succeeded: the values, in input order.
    Values(Vec<R>),
    /// At least one item failed: each item's result, in input order.
    Mixed(Vec<Result<R, TaskError>>),
}

impl<R> ChunkOutput<R> {
    /// The number of items.
    pub fn len(&self) -> usize {
        match self {
            ChunkOutput::Values(v) => v.len(),
            ChunkOutput::Mixed(v) => v.len(),
        }
    }

    /// True if the chunk had no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<R> Default for ChunkOutput<R> {
    fn default() -> Self {
        ChunkOutput::Values(Vec::new())
    }
}

impl<R> FromIterator<Result<R, TaskError>> for ChunkOutput<R> {
    /// Collects per-item results, staying compact until the first failure.
    fn from_iter<I: IntoIterator<Item = Result<R, TaskError>>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        let mut values = Vec::with_capacity(iter.size_hint().0);
        for r in iter.by_ref() {
            match r {
                Ok(v) => values.push(v),
                Err(e) => {
                    let mut mixed: Vec<Result<R, TaskError>> =
                        Vec::with_capacity(values.len() + 1 + iter.size_hint().0);
                    mixed.extend(values.into_iter().map(Ok));
                    mixed.push(Err(e));
                    mixed.extend(iter);
                    return ChunkOutput::Mixed(mixed);
                }
            }
        }
        ChunkOutput::Values(values)
    }
}

impl<R> IntoIterator for ChunkOutput<R> {
    type Item = Result<R, TaskError>;
    type IntoIter = ChunkIter<R>;
    fn into_iter(self) -> ChunkIter<R> {
        match self {
            ChunkOutput::Values(v) => ChunkIter::Values(v.into_iter()),
            ChunkOutput::Mixed(v) => ChunkIter::Mixed(v.into_iter()),
        }
    }
}

/// The iterator of a [`ChunkOutput`]: each item's `Result`, in input order.
#[derive(Debug)]
pub enum ChunkIter<R> {
    /// Over a chunk whose items all succeeded.
    Values(std::vec::IntoIter<R>),
    /// Over a chunk with a failing item.
    Mixed(std::vec::IntoIter<Result<R, TaskError>>),
}

impl<R> Iterator for ChunkIter<R> {
    type Item = Result<R, TaskError>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ChunkIter::Values(it) => it.next().map(Ok),
            ChunkIter::Mixed(it) => it.next(),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ChunkIter::Values(it) => it.size_hint(),
            ChunkIter::Mixed(it) => it.size_hint(),
        }
    }
}

impl<R> ExactSizeIterator for ChunkIter<R> {}
