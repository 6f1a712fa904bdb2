//! Python's `concurrent.futures` for Rust, in one crate: `ThreadPoolExecutor`,
//! `ProcessPoolExecutor`, `Future`, `wait`, `as_completed` and `Executor.map`.
//!
//! ```
//! use cfutures::prelude::*;
//!
//! let pool = ThreadPoolExecutor::new(4)?;
//! let f = pool.submit(|| 6 * 7)?;
//! assert_eq!(*f.result()?, 42);
//!
//! let squares: Vec<u64> = pool.map(|x: u64| x * x, 0..5)?.collect::<Result<_, _>>()?;
//! assert_eq!(squares, [0, 1, 4, 9, 16]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate only re-exports; the code lives in layered crates you can also depend on
//! directly, to compile only what you need:
//!
//! | feature | crate | what |
//! |---|---|---|
//! | (always) | [`cfutures-core`](cfutures_core) | `Future`, `Promise`, errors, the `Executor` / `Submit` / `Task` traits, `InlineExecutor`, `async`/`await`, executor [`events`] and [`Stats`] |
//! | `thread-pool` (default) | [`cfutures-thread-pool`](thread_pool) | [`ThreadPoolExecutor`] |
//! | `combinators` (default) | [`cfutures-combinators`](combinators) | [`wait`], [`as_completed`], [`map`], [`ExecutorExt`] |
//! | `process-pool` | [`cfutures-process-pool`](process_pool) | `ProcessPoolExecutor` (Unix; serde + postcard) |
//! | `log` | | diagnostics through the `log` facade ([`diag`]) |
//!
//! Everything in `cfutures-core` is at the root ([`Future`], [`Error`], [`fallible`], …);
//! each other crate is a module ([`thread_pool`], [`combinators`], `process_pool`) and its
//! main items are at the root too. The [`prelude`] has what a typical program uses.
#![cfg_attr(
    all(feature = "process-pool", unix),
    doc = r#"
With the `process-pool` feature:

```
use cfutures::prelude::*;

fn square(x: u64) -> u64 {
    x * x
}

let pool = ProcessPoolExecutor::new(2)?;
assert_eq!(*pool.submit_fn(square, 12)?.result()?, 144);
# Ok::<(), Box<dyn std::error::Error>>(())
```
"#
)]

pub use cfutures_core::*;

/// The thread pool crate, [`cfutures-thread-pool`](cfutures_thread_pool).
#[cfg(feature = "thread-pool")]
pub use cfutures_thread_pool as thread_pool;
#[cfg(feature = "thread-pool")]
pub use cfutures_thread_pool::ThreadPoolExecutor;

/// The combinators crate, [`cfutures-combinators`](cfutures_combinators).
#[cfg(feature = "combinators")]
pub use cfutures_combinators as combinators;
#[cfg(feature = "combinators")]
pub use cfutures_combinators::{
    as_completed, map, map_unordered, wait, AsCompleted, DoneAndNotDone, ExecutorExt, FutureSet,
    Map, MapBuilder, MapUnordered, Progress, ReturnWhen, TimedOut, TryMap,
};

/// The process pool crate, [`cfutures-process-pool`](cfutures_process_pool).
// (Unix only: elsewhere the process pool crate stops the build with one clear message.)
#[cfg(all(feature = "process-pool", unix))]
pub use cfutures_process_pool as process_pool;
#[cfg(all(feature = "process-pool", unix))]
pub use cfutures_process_pool::{ProcessPoolExecutor, RemoteTask, SharedBytes, SharedSlice};

/// What a typical program uses, for `use cfutures::prelude::*;`.
///
/// The futures and errors, the executor traits, [`fallible`], the pools (with the process
/// pool, its `SharedSlice` and `SharedBytes` for data shared by many tasks), and (with the
/// `combinators` feature) [`wait`], [`as_completed`], [`ReturnWhen`] and the
/// [`ExecutorExt`] methods (`pool.map(..)`, `pool.try_map(..)`, `pool.map_builder()`).
pub mod prelude {
    pub use cfutures_core::{
        fallible, AnyFuture, Error, Executor, Future, Promise, State, Submit, SubmitError, Task,
        TaskError,
    };

    #[cfg(feature = "combinators")]
    pub use cfutures_combinators::{as_completed, wait, ExecutorExt, ReturnWhen};

    #[cfg(all(feature = "process-pool", unix))]
    pub use cfutures_process_pool::{ProcessPoolExecutor, RemoteTask, SharedBytes, SharedSlice};
    #[cfg(feature = "thread-pool")]
    pub use cfutures_thread_pool::ThreadPoolExecutor;
}
