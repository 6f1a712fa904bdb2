//! `map` over any executor (Python's `Executor.map`), in input order or in completion
//! order, with `timeout`, `chunksize` and `buffersize`.
//!
//! # How it runs
//!
//! Items are batched into [`MapChunk`]s of `chunksize` items (default 1) and each chunk is
//! submitted as one task through [`Submit<MapChunk<F, A>>`](Submit); the chunk's future
//! holds one `Result` per item, so a panicking item fails only its own slot. An executor
//! that accepts `MapChunk` works with `map`: the thread pool accepts any task, the process
//! pool sends one message per chunk, and [`InlineExecutor`](cfutures_core::InlineExecutor)
//! runs each chunk on the caller's thread.
//!
//! Without `buffersize`, every chunk is submitted when `map` is called, like Python (the
//! tasks run even if the iterator is never used). With `buffersize(b)`, `b` chunks are
//! submitted at the call and one more each time a completed chunk is taken, so at most `b`
//! chunks are in flight and the input is read lazily — an endless iterator works.

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_core::blocking::{self, WaitFor};
use cfutures_core::{
    ChunkOutput, Error, Executor, Future, FutureId, InvalidArgument, InvalidState, MapChunk,
    Submit, SubmitError, TaskError, Waitable, Waiter, WaiterKey,
};

use crate::hash::IdMap;
use crate::map_vec::VecChunk;
use crate::progress::{ChunkCount, Progress};
use crate::queue::QueueWaiter;
use crate::try_map::TryMap;

/// What `try_map` returns (a [`TryMap`] over a [`Map`] of `Result<R, Er>`).
type TryMapIter<E, F, I, R, Er> = TryMap<Map<E, F, I, Result<R, Er>>>;
/// What `try_map_unordered` returns.
type TryMapUnorderedIter<E, F, I, R, Er> = TryMap<MapUnordered<E, F, I, Result<R, Er>>>;

/// The options of a `map`: `timeout`, `chunksize`, `buffersize`, for an executor `E`.
///
/// Made by [`MapBuilder::new`] or [`ExecutorExt::map_builder`]; finished by
/// [`map`](Self::map) (results in input order) or [`map_unordered`](Self::map_unordered)
/// (in completion order).
///
/// # Examples
///
/// ```
/// use cfutures_combinators::ExecutorExt;
/// use cfutures_core::InlineExecutor;
/// use std::time::Duration;
///
/// let pool = InlineExecutor::new();
/// let squares: Vec<u64> = pool
///     .map_builder()
///     .chunksize(16)                      // 16 items per task
///     .buffersize(4)                      // at most 4 tasks in flight; input read lazily
///     .timeout(Duration::from_secs(10))   // for the whole map, from this call
///     .map(|x: u64| x * x, 0..)           // an endless input is fine with a buffersize
///     .unwrap()
///     .take(5)
///     .collect::<Result<_, _>>()
///     .unwrap();
/// assert_eq!(squares, [0, 1, 4, 9, 16]);
/// ```
#[derive(Clone, Debug)]
pub struct MapBuilder<E> {
    executor: E,
    timeout: Option<Duration>,
    /// `None`: not set (1 for `map`, automatic for `map_vec`).
    chunksize: Option<usize>,
    buffersize: Option<usize>,
}

impl<E> MapBuilder<E> {
    /// Options for a `map` on `executor` (any `E: Submit<MapChunk<..>>`, including `&pool`
    /// and `Arc<pool>`): no timeout, `chunksize` 1, no `buffersize`.
    pub fn new(executor: E) -> Self {
        MapBuilder {
            executor,
            timeout: None,
            chunksize: None,
            buffersize: None,
        }
    }

    /// A time limit for the whole map, measured from the call to
    /// [`map`](Self::map) (Python's `timeout`). Once it passes, the iterator yields one
    /// [`Error::Timeout`], cancels the tasks that have not started, and ends.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many items each task runs (Python's `chunksize`; default 1, and for
    /// [`map_vec`](Self::map_vec) eight chunks per CPU). Larger chunks cost less per item —
    /// for a process pool, one message per chunk instead of per item.
    ///
    /// A `chunksize` of 0 makes the `map` call fail with
    /// [`SubmitError::InvalidArgument`] (Python: `ValueError("chunksize must be >= 1.")`):
    ///
    /// ```
    /// use cfutures_combinators::ExecutorExt;
    /// use cfutures_core::InlineExecutor;
    ///
    /// let pool = InlineExecutor::new();
    /// let err = pool.map_builder().chunksize(0).map(|x: u8| x, [1]).unwrap_err();
    /// assert!(err.is_invalid_argument());
    /// assert_eq!(err.to_string(), "chunksize must be >= 1");
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// At most this many tasks (chunks) in flight, reading the input lazily (Python 3.14's
    /// `buffersize`). Without it, the whole input is read and submitted at the call — so an
    /// endless input needs a `buffersize`, and a huge one is held in memory as tasks.
    ///
    /// A `buffersize` of 0 makes the `map` call fail with
    /// [`SubmitError::InvalidArgument`] (Python: `ValueError("buffersize must be None or >
    /// 0")`).
    pub fn buffersize(mut self, buffersize: usize) -> Self {
        self.buffersize = Some(buffersize);
        self
    }

    /// The options' rule: `chunksize` and `buffersize`, when set, are at least 1.
    fn check(&self) -> Result<(), InvalidArgument> {
        if self.chunksize == Some(0) {
            return Err(InvalidArgument::new("chunksize must be >= 1"));
        }
        if self.buffersize == Some(0) {
            return Err(InvalidArgument::new("buffersize must be >= 1"));
        }
        Ok(())
    }

    /// The feeder of a map whose chunks get `watcher` installed (it must tell `count`).
    fn feeder<F, I>(
        self,
        f: F,
        items: I,
        count: Arc<ChunkCount>,
        watcher: Arc<dyn Waiter>,
    ) -> Feeder<E, F, I::IntoIter>
    where
        I: IntoIterator,
    {
        // The deadline counts from the call, as Python's `end_time`.
        let deadline = self.timeout.and_then(blocking::deadline_after);
        Feeder {
            executor: self.executor,
            f: Arc::new(f),
            input: Some(items.into_iter()),
            chunksize: self.chunksize.unwrap_or(1),
            submitted: 0,
            count,
            watcher,
            deadline,
            buffersize: self.buffersize,
        }
    }

    /// Applies `f` to every item on the executor; yields each item's `Result` **in input
    /// order** (Python's `Executor.map`, but a failing item does not end the iteration).
    ///
    /// See [`Map`] for what each item yields.
    ///
    /// # Errors
    ///
    /// The [`SubmitError`] if the executor refuses a task at the call (it is shut down or
    /// broken); the chunks submitted before are cancelled.
    /// [`SubmitError::InvalidArgument`] if `chunksize` or `buffersize` is 0.
    pub fn map<F, I, R>(self, f: F, items: I) -> Result<Map<E, F, I::IntoIter, R>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R,
        R: Send + Sync + 'static,
        E: Submit<MapChunk<F, I::Item>>,
    {
        self.check()?;
        let count = Arc::new(ChunkCount::new(self.chunksize.unwrap_or(1)));
        let feeder = self.feeder(f, items, count.clone(), count);
        let (deadline, buffersize) = (feeder.deadline, feeder.buffersize);
        let mut map = Map {
            feeder,
            queue: VecDeque::new(),
            out: Output::empty(),
            deadline,
            buffered: buffersize.is_some(),
            finished: false,
        };
        let initial = buffersize.unwrap_or(usize::MAX);
        while map.queue.len() < initial {
            match map.feeder.next_chunk() {
                None => break,
                Some(Chunk::Failed { error, .. }) => return Err(error),
                Some(c) => map.queue.push_back(c),
            }
        }
        Ok(map)
    }

    /// Like [`map`](Self::map), but yields results **in completion order** (per chunk: the
    /// items of one chunk come out together, in input order).
    ///
    /// To know which input a result belongs to, return it from `f`
    /// (`|x| (x, work(x))`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn map_unordered<F, I, R>(
        self,
        f: F,
        items: I,
    ) -> Result<MapUnordered<E, F, I::IntoIter, R>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R,
        R: Send + Sync + 'static,
        E: Submit<MapChunk<F, I::Item>>,
    {
        self.check()?;
        let count = Arc::new(ChunkCount::new(self.chunksize.unwrap_or(1)));
        let waiter = Arc::new(QueueWaiter::new(count.clone()));
        let feeder = self.feeder(f, items, count, waiter.clone());
        let (deadline, buffersize) = (feeder.deadline, feeder.buffersize);
        let mut map = MapUnordered {
            feeder,
            waiter,
            inflight: IdMap::default(),
            ready: VecDeque::new(),
            scratch: Vec::new(),
            out: Output::empty(),
            deadline,
            buffered: buffersize.is_some(),
            finished: false,
        };
        let initial = buffersize.unwrap_or(usize::MAX);
        while map.inflight.len() + map.ready.len() < initial {
            match map.feeder.next_chunk() {
                None => break,
                Some(Chunk::Failed { error, .. }) => return Err(error),
                Some(c) => map.add(c),
            }
        }
        Ok(map)
    }

    /// [`map`](Self::map) over a function returning `Result<R, Er>`: each item yields
    /// `Result<R, Error>`, an `Err(e)` of the function becoming [`Error::Failed`] with `e`
    /// inside (as [`fallible`](cfutures_core::fallible) does for `submit`), instead of
    /// `map`'s `Result<Result<R, Er>, Error>`. See [`TryMap`].
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_combinators::ExecutorExt;
    /// use cfutures_core::InlineExecutor;
    ///
    /// let pool = InlineExecutor::new();
    /// let out: Vec<_> = pool
    ///     .map_builder()
    ///     .chunksize(2)
    ///     .try_map(|s: &str| s.parse::<u32>(), ["1", "x", "3"])
    ///     .unwrap()
    ///     .collect();
    /// assert_eq!(*out[0].as_ref().unwrap(), 1);
    /// let err = out[1].as_ref().unwrap_err().task_error().unwrap();
    /// assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
    /// assert_eq!(*out[2].as_ref().unwrap(), 3);
    /// ```
    pub fn try_map<F, I, R, Er>(
        self,
        f: F,
        items: I,
    ) -> Result<TryMapIter<E, F, I::IntoIter, R, Er>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> Result<R, Er>,
        Result<R, Er>: Send + Sync + 'static,
        Er: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        E: Submit<MapChunk<F, I::Item>>,
    {
        self.map(f, items).map(TryMap::new)
    }

    /// [`map_unordered`](Self::map_unordered) over a function returning `Result<R, Er>`:
    /// items in completion order, as [`try_map`](Self::try_map) gives them.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn try_map_unordered<F, I, R, Er>(
        self,
        f: F,
        items: I,
    ) -> Result<TryMapUnorderedIter<E, F, I::IntoIter, R, Er>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> Result<R, Er>,
        Result<R, Er>: Send + Sync + 'static,
        Er: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        E: Submit<MapChunk<F, I::Item>>,
    {
        self.map_unordered(f, items).map(TryMap::new)
    }

    /// Applies `f` to every item of `items` on the executor and returns the values **in
    /// input order**, or the first error in input order: what
    /// `map(f, items)?.collect::<Result<Vec<_>, _>>()` returns, without the calling thread
    /// handling any item.
    ///
    /// The workers move each item out of the input `Vec`'s own buffer and write each result
    /// straight into the returned `Vec`'s buffer, so no item is copied into a task or out of
    /// one: on cheap functions this runs at the speed of a data-parallel library (rayon),
    /// where [`map`](Self::map), whose caller feeds and drains every item, cannot. It needs
    /// an executor that runs tasks in this process (`Submit<`[`VecChunk`]`>`: the thread
    /// pool, `InlineExecutor`); a process pool has to copy items anyway — use `map` there.
    ///
    /// Blocks until every item is done. `chunksize` defaults to eight chunks per CPU (at least 1024 items each);
    /// `buffersize` does not apply (every chunk is submitted at the call: the input is in
    /// memory already); `timeout` counts from the call.
    ///
    /// # Errors
    ///
    /// The first failure in input order: [`Error::Failed`] for the first item whose call
    /// panicked (a chunk stops at its first panic), [`Error::Cancelled`] or
    /// [`Error::Broken`] for a chunk that did not run, [`Error::Timeout`], or the
    /// executor's refusal of a chunk ([`Error::Broken`]). The chunks not yet started are
    /// then cancelled; items never run and values never returned are dropped (by the last
    /// chunk to finish). [`Error::InvalidArgument`] if `chunksize` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use cfutures_combinators::ExecutorExt;
    /// use cfutures_core::InlineExecutor;
    ///
    /// let pool = InlineExecutor::new(); // or a ThreadPoolExecutor
    /// let words = vec!["a".to_string(), "bb".to_string(), "ccc".to_string()];
    /// let lens: Vec<usize> = pool.map_vec(|w: String| w.len(), words).unwrap();
    /// assert_eq!(lens, [1, 2, 3]);
    ///
    /// let err = pool.map_vec(|x: u32| 10 / x, vec![5, 0, 2]).unwrap_err();
    /// assert!(err.task_error().unwrap().is_panic()); // division by zero
    /// ```
    pub fn map_vec<F, A, R>(self, f: F, items: Vec<A>) -> Result<Vec<R>, Error>
    where
        F: Fn(A) -> R,
        E: Submit<VecChunk<F, A, R>>,
    {
        self.check()?;
        let deadline = self.timeout.and_then(blocking::deadline_after);
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let chunksize = self.chunksize.unwrap_or_else(|| {
            // Eight chunks per CPU: enough to even out uneven items and busy workers, few
            // enough that submitting them (each may wake a worker) costs little; but no
            // chunk under 1024 items.
            items.len().div_ceil(8 * blocking::cpus()).max(1024)
        });
        let executor = self.executor;
        crate::map_vec::run(f, items, chunksize, deadline, |chunk| {
            executor.submit(chunk).map_err(Error::from)
        })
    }
}

/// Applies `f` to every item of `items` on `executor`; yields each item's `Result` in input
/// order (Python's `executor.map(f, items)`).
///
/// Shorthand for `MapBuilder::new(executor).map(f, items)`; see [`MapBuilder`] for
/// `timeout`, `chunksize` and `buffersize`, and [`ExecutorExt::map`] for the method form.
///
/// # Errors
///
/// The [`SubmitError`] if the executor refuses a task at the call.
///
/// # Examples
///
/// ```
/// use cfutures_combinators::map;
/// use cfutures_core::InlineExecutor;
///
/// let ex = InlineExecutor::new();
/// let out: Vec<_> = map(&ex, |x: i32| 10 / x, [5, 0, 2]).unwrap().collect();
/// assert_eq!(*out[0].as_ref().unwrap(), 2);
/// assert!(out[1].as_ref().unwrap_err().task_error().unwrap().is_panic()); // division by zero
/// assert_eq!(*out[2].as_ref().unwrap(), 5); // the failure did not end the iteration
/// ```
pub fn map<E, F, I, R>(
    executor: E,
    f: F,
    items: I,
) -> Result<Map<E, F, I::IntoIter, R>, SubmitError>
where
    I: IntoIterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
    MapBuilder::new(executor).map(f, items)
}

/// Like [`map`], but yields results in completion order.
///
/// # Errors
///
/// The [`SubmitError`] if the executor refuses a task at the call.
pub fn map_unordered<E, F, I, R>(
    executor: E,
    f: F,
    items: I,
) -> Result<MapUnordered<E, F, I::IntoIter, R>, SubmitError>
where
    I: IntoIterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
    MapBuilder::new(executor).map_unordered(f, items)
}

/// `map` as a method of every executor, so `pool.map(f, items)` reads like Python.
///
/// Implemented for every [`Executor`]; each method is available when the executor accepts
/// [`MapChunk`] tasks of the right type.
///
/// # Examples
///
/// ```
/// use cfutures_combinators::ExecutorExt;
/// use cfutures_core::InlineExecutor;
///
/// let pool = InlineExecutor::new();
/// let doubled: Result<Vec<i32>, _> = pool.map(|x| x * 2, 1..=3).unwrap().collect();
/// assert_eq!(doubled.unwrap(), [2, 4, 6]);
///
/// let mut it = pool.map_unordered(|x| x + 1, vec![1, 2, 3]).unwrap();
/// let mut got: Vec<i32> = it.by_ref().map(Result::unwrap).collect();
/// got.sort();
/// assert_eq!(got, [2, 3, 4]);
/// assert_eq!(it.progress().to_string(), "3/3");
/// ```
pub trait ExecutorExt: Executor {
    /// Applies `f` to every item; yields each item's `Result` in input order. See [`map`].
    ///
    /// # Errors
    ///
    /// The [`SubmitError`] if the executor refuses a task at the call.
    fn map<F, I, R>(&self, f: F, items: I) -> Result<Map<&Self, F, I::IntoIter, R>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R,
        R: Send + Sync + 'static,
        Self: Submit<MapChunk<F, I::Item>>,
    {
        MapBuilder::new(self).map(f, items)
    }

    /// Applies `f` to every item; yields the results in completion order. See
    /// [`map_unordered`].
    ///
    /// # Errors
    ///
    /// The [`SubmitError`] if the executor refuses a task at the call.
    fn map_unordered<F, I, R>(
        &self,
        f: F,
        items: I,
    ) -> Result<MapUnordered<&Self, F, I::IntoIter, R>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R,
        R: Send + Sync + 'static,
        Self: Submit<MapChunk<F, I::Item>>,
    {
        MapBuilder::new(self).map_unordered(f, items)
    }

    /// Applies `f` to every item of a `Vec`, the workers reading and writing in place;
    /// returns the values in input order or the first error. See
    /// [`MapBuilder::map_vec`].
    ///
    /// # Errors
    ///
    /// The first failure in input order (see [`MapBuilder::map_vec`]).
    fn map_vec<F, A, R>(&self, f: F, items: Vec<A>) -> Result<Vec<R>, Error>
    where
        F: Fn(A) -> R,
        Self: Submit<VecChunk<F, A, R>>,
    {
        MapBuilder::new(self).map_vec(f, items)
    }

    /// Applies `f`, which returns `Result<R, Er>`, to every item; yields `Result<R, Error>`
    /// in input order, `f`'s error inside [`Error::Failed`]. See [`MapBuilder::try_map`].
    ///
    /// # Errors
    ///
    /// The [`SubmitError`] if the executor refuses a task at the call.
    fn try_map<F, I, R, Er>(
        &self,
        f: F,
        items: I,
    ) -> Result<TryMapIter<&Self, F, I::IntoIter, R, Er>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> Result<R, Er>,
        Result<R, Er>: Send + Sync + 'static,
        Er: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        Self: Submit<MapChunk<F, I::Item>>,
    {
        MapBuilder::new(self).try_map(f, items)
    }

    /// [`try_map`](Self::try_map) in completion order. See
    /// [`MapBuilder::try_map_unordered`].
    ///
    /// # Errors
    ///
    /// The [`SubmitError`] if the executor refuses a task at the call.
    fn try_map_unordered<F, I, R, Er>(
        &self,
        f: F,
        items: I,
    ) -> Result<TryMapUnorderedIter<&Self, F, I::IntoIter, R, Er>, SubmitError>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> Result<R, Er>,
        Result<R, Er>: Send + Sync + 'static,
        Er: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        Self: Submit<MapChunk<F, I::Item>>,
    {
        MapBuilder::new(self).try_map_unordered(f, items)
    }

    /// A [`MapBuilder`] on this executor, to set `timeout`, `chunksize` and `buffersize`.
    fn map_builder(&self) -> MapBuilder<&Self> {
        MapBuilder::new(self)
    }
}

impl<E: Executor + ?Sized> ExecutorExt for E {}

type ChunkFuture<R> = Future<ChunkOutput<R>>;

/// One submitted chunk (or one the executor refused).
enum Chunk<R> {
    /// Submitted, with the feeder's watcher installed (`key: None`: it was complete by
    /// then).
    Submitted {
        len: usize,
        future: ChunkFuture<R>,
        key: Option<WaiterKey>,
    },
    Failed {
        len: usize,
        error: SubmitError,
    },
}

impl<R> Chunk<R> {
    fn cancel(&self) {
        if let Chunk::Submitted { future, .. } = self {
            future.cancel();
        }
    }

    /// The chunk's per-item results. The chunk must be done.
    fn into_output(self) -> Output<R> {
        match self {
            Chunk::Failed { len, error } => Output::repeat(error.into(), len),
            Chunk::Submitted {
                len, mut future, ..
            } => {
                let give_up = Instant::now() + Duration::from_secs(1);
                loop {
                    match future.try_into_result() {
                        Ok(Ok(ChunkOutput::Values(values))) => {
                            break Output {
                                values: values.into_iter(),
                                rest: Rest::Empty,
                            }
                        }
                        Ok(Ok(ChunkOutput::Mixed(results))) => {
                            break Output {
                                values: Vec::new().into_iter(),
                                rest: Rest::Mixed(results.into_iter()),
                            }
                        }
                        Ok(Err(e)) => break Output::repeat(e, len),
                        // Another handle is alive: the executor may be letting go of one.
                        Err(handle) if Instant::now() < give_up => {
                            future = handle;
                            std::thread::yield_now();
                        }
                        Err(_) => {
                            let e = InvalidState::new(
                                "map: the executor kept a handle to a chunk's future",
                            );
                            break Output::repeat(Error::InvalidState(e), len);
                        }
                    }
                }
            }
        }
    }
}

/// Results being handed out: a done chunk's values (the hot path: a plain `vec::IntoIter`,
/// so that `next` is a pointer compare and a read), or its per-item results, or one error
/// for each of its items.
struct Output<R> {
    values: std::vec::IntoIter<R>,
    rest: Rest<R>,
}

enum Rest<R> {
    Empty,
    Mixed(std::vec::IntoIter<Result<R, TaskError>>),
    Repeat(Error, usize),
}

impl<R> Output<R> {
    fn empty() -> Self {
        Output {
            values: Vec::new().into_iter(),
            rest: Rest::Empty,
        }
    }

    fn repeat(e: Error, n: usize) -> Self {
        Output {
            values: Vec::new().into_iter(),
            rest: Rest::Repeat(e, n),
        }
    }

    /// The hot path of both map iterators: the next value of a done chunk whose items all
    /// succeeded; `None` means "take the slow path" (not necessarily the end).
    #[inline(always)]
    fn next_value(&mut self) -> Option<R> {
        self.values.next()
    }

    fn next(&mut self) -> Option<Result<R, Error>> {
        if let Some(v) = self.values.next() {
            return Some(Ok(v));
        }
        match &mut self.rest {
            Rest::Empty => None,
            Rest::Mixed(it) => it.next().map(|r| r.map_err(Error::Failed)),
            Rest::Repeat(e, n) => {
                if *n == 0 {
                    return None;
                }
                *n -= 1;
                Some(Err(e.clone()))
            }
        }
    }

    fn len(&self) -> usize {
        self.values.len()
            + match &self.rest {
                Rest::Empty => 0,
                Rest::Mixed(it) => it.len(),
                Rest::Repeat(_, n) => *n,
            }
    }
}

/// Reads the input a chunk at a time and submits it.
struct Feeder<E, F, I> {
    executor: E,
    f: Arc<F>,
    /// `None` once the input ended or a submission failed.
    input: Option<I>,
    chunksize: usize,
    /// Items submitted (or refused) so far.
    submitted: usize,
    /// Items whose chunk is done, counted by `watcher`.
    count: Arc<ChunkCount>,
    /// Installed on every chunk's future: tells `count` (and, for `map_unordered`, queues
    /// the chunk).
    watcher: Arc<dyn Waiter>,
    /// When the map's timeout ends (from the call).
    deadline: Option<Instant>,
    /// At most this many chunks in flight.
    buffersize: Option<usize>,
}

impl<E, F, I> Feeder<E, F, I> {
    fn progress(&self) -> Progress {
        Progress {
            done: self.count.done(),
            total: self.submitted,
        }
    }
}

impl<E, F, I, R> Feeder<E, F, I>
where
    I: Iterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
    /// Reads and submits the next chunk; `None` when the input is exhausted.
    fn next_chunk(&mut self) -> Option<Chunk<R>> {
        let input = self.input.as_mut()?;
        let items: Vec<I::Item> = input.by_ref().take(self.chunksize).collect();
        let len = items.len();
        if len < self.chunksize {
            // The input returned `None`: do not ask again (it may not be fused).
            self.input = None;
        }
        if len == 0 {
            return None;
        }
        self.submitted += len;
        match self.executor.submit(MapChunk::new(self.f.clone(), items)) {
            Ok(future) => {
                let id = future.id();
                if len < self.chunksize {
                    // Before the watcher can hear of it.
                    self.count.set_short(id, len);
                }
                let key = match future.install_waiter(&self.watcher) {
                    Ok(key) => Some(key),
                    Err(_) => {
                        self.count.completed(id);
                        None
                    }
                };
                Some(Chunk::Submitted { len, future, key })
            }
            Err(e) => {
                // No more input after a refusal: the executor is shut down or broken.
                self.input = None;
                self.count.add(len);
                Some(Chunk::Failed { len, error: e })
            }
        }
    }
}

/// The iterator of [`map`]: each item's `Result`, in input order.
///
/// Each item yields `Ok(value)`, or `Err(`[`Error`]`)`: [`Error::Failed`] if `f` panicked
/// on that item (only that item fails, even within a chunk); [`Error::Cancelled`] or
/// [`Error::Broken`] for every item of a chunk whose task was cancelled (e.g. by
/// `shutdown(cancel_futures)`) or whose executor broke; and [`Error::Broken`] for the items
/// of a chunk the executor refused (it was shut down or broken meanwhile), after which no
/// more input is read. A failing item does not end the iteration.
///
/// When the `timeout` passes it yields one [`Error::Timeout`] and ends. On timeout and on
/// drop, the tasks not yet started are cancelled (running ones finish; their results are
/// dropped).
///
/// [`progress`](Map::progress) tells how many items are done out of how many submitted.
pub struct Map<E, F, I, R>
where
    I: Iterator,
{
    feeder: Feeder<E, F, I>,
    queue: VecDeque<Chunk<R>>,
    out: Output<R>,
    deadline: Option<Instant>,
    buffered: bool,
    finished: bool,
}

impl<E, F, I: Iterator, R> Map<E, F, I, R> {
    /// Items done (their task completed) of items submitted so far.
    pub fn progress(&self) -> Progress {
        self.feeder.progress()
    }

    fn stop(&mut self) {
        self.finished = true;
        self.feeder.input = None;
        for c in self.queue.drain(..) {
            c.cancel();
        }
    }
}

impl<E, F, I, R> Map<E, F, I, R>
where
    I: Iterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
    /// Everything but the hot path: the current chunk is used up; wait for the next one.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, Error>> {
        loop {
            if let Some(r) = self.out.next() {
                return Some(r);
            }
            let front = match self.queue.front() {
                Some(c) if !self.finished => c,
                _ => {
                    self.finished = true;
                    return None;
                }
            };
            if let Chunk::Submitted { future, .. } = front {
                let error = match future.try_wait_deadline(self.deadline) {
                    Ok(true) => None,
                    Ok(false) => Some(Error::Timeout),
                    // Waiting would never end (a wait cycle): say so rather than hang.
                    Err(cycle) => Some(Error::Deadlock(cycle)),
                };
                if let Some(e) = error {
                    self.stop();
                    return Some(Err(e));
                }
            }
            let chunk = self.queue.pop_front().expect("front exists");
            if self.buffered {
                if let Some(c) = self.feeder.next_chunk() {
                    self.queue.push_back(c);
                }
            }
            self.out = chunk.into_output();
        }
    }
}

impl<E, F, I, R> Iterator for Map<E, F, I, R>
where
    I: Iterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
    type Item = Result<R, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.out.next_value() {
            Some(v) => Some(Ok(v)),
            None => self.next_slow(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let queued: usize = self
            .queue
            .iter()
            .map(|c| match c {
                Chunk::Submitted { len, .. } | Chunk::Failed { len, .. } => *len,
            })
            .sum();
        let known = self.out.len() + queued;
        let (_, hi) = match &self.feeder.input {
            Some(input) => input.size_hint(),
            None => (0, Some(0)),
        };
        let hi = hi.and_then(|h| h.checked_add(known));
        if self.finished {
            (self.out.len(), Some(self.out.len()))
        } else if self.deadline.is_some() {
            // A timeout ends the iteration early, with one error.
            (self.out.len().min(1), hi.map(|h| h + 1))
        } else {
            // Without a timeout every item yields exactly once (a refused submission ends
            // the input early, hence the lower bound leaves the unread input out).
            (known, hi)
        }
    }
}

impl<E, F, I, R> FusedIterator for Map<E, F, I, R>
where
    I: Iterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
}

impl<E, F, I: Iterator, R> Drop for Map<E, F, I, R> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<E, F, I: Iterator, R> fmt::Debug for Map<E, F, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("progress", &self.progress())
            .field("chunks_in_flight", &self.queue.len())
            .field("finished", &self.finished)
            .finish()
    }
}

/// The iterator of [`map_unordered`]: each item's `Result`, in completion order.
///
/// Items yield as in [`Map`]; the chunk that completes first comes out first (its items in
/// input order). Timeout, drop and progress behave as in [`Map`].
pub struct MapUnordered<E, F, I, R>
where
    I: Iterator,
    R: Send + Sync + 'static,
{
    feeder: Feeder<E, F, I>,
    waiter: Arc<QueueWaiter>,
    /// Submitted, not yet complete: the chunk's length, future and waiter installation.
    inflight: IdMap<FutureId, (usize, ChunkFuture<R>, WaiterKey)>,
    /// Complete, in completion order, not yet handed out.
    ready: VecDeque<Chunk<R>>,
    scratch: Vec<FutureId>,
    out: Output<R>,
    deadline: Option<Instant>,
    buffered: bool,
    finished: bool,
}

impl<E, F, I, R> MapUnordered<E, F, I, R>
where
    I: Iterator,
    R: Send + Sync + 'static,
{
    /// Items done (their task completed) of items submitted so far.
    pub fn progress(&self) -> Progress {
        self.feeder.progress()
    }

    fn add(&mut self, chunk: Chunk<R>) {
        match chunk {
            Chunk::Submitted {
                len,
                future,
                key: Some(key),
            } => {
                self.inflight
                    .insert(Waitable::id(&future), (len, future, key));
            }
            // Complete when submitted, or refused.
            done_or_failed => self.ready.push_back(done_or_failed),
        }
    }

    fn stop(&mut self) {
        self.finished = true;
        self.feeder.input = None;
        for (_, (_, future, key)) in self.inflight.drain() {
            future.remove_waiter(key);
            future.cancel();
        }
        self.ready.clear();
    }
}

impl<E, F, I, R> MapUnordered<E, F, I, R>
where
    I: Iterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
    /// Everything but the hot path: the current chunk is used up.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, Error>> {
        loop {
            if let Some(r) = self.out.next() {
                return Some(r);
            }
            if self.finished {
                return None;
            }
            if let Some(chunk) = self.ready.pop_front() {
                if self.buffered {
                    if let Some(c) = self.feeder.next_chunk() {
                        self.add(c);
                    }
                }
                self.out = chunk.into_output();
                continue;
            }
            if self.inflight.is_empty() {
                self.finished = true;
                return None;
            }
            // What this thread waits on: any chunk in flight (listed only if a wait cycle is
            // looked for: see `blocking::block_on`).
            let inflight = &self.inflight;
            let any_chunk = |visit: &mut dyn FnMut(FutureId) -> bool| {
                for id in inflight.keys() {
                    if !visit(*id) {
                        break;
                    }
                }
            };
            let got =
                self.waiter
                    .take_until(&mut self.scratch, self.deadline, WaitFor::Any(&any_chunk));
            if got != Ok(true) {
                self.stop();
                return Some(Err(match got {
                    Err(cycle) => Error::Deadlock(cycle),
                    Ok(_) => Error::Timeout,
                }));
            }
            for id in self.scratch.drain(..) {
                if let Some((len, future, _)) = self.inflight.remove(&id) {
                    self.ready.push_back(Chunk::Submitted {
                        len,
                        future,
                        key: None,
                    });
                }
            }
        }
    }
}

impl<E, F, I, R> Iterator for MapUnordered<E, F, I, R>
where
    I: Iterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
    type Item = Result<R, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.out.next_value() {
            Some(v) => Some(Ok(v)),
            None => self.next_slow(),
        }
    }
}

impl<E, F, I, R> FusedIterator for MapUnordered<E, F, I, R>
where
    I: Iterator,
    F: Fn(I::Item) -> R,
    R: Send + Sync + 'static,
    E: Submit<MapChunk<F, I::Item>>,
{
}

impl<E, F, I, R> Drop for MapUnordered<E, F, I, R>
where
    I: Iterator,
    R: Send + Sync + 'static,
{
    fn drop(&mut self) {
        self.stop();
    }
}

impl<E, F, I, R> fmt::Debug for MapUnordered<E, F, I, R>
where
    I: Iterator,
    R: Send + Sync + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("progress", &self.progress())
            .field("chunks_in_flight", &self.inflight.len())
            .field("finished", &self.finished)
            .finish()
    }
}
