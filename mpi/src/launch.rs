//! World mode: [`world`] under `mpirun -n N`, and [`comm`] over a communicator you have.

use std::ffi::c_int;
use std::io::Write;
use std::time::Duration;

use crate::executor::{Builder, MpiPoolExecutor};
use crate::raw::{self, Comm};

/// World mode (`mpirun -n N ./prog`): rank 0 runs `f` with an executor whose workers are
/// ranks 1..N-1, which serve it until `f` returns. Returns `Some(f's value)` on rank 0 and
/// `None` on the others. Initializes MPI (`Threading::Multiple`) if it is not yet, and then
/// finalizes it before returning.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     cfutures_mpi::init();
///     let total = cfutures_mpi::world(|pool| {
///         let fs: Vec<_> = (0..100u64).map(|x| pool.submit_fn(square, x).unwrap()).collect();
///         fs.iter().map(|f| *f.result().unwrap()).sum::<u64>()
///     });
///     if let Some(total) = total {
///         println!("{total}");
///     }
/// }
/// ```
///
/// # Panics
///
/// If MPI cannot be initialized with `Threading::Multiple`, or the executor cannot start.
pub fn world<R>(f: impl FnOnce(&MpiPoolExecutor) -> R) -> Option<R> {
    Builder::default().world(f)
}

/// Python's `MPICommExecutor(comm, root)`: collective over `comm` (every rank calls it):
/// rank `root` runs `f` with an executor whose workers are the other ranks of `comm`, which
/// serve until `f` returns. `Some(f's value)` at `root`, `None` elsewhere. MPI must be
/// initialized with `Threading::Multiple`.
///
/// # Panics
///
/// If MPI was not initialized with `Threading::Multiple`, or the executor cannot start.
pub fn comm<C, R>(comm: &C, root: i32, f: impl FnOnce(&MpiPoolExecutor) -> R) -> Option<R>
where
    C: mpi::topology::Communicator,
{
    Builder::default().comm(comm, root, f)
}

impl Builder {
    /// [`world`](crate::world) with this configuration.
    ///
    /// # Panics
    ///
    /// As [`world`](crate::world).
    pub fn world<R>(self, f: impl FnOnce(&MpiPoolExecutor) -> R) -> Option<R> {
        let owned = raw::ensure_init().unwrap_or_else(|e| panic!("cfutures-mpi: {e}"));
        let (r, lost) = over(self, Comm::world(), 0, f);
        if owned && !lost {
            raw::finalize();
        }
        // With a lost rank, MPI_Finalize (a fence over every rank of the job) sometimes
        // waits forever even under `--enable-recovery`: it is left to the exit hook, which
        // bounds it (and then ends the job with MPI_Abort), so that the caller gets its value
        // first.
        r
    }

    /// [`comm`](crate::comm) with this configuration.
    ///
    /// # Panics
    ///
    /// As [`comm`](crate::comm).
    pub fn comm<C, R>(self, comm: &C, root: i32, f: impl FnOnce(&MpiPoolExecutor) -> R) -> Option<R>
    where
        C: mpi::topology::Communicator,
    {
        raw::ensure_init().unwrap_or_else(|e| panic!("cfutures-mpi: {e}"));
        over(self, Comm(comm.as_raw()), root, f).0
    }
}

fn over<R>(
    b: Builder,
    comm: Comm,
    root: c_int,
    f: impl FnOnce(&MpiPoolExecutor) -> R,
) -> (Option<R>, bool) {
    let dup = comm.dup().unwrap_or_else(|e| panic!("cfutures-mpi: {e}"));
    if dup.rank() == root {
        let pool = b
            .build_over(dup, root)
            .unwrap_or_else(|e| panic!("cfutures-mpi: cannot start the executor: {e}"));
        let r = f(&pool);
        pool.shutdown(true, false);
        let lost = pool.lost_any();
        drop(pool);
        if !lost {
            dup.free();
        }
        (Some(r), lost)
    } else {
        crate::worker::serve_comm(dup, root);
        dup.free();
        (None, false)
    }
}

/// How long MPI_Finalize may take at exit before the job is ended with MPI_Abort.
pub(crate) const FINALIZE_LIMIT: Duration = Duration::from_secs(5);

/// Ends the process if it is still running `limit` from now (with the job's other ranks:
/// `mpirun` ends the job when a rank exits without finalizing).
pub(crate) fn watchdog(limit: Duration) {
    let _ = std::thread::Builder::new()
        .name("cfutures-mpi-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            let _ = writeln!(
                std::io::stderr(),
                "cfutures-mpi: MPI_Finalize did not return within {limit:?} after a worker was \
                 lost; exiting"
            );
            // MPI_Abort ends the whole job (the last resort); if even that cannot reach the
            // runtime, exit alone a moment later.
            let _ = std::thread::Builder::new().spawn(|| raw::abort(Comm::world(), 1));
            std::thread::sleep(Duration::from_secs(5));
            // SAFETY: `_exit` ends the process at once.
            unsafe { libc::_exit(1) };
        });
}
