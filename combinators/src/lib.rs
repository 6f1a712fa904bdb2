//! `wait`, `as_completed` and `map` — Python's `concurrent.futures` combinators — over any
//! executor that implements the [`cfutures_core`] traits.
//!
//! ```
//! use cfutures_combinators::{as_completed, wait, ExecutorExt, ReturnWhen};
//! use cfutures_core::{InlineExecutor, Submit};
//!
//! let pool = InlineExecutor::new(); // any executor: a thread pool, a process pool, yours
//!
//! // map: results in input order, one Result per item.
//! let doubled: Vec<i32> = pool.map(|x| x * 2, 0..5).unwrap().map(Result::unwrap).collect();
//! assert_eq!(doubled, [0, 2, 4, 6, 8]);
//!
//! // wait: the done and not-done sets.
//! let fs: Vec<_> = (0..3).map(|i| pool.submit(move || i * i).unwrap()).collect();
//! let r = wait(fs.iter().cloned(), None, ReturnWhen::AllCompleted);
//! assert_eq!(r.done.len(), 3);
//!
//! // as_completed: each future once, as it completes.
//! let total: i32 = as_completed(fs, None).map(|f| *f.unwrap().result().unwrap()).sum();
//! assert_eq!(total, 0 + 1 + 4);
//! ```
//!
//! # `wait`
//!
//! [`wait`] blocks until the first completion, the first failure, or all completions
//! ([`ReturnWhen`]), or a timeout, and returns [`DoneAndNotDone`] sets ([`FutureSet`]s),
//! with exactly Python's rules: duplicates collapse, already-complete futures count, a
//! timeout returns (it is not an error), and a future cancelled while still queued is *not
//! done* until its executor notices.
//!
//! # `as_completed`
//!
//! [`as_completed`] yields each future once, the already-complete ones first, then in
//! completion order. It is lazy (the timeout clock starts at the first `next()`), and on
//! timeout yields a [`TimedOut`] error (`"2 (of 5) futures unfinished"`).
//!
//! # Mixing result types and executors
//!
//! Both take any [`Waitable`](cfutures_core::Waitable) handle: [`Future<T>`] for one result
//! type, or [`AnyFuture`] (from [`Future::erase`]) to wait on futures of different types,
//! from different executors, together — owned, or borrowed: `wait(&futures, ..)` and
//! `as_completed(&futures, ..)` take a `&Vec`, a slice or any iterator of references, and
//! give the references back.
//!
//! ```
//! use cfutures_combinators::{as_completed, wait, ReturnWhen};
//! use cfutures_core::{AnyFuture, InlineExecutor, Submit};
//!
//! let a = InlineExecutor::new();
//! let b = InlineExecutor::new();
//! let n = a.submit(|| 42).unwrap();
//! let s = b.submit(|| String::from("hello")).unwrap();
//! let all: Vec<AnyFuture> = vec![n.erase(), s.erase()];
//! assert_eq!(wait(all.clone(), None, ReturnWhen::AllCompleted).done.len(), 2);
//! assert_eq!(as_completed(all, None).count(), 2);
//! ```
//!
//! # `map`
//!
//! [`map`], [`map_unordered`], or the methods of [`ExecutorExt`] (implemented for every
//! executor, so `pool.map(f, items)` reads like Python), configured with [`MapBuilder`]:
//! `timeout` (from the call), `chunksize` (items per task) and `buffersize` (tasks in
//! flight; only with it is the input read lazily — without it, `map` reads the whole input
//! and submits every task at the call). Unlike Python's, each item yields its own `Result`, so
//! one failure does not end the iteration; dropping the iterator cancels what has not
//! started.
//!
//! For a function that returns `Result<R, E>`, [`ExecutorExt::try_map`] (and
//! [`MapBuilder::try_map`], `try_map_unordered`) yields `Result<R, Error>` per item, `E`
//! inside [`Error::Failed`](cfutures_core::Error::Failed) as
//! [`fallible`](cfutures_core::fallible) does for `submit`, instead of `map`'s
//! `Result<Result<R, E>, Error>`. A `chunksize` or `buffersize` of 0 makes the call fail with
//! [`SubmitError::InvalidArgument`](cfutures_core::SubmitError::InvalidArgument).
//!
//! `map` submits [`MapChunk`](cfutures_core::MapChunk) tasks, so an executor works with it
//! when it implements `Submit<MapChunk<F, A>>` — the thread pool for any closure, the
//! process pool for plain functions.
//!
//! To turn a whole `Vec` into a `Vec`, [`ExecutorExt::map_vec`] (or
//! [`MapBuilder::map_vec`]) has the workers read the items from the input's buffer and write
//! the results into the output's, so the calling thread handles no item: on cheap
//! functions it runs at the speed of rayon, where the item-by-item `map` is held back by the
//! calling thread. It returns the values, or the first failure in input order, and needs
//! an executor that runs tasks in this process ([`VecChunk`]).
//!
//! ```
//! use cfutures_combinators::ExecutorExt;
//! use cfutures_core::InlineExecutor;
//!
//! let pool = InlineExecutor::new();
//! let doubled: Vec<u64> = pool.map_vec(|x| x * 2, (0..1000).collect()).unwrap();
//! assert_eq!(doubled[999], 1998);
//! ```
//!
//! # Progress
//!
//! [`AsCompleted::progress`], [`Map::progress`] and [`MapUnordered::progress`] return a
//! [`Progress`] (`done/total`), readable between items:
//!
//! ```
//! use cfutures_combinators::ExecutorExt;
//! use cfutures_core::InlineExecutor;
//!
//! let pool = InlineExecutor::new();
//! let mut it = pool.map(|x: u32| x + 1, 0..4).unwrap();
//! while let Some(r) = it.next() {
//!     eprintln!("{} done, last = {:?}", it.progress(), r);
//! }
//! ```
//!
//! # Cost
//!
//! `wait` and `as_completed` over n futures cost O(n) in total: installing and removing a
//! waiter is O(1) per future, and each completion costs O(1). `wait(ALL_COMPLETED)` needs
//! no waiter at all (it waits on each future in turn). For `map`, pick a `chunksize` that
//! makes each task worth tens of microseconds; for very cheap functions a `buffersize` of
//! a few times the number of workers keeps the chunks' memory hot, and `map_vec` avoids
//! the calling thread's per-item work altogether. Figures are in the repository's
//! `BENCHMARKS.md`.
//!
//! [`Future<T>`]: cfutures_core::Future
//! [`Future::erase`]: cfutures_core::Future::erase
//! [`AnyFuture`]: cfutures_core::AnyFuture

mod as_completed;
mod hash;
mod map;
mod map_vec;
mod progress;
mod queue;
mod try_map;
mod wait;

pub use as_completed::{as_completed, AsCompleted, TimedOut};
pub use hash::{BuildFutureHasher, FutureHasher, FutureSet};
pub use map::{map, map_unordered, ExecutorExt, Map, MapBuilder, MapUnordered};
pub use map_vec::VecChunk;
pub use progress::Progress;
pub use try_map::TryMap;
pub use wait::{wait, DoneAndNotDone, ReturnWhen};
