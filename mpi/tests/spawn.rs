//! Spawn mode: a program started on its own (MPI singleton init) spawns its workers with
//! `MPI_Comm_spawn`. Each check is one run of the test program (MPI initializes once per
//! process), under a hard `timeout -k 10`. Skipped, with the reason printed, without the
//! `mpi` feature or without Open MPI.

mod util;

use util::*;

/// Results, `Err` tasks, panics, `map` (chunksize, buffersize), `wait`, `as_completed`,
/// several submitting threads, cancel of queued tasks, `shutdown(wait, cancel_futures)`.
#[test]
fn spawn_mode_runs_tasks_and_shuts_down() {
    if skip() {
        return;
    }
    assert_ok(&run_alone("spawn", 180), "spawn");
}

/// A worker killed with SIGKILL mid-task: its future fails with `WorkerLost` (rank and
/// host) within the heartbeat deadline, and the pool carries on with the other worker.
#[test]
fn spawn_mode_killed_worker_fails_its_task() {
    if skip() {
        return;
    }
    let out = run_alone("spawn-kill", 90);
    assert_ok(&out, "spawn-kill");
}

/// A task past its time limit fails with `TimeLimit`; its worker is told to exit.
#[test]
fn spawn_mode_time_limit() {
    if skip() {
        return;
    }
    assert_ok(&run_alone("spawn-time-limit", 90), "spawn-time-limit");
}

/// Under `mpirun -n 1`, spawn works the same.
#[test]
fn spawn_mode_under_mpirun_n_1() {
    if skip() {
        return;
    }
    assert_ok(
        &run_mpirun(1, &[], "start-task-shutdown", 90),
        "start-task-shutdown",
    );
}

/// An initializer runs in each worker first; one that fails breaks the pool.
#[test]
fn spawn_mode_initializer() {
    if skip() {
        return;
    }
    assert_ok(&run_alone("spawn-init", 90), "spawn-init");
}

/// The handshake's build identity is a hash of the executable: a copy elsewhere serves, a
/// different build is refused (the executor's start fails with the reason).
#[test]
fn spawn_mode_build_identity_is_the_executable_content() {
    if skip() {
        return;
    }
    assert_ok(&run_alone("spawn-build-id", 90), "spawn-build-id");
}

/// A worker that stops answering (SIGSTOP, as a hung host or a cut network) is declared
/// lost by its missing heartbeats: its tasks fail with `WorkerLost`, the others finish.
#[test]
fn spawn_mode_silent_worker_is_lost() {
    if skip() {
        return;
    }
    assert_ok(&run_alone("spawn-stop", 90), "spawn-stop");
}

/// No busy spin when idle: over 2 s without tasks the executor and its workers use a few
/// percent of a core at most (they poll MPI with sleeps).
#[test]
fn spawn_mode_idle_pool_does_not_spin() {
    if skip() {
        return;
    }
    assert_ok(&run_alone("idle", 90), "idle");
}
