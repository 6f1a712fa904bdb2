//! cfutures-process-pool: Python's `ProcessPoolExecutor`, for Rust — worker processes that
//! never hang the pool when they die, that can be stopped mid-task, and that cost a few
//! microseconds per task.
//!
//! ```
//! use cfutures_process_pool::ProcessPoolExecutor;
//!
//! fn add_one(x: u64) -> u64 {
//!     x + 1
//! }
//!
//! let pool = ProcessPoolExecutor::new(2).unwrap();
//! let futures: Vec<_> = (0..10).map(|i| pool.submit_fn(add_one, i).unwrap()).collect();
//! let total: u64 = futures.iter().map(|f| *f.result().unwrap()).sum();
//! assert_eq!(total, 55);
//! ```
//!
//! # How workers start: no setup
//!
//! Workers are the same executable, started again (`posix_spawn`, not `fork`) with an
//! environment variable that puts them in worker mode. This crate registers a constructor
//! that runs before `main` (an `.init_array` entry on Linux, `__mod_init_func` on macOS): in
//! a worker it serves tasks and exits, so `main` never runs there; in any other process it
//! returns at once. So programs, examples, test binaries (`cargo test`), benchmarks and
//! doctests need **no line of setup**. On other Unix platforms, call [`init`] as the first
//! line of `main`.
//!
//! Consequence: code that `main` runs before creating the pool does not run in workers
//! (as with Python's spawn start method); use [`Builder::initializer`] for per-worker
//! setup.
//!
//! # What crosses to a worker
//!
//! * `submit_fn(f, arg)`: a function and its argument (Python's `submit(fn, *args)`). `f`
//!   must be a fn item or a closure that captures nothing — checked at compile time. The
//!   argument and the result are serialized with serde + postcard.
//! * `submit(task)` for task types: implement [`Task`](cfutures_core::Task), derive
//!   `Serialize` + `Deserialize`, and add the marker `impl RemoteTask for MyTask {}`.
//! * `map` chunks: the pool implements `Submit<MapChunk<F, A>>`, so `cfutures-combinators`'
//!   `map` works with `chunksize`: one chunk is one frame and one task in a worker.
//!
//! # Faults
//!
//! * A worker that dies (SIGKILL, the OOM killer, a segfault, `abort`, `exit`) is noticed at
//!   once (end of file on its pipe, then its exit status). By default only the task it was
//!   running fails, with [`TaskError::WorkerDied`](cfutures_core::TaskError::WorkerDied)
//!   naming the pid and the signal or exit code; the worker is replaced and the other tasks
//!   carry on. [`WorkerDeathPolicy::BreakPool`] gives Python's behaviour instead.
//! * A panic fails its future with the message and location; the worker lives.
//! * An argument, task or result that fails to encode or decode fails its future with
//!   [`TaskError::Codec`](cfutures_core::TaskError::Codec); the worker lives.
//! * Time limits ([`Builder::time_limit`], [`ProcessPoolExecutor::submit_fn_with_timeout`])
//!   and [`ProcessPoolExecutor::cancel`] of a running task kill and replace the worker.
//! * A task's standard output goes to the parent's standard error (see [`WorkerOutput`]);
//!   the protocol runs on private descriptors, so printing cannot corrupt it.
//! * A worker never outlives its parent (end of file on its command pipe; on Linux also
//!   `PR_SET_PDEATHSIG`), and after `shutdown` no worker process and no zombie remains.
//!
//! # Callbacks
//!
//! Done-callbacks of this pool's futures run on the pool's I/O thread (Python: the executor
//! manager thread). Keep them short, and do not wait there on another future of the same
//! pool: the thread that would complete it is the one waiting.
//!
//! # Postcard's limits
//!
//! The wire format is postcard, which is not self-describing: it has no
//! `deserialize_any`. Types that need it fail to decode, which fails the task with a codec
//! error: `#[serde(untagged)]` and internally tagged (`#[serde(tag = "...")]`) enums,
//! `#[serde(flatten)]`, and `skip_serializing_if` (the field is missing on the wire but
//! expected by the decoder). Plain structs, tuples, externally tagged enums, `Vec`,
//! `HashMap`, `String`, `Option` all work. See `tests/codec.rs`.
//!
//! Design notes: `DESIGN-NOTES.md` next to this crate's `Cargo.toml`.

#[cfg(not(unix))]
compile_error!("cfutures-process-pool runs on Unix only (Linux, macOS, the BSDs): its workers are re-executed copies of the program, started with posix_spawn and talking over pipes. Use the thread pool elsewhere (cfutures without the `process-pool` feature).");

#[cfg(unix)]
mod pool;
#[cfg(unix)]
mod prim;
#[cfg(unix)]
mod sys;
#[cfg(unix)]
mod wire;
#[cfg(unix)]
mod worker;

#[cfg(unix)]
pub use pool::{Builder, ProcessPoolExecutor, RemoteTask, WorkerDeathPolicy, WorkerOutput};

/// Serves as a worker if this process was started as one (then never returns); returns at
/// once otherwise.
///
/// On Linux and macOS this already happens before `main` and calling it does nothing; on
/// other Unix platforms, make it the first line of `main`.
///
/// ```
/// cfutures_process_pool::init(); // first line of `main`
/// ```
#[cfg(unix)]
pub fn init() {
    worker::maybe_serve();
}
