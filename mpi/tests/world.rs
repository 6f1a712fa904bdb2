//! World mode: `mpirun -n 3 prog`, rank 0 the executor, ranks 1-2 its workers
//! (`cfutures_mpi::world`). Each check is one `mpirun` under a hard `timeout -k 10`. Skipped,
//! with the reason printed, without the `mpi` feature or without Open MPI.

mod util;

use util::*;

/// Results, `Err` tasks, panics, `map`, `wait`, `as_completed`, cancel, shutdown.
#[test]
fn world_mode_runs_tasks_and_shuts_down() {
    if skip() {
        return;
    }
    assert_ok(&run_mpirun(3, &[], "world", 180), "world");
}

/// A worker rank killed with SIGKILL mid-task. With `--enable-recovery` (without it Open
/// MPI aborts the whole job, which the second half checks ends too, without a hang), its
/// future fails with `WorkerLost` naming the rank and host, and the pool carries on.
#[test]
fn world_mode_killed_rank_fails_its_task() {
    if skip() {
        return;
    }
    let out = run_mpirun(
        3,
        &[
            "--enable-recovery",
            "--mca",
            "orte_abort_on_non_zero_status",
            "0",
        ],
        "world-kill",
        90,
    );
    // The executor's checks passed (`ok`); the job's end after a lost rank is bounded but
    // best effort: MPI_Finalize, a fence over every rank, may not complete without the dead
    // one (Open MPI 4.1 has no ULFM), and then the exit hook ends the job with MPI_Abort.
    assert_ok_ended(&out, "world-kill");
    // Plain Open MPI: the job ends (no hang), though not with our answer.
    let out = run_mpirun(3, &[], "world-kill", 90);
    assert_ne!(out.status.code(), Some(124), "timed out: {out:?}");
    assert!(!out.status.success());
}

/// Python's `MPICommExecutor(comm, root=1)`: an executor over a communicator the program
/// made (MPI initialized by the program), rooted at rank 1.
#[test]
fn comm_mode_over_a_user_communicator() {
    if skip() {
        return;
    }
    assert_ok(&run_mpirun(3, &[], "comm-root1", 180), "comm-root1");
}
