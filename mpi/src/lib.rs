//! cfutures-mpi: the same executor across machines, on MPI.
//!
//! `MpiPoolExecutor` runs the process pool's tasks ([`RemoteTask`], `submit_fn` of a fn
//! item, `map` chunks) on MPI ranks, on as many machines as MPI knows. Same task model and
//! same wire format as `cfutures-process-pool` (both come from `cfutures-remote`): MPI is a
//! second transport. Every combinator (`map` with `chunksize`/`buffersize`, `wait`,
//! `as_completed`) works on it unchanged.
//!
//! # Building
//!
//! The MPI executor is behind this crate's **`mpi` feature** (off by default): building it
//! needs an MPI library (Open MPI 4.1; `MPICC=mpicc.openmpi`) and libclang (rsmpi runs
//! bindgen). Without the feature the crate builds on any machine, to this documentation,
//! [`ENABLED`]` = false` and an [`init`] that does nothing.
//!
//! # Two launch modes (as `mpi4py.futures`)
//!
//! * **spawn**: `MpiPoolExecutor::new(n)` in a program started on its own (MPI's singleton
//!   init) or under `mpirun -n 1`: the workers are `n` copies of the same program started
//!   with `MPI_Comm_spawn`, placed by MPI on the hosts it knows. Make [`init`] the first line
//!   of `main`: it turns a spawned copy into a worker.
//! * **world**: `mpirun -n N ./prog`, with `world`: rank 0 runs the closure with the
//!   executor, ranks 1..N-1 serve it. `comm` does the same over a communicator you have.
//!
//! # Failures are errors, never hangs
//!
//! Each worker sends heartbeats; a worker that stays silent past its deadline is declared
//! lost, and its tasks fail with [`TaskError::WorkerLost`](cfutures_core::TaskError::WorkerLost)
//! naming its rank and host. The protocol and the liveness rules are in `DESIGN-NOTES.md`.

// Built without the `mpi` feature, the crate holds only its documentation: the links to the
// executor's items have nothing to point at then.
#![cfg_attr(not(feature = "mpi"), allow(rustdoc::broken_intra_doc_links))]

/// True when this crate was built with its `mpi` feature (the MPI executor exists).
pub const ENABLED: bool = cfg!(feature = "mpi");

pub use cfutures_remote::RemoteTask;

/// `CFUTURES_MPI_TRACE=1`: the phases of start and shutdown, with times, on stderr.
#[cfg(feature = "mpi")]
macro_rules! trace {
    ($($t:tt)*) => {
        if $crate::tracing() {
            eprintln!("cfutures-mpi[{}] {:?}: {}", std::process::id(), $crate::since_start(), format!($($t)*));
        }
    };
}

#[cfg(feature = "mpi")]
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CFUTURES_MPI_TRACE").is_some())
}

#[cfg(feature = "mpi")]
fn since_start() -> std::time::Duration {
    static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    T0.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(feature = "mpi")]
mod executor;
#[cfg(feature = "mpi")]
mod launch;
#[cfg(feature = "mpi")]
mod raw;
#[cfg(feature = "mpi")]
mod worker;

#[cfg(feature = "mpi")]
pub use executor::{Builder, MpiPoolExecutor, WorkerInfo};
#[cfg(feature = "mpi")]
pub use launch::{comm, world};
/// rsmpi, as this crate uses it (to build the communicator given to [`comm`]).
#[cfg(feature = "mpi")]
pub use mpi;

/// The baseline of the round-trip benchmark: spawns one echo peer (this program, which must
/// call [`init`]) and measures `rounds` ping-pongs of `bytes`-byte messages over the
/// intercommunicator, with MPI's own calls (a polling receive, as Open MPI's blocking calls
/// poll too). Returns the mean round trip. Spawn mode only; MPI is initialized if needed.
///
/// # Errors
///
/// If MPI cannot be initialized or the spawn fails.
#[cfg(feature = "mpi")]
#[doc(hidden)]
pub fn __raw_pingpong(rounds: u32, bytes: usize) -> std::io::Result<std::time::Duration> {
    raw::singleton_recovery();
    raw::ensure_init()?;
    let exe = std::env::current_exe()?.to_string_lossy().into_owned();
    let c = raw::spawn(
        &exe,
        &[worker::WORKER_ARG.to_owned(), worker::ECHO_ARG.to_owned()],
        1,
        &[],
    )?;
    let msg = vec![7u8; bytes.max(1)];
    let mut buf = Vec::new();
    let mut once = || -> std::io::Result<()> {
        c.send(&msg, 0, raw::TAG_FRAME)?;
        loop {
            if let Some((s, t, n)) = c.iprobe(0, raw::ANY) {
                return c.recv(s, t, n, &mut buf);
            }
        }
    };
    for _ in 0..100 {
        once()?;
    }
    let t0 = std::time::Instant::now();
    for _ in 0..rounds {
        once()?;
    }
    let per = t0.elapsed() / rounds.max(1);
    c.send(&[], 0, raw::TAG_FRAME)?;
    c.disconnect();
    Ok(per)
}

/// Serves as a worker if this process was spawned as one by an `MpiPoolExecutor` (then
/// never returns); returns at once otherwise. Make it the first line of `main` of every
/// program that uses spawn mode.
///
/// Without the `mpi` feature it does nothing.
///
/// ```
/// cfutures_mpi::init(); // first line of `main`
/// ```
pub fn init() {
    #[cfg(feature = "mpi")]
    worker::maybe_serve();
}
