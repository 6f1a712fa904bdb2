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
//! * `submit_fn(f, arg)`: a function and its argument (Python's `submit(fn, *args)`). The
//!   argument and the result are serialized with serde + postcard. `f` must be a `fn` item
//!   or a closure that captures nothing: a worker process is a fresh copy of your program and
//!   cannot receive captured state, so pass data through `arg` (a tuple for several values).
//!   A capturing closure is rejected when the program is *built* (`cargo build`, `cargo
//!   test`), not by `cargo check` (no trait bound on stable Rust tells a zero-sized function
//!   from a capturing closure): the error says "the function given to a process pool ...
//!   must be a fn item or a closure that captures nothing", names the closure by file and
//!   line (`{closure@src/main.rs:6:28}`), and its last note points at your call.
//! * `submit(task)` for task types: implement [`Task`](cfutures_core::Task), derive
//!   `Serialize` + `Deserialize`, and add the marker `impl RemoteTask for MyTask {}`.
//!
//!   ```
//!   use cfutures_core::{Submit, Task, TaskError};
//!   use cfutures_process_pool::{ProcessPoolExecutor, RemoteTask};
//!   use serde::{Deserialize, Serialize};
//!
//!   #[derive(Serialize, Deserialize)]
//!   struct Fib(u32);
//!
//!   impl Task for Fib {
//!       type Output = u64;
//!       fn run(self) -> Result<u64, TaskError> {
//!           let (mut a, mut b) = (0u64, 1u64);
//!           for _ in 0..self.0 {
//!               (a, b) = (b, a + b);
//!           }
//!           Ok(a)
//!       }
//!   }
//!   impl RemoteTask for Fib {}
//!
//!   let pool = ProcessPoolExecutor::new(1).unwrap();
//!   let f = pool.submit(Fib(50)).unwrap();
//!   assert_eq!(*f.result().unwrap(), 12_586_269_025);
//!   ```
//! * `map` chunks: the pool implements `Submit<MapChunk<F, A>>`, so `cfutures-combinators`'
//!   `map` works with `chunksize`: one chunk is one frame and one task in a worker.
//!   `pool.map(f, items)` (and `try_map`, `map_builder()...map`) follows the same rule for
//!   `f` as `submit_fn`; items and results are serialized.
//!
//! # Big data: at memory speed, without ceremony
//!
//! Byte buffers and vectors of numbers cross at memory speed with nothing to write:
//! `Vec<u8>`, `Vec<f64>`, `Vec<u32>`, `Box<[i64]>`, `String`, … as a whole argument or
//! result (and as `map` items), and `Vec<u8>`, `Vec<f32>`, `Vec<f64>` anywhere inside your
//! task and result types; other vectors of plain data inside a struct opt in with
//! [`PodVec`] or `#[serde(with = "cfutures_process_pool::bulk::pod_vec")]` (see [`bulk`]).
//! Payloads of 64 KiB or more go through shared memory instead of the pipes (written once,
//! mapped by the other side; [`Builder::shared_memory_threshold`]): a 50 MB `Vec<u8>`
//! argument crosses in ~15–25 ms, and an owned argument is not held twice (see
//! `BENCHMARKS.md`).
//!
//! Data that many tasks read goes in a [`SharedSlice`] (or [`SharedBytes`]): made once in
//! shared memory, sealed read-only, it costs O(1) to send whatever its size, and every
//! worker reads the same pages.
//!
//! ```
//! use cfutures_process_pool::{ProcessPoolExecutor, SharedSlice};
//!
//! fn sum(part: SharedSlice<u64>) -> u64 {
//!     part.iter().sum()
//! }
//!
//! let data = SharedSlice::<u64>::new_with(1 << 20, |d| {
//!     for (i, x) in d.iter_mut().enumerate() {
//!         *x = i as u64;
//!     }
//! })
//! .unwrap();
//! let pool = ProcessPoolExecutor::new(2).unwrap();
//! let n = data.len();
//! // Each task gets a view: a descriptor and an offset, not 4 MiB of numbers.
//! let halves = [data.slice(0..n / 2), data.slice(n / 2..n)];
//! let futures: Vec<_> = halves
//!     .into_iter()
//!     .map(|h| pool.submit_fn(sum, h).unwrap())
//!     .collect();
//! let total: u64 = futures.iter().map(|f| *f.result().unwrap()).sum();
//! assert_eq!(total, (n as u64) * (n as u64 - 1) / 2);
//! ```
//!
//! # Faults
//!
//! Nothing a worker does, and nothing done to it, hangs the pool or a caller. The full list,
//! with how fast each is seen, is in `DESIGN-NOTES.md` ("Liveness"); in short:
//!
//! * A worker that dies (SIGKILL, the OOM killer, a segfault, `abort`, `exit`) is noticed at
//!   once (its pidfd on Linux, end of file on its pipe elsewhere), even when a process the
//!   task forked still holds its pipes. By default only the task it was running fails, with
//!   [`TaskError::WorkerDied`](cfutures_core::TaskError::WorkerDied) naming the pid and the
//!   signal or exit code; the tasks it had not started go to other workers; it is replaced.
//!   [`WorkerDeathPolicy::BreakPool`] gives Python's behaviour instead.
//! * With a [`RetryPolicy`] ([`Builder::retry`], or per submission through
//!   [`ProcessPoolExecutor::with`] and [`TaskOptions`]) such a task runs again, after a
//!   backoff of its own; one that has killed `poison_after` workers (3) is poison: it fails
//!   with [`TaskError::Quarantined`](cfutures_core::TaskError::Quarantined), listing each
//!   death, and breaks no pool. A `map` chunk whose worker died is rerun item by item, so
//!   only the poison item fails.
//! * A worker that cannot be started (`ulimit -u`, `ulimit -n`, memory), or that dies before
//!   it is ready, is retried with backoff while the pool serves with the workers it has; the
//!   pool breaks only if no worker can be started at all (10 failed starts in a row before
//!   any worker ever started, or none running for 30 s).
//! * A worker that is stopped (`SIGSTOP`) or busy with a long task does not hold the tasks
//!   queued behind it: after 10 ms (at most 100 ms in a pool where nothing else happens),
//!   those it has not started go to other workers.
//! * A panic fails its future with the message and location; the worker lives.
//! * An argument, task or result that fails to encode or decode (or whose serde impl panics)
//!   fails its future with [`TaskError::Codec`](cfutures_core::TaskError::Codec); the worker
//!   lives.
//! * A worker killed while it reads or writes a large payload fails only its task; its
//!   shared-memory segments die with it, and no segment outlives the pool.
//! * A task that writes to the pool's descriptors fails with a codec error ("out of sync");
//!   its worker is replaced, and no other task loses its result.
//! * Time limits ([`Builder::time_limit`], [`ProcessPoolExecutor::submit_fn_with_timeout`])
//!   and [`ProcessPoolExecutor::cancel`] of a running task kill and replace the worker.
//! * A task's standard output goes to the parent's standard error (see [`WorkerOutput`]);
//!   the protocol runs on private descriptors, so printing cannot corrupt it. With
//!   [`Builder::capture_output`], what a task printed (its last 64 KiB) comes with its
//!   failure instead — a death included: its last words before the segfault.
//! * A worker never outlives its parent (end of file on its command pipe; on Linux also
//!   `PR_SET_PDEATHSIG`), and after `shutdown` no worker process and no zombie remains.
//! * In a forked child of the parent, the pool refuses work (`SubmitError::Broken`) rather
//!   than hang, and the parent's shutdown does not wait for the child.
//! * Only a process the pool started, with the descriptors it gave it, serves as a worker;
//!   a privileged (setuid) program never does, whatever its environment says.
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
mod claims;
#[cfg(unix)]
mod executor;
#[cfg(unix)]
mod fork;
#[cfg(unix)]
mod io;
#[cfg(unix)]
mod options;
#[cfg(unix)]
mod output;
#[cfg(unix)]
mod retry;
#[cfg(unix)]
mod segments;
#[cfg(unix)]
mod state;
#[cfg(unix)]
mod sys;
#[cfg(unix)]
mod window;
#[cfg(unix)]
mod worker;

#[cfg(unix)]
pub use cfutures_remote::bulk;
#[cfg(unix)]
pub use cfutures_remote::bulk::{Bytes, PodVec, SharedBytes, SharedSlice};
#[cfg(unix)]
pub use cfutures_remote::RemoteTask;
#[cfg(unix)]
pub use executor::{
    Builder, ProcessPoolExecutor, WorkerDeathPolicy, WorkerOutput, DEFAULT_OUTPUT_LIMIT,
};
#[cfg(unix)]
pub use options::{TaskOptions, WithOptions};
#[cfg(unix)]
pub use retry::RetryPolicy;

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
