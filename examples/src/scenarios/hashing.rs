//! Scenario 3 — CPU-bound hashing: `hash_one` / `hash_all` with sha256, sequential vs
//! threads vs processes (with `chunksize`); and the digest task list `[1, 1, 1, 2, 2, 3]`
//! on a process pool, collected with `as_completed`.
//!
//! Rust threads run CPU-bound work in parallel (there is no GIL), so here threads and
//! processes both scale with the cores; processes pay for serialization and a pipe per
//! task, which `chunksize` amortizes.

use std::time::Duration;

use cfutures_combinators::{as_completed, ExecutorExt};
use cfutures_process_pool::ProcessPoolExecutor;
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{timed, BoxError, Out};
use crate::work;

/// Items `hash_all` hashes.
pub const ITEMS: u64 = 200;
/// sha256 rounds over 64 KiB per item (≈ 1 ms).
pub const ROUNDS: u32 = 4;
/// Workers in each pool.
pub const WORKERS: usize = 2;

/// The tutorial's `hash_one`: the sha256 digest of item `n` (a plain `fn`, so it can run in
/// a worker process).
pub fn hash_one(n: u64) -> String {
    work::hash_one(n, ROUNDS)
}

/// A digest task of `units` units of work (8 MiB of sha256 each, 20–60 ms): the task list
/// `[1, 1, 1, 2, 2, 3]`.
pub fn digest(units: u32) -> (u32, String) {
    (units, work::hash_one(u64::from(units), units * 128))
}

/// Runs the scenario.
///
/// # Errors
///
/// If a pool cannot start or a task fails.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let items: Vec<u64> = (0..ITEMS).collect();
    out.say(format!(
        "hash_all: sha256 of {ITEMS} items ({ROUNDS} rounds over 64 KiB each), {WORKERS} workers"
    ));
    let (expected, seq) = timed(|| items.iter().map(|&n| hash_one(n)).collect::<Vec<_>>());

    let threads = ThreadPoolExecutor::new(WORKERS)?;
    let (got, t) = timed(|| {
        threads
            .map(hash_one, items.clone())
            .map(|it| it.collect::<Result<Vec<_>, _>>())
    });
    check(&expected, got??)?;
    out.measured("hash_all: threads, chunksize 1", Some(seq), t);

    let processes = ProcessPoolExecutor::new(WORKERS)?;
    processes
        .submit_fn(hash_one, 0)?
        .result_timeout(Duration::from_secs(30))?; // workers up
    for chunksize in [1, 50] {
        let (got, t) = timed(|| {
            processes
                .map_builder()
                .chunksize(chunksize)
                .map(hash_one, items.clone())
                .map(|it| it.collect::<Result<Vec<_>, _>>())
        });
        check(&expected, got??)?;
        out.measured(
            format!("hash_all: processes, chunksize {chunksize}"),
            Some(seq),
            t,
        );
    }

    out.say(
        "no GIL here: threads scale CPU-bound work as processes do; processes add a message \
         per task, which chunksize spreads over many items",
    );

    #[cfg(feature = "mpi")]
    on_mpi(out, &items, &expected, seq)?;

    // The digest task list, collected as each finishes (shorter tasks first).
    let tasks = [1, 1, 1, 2, 2, 3];
    let futures = tasks
        .iter()
        .map(|&u| processes.submit_fn(digest, u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut order = Vec::new();
    for f in as_completed(futures, Some(Duration::from_secs(60))) {
        let (units, _digest) = f?.result()?.clone();
        order.push(units.to_string());
    }
    out.say(format!(
        "digest tasks {tasks:?} on 2 processes, as completed: {}",
        order.join(", ")
    ));
    Ok(())
}

/// The same `hash_all` on MPI ranks (spawn mode: the workers are copies of this program
/// started with `MPI_Comm_spawn`; under `mpirun` with a hostfile they land on other
/// machines). Only the executor changes.
#[cfg(feature = "mpi")]
fn on_mpi(
    out: &mut Out,
    items: &[u64],
    expected: &[String],
    seq: Duration,
) -> Result<(), BoxError> {
    let ranks = match cfutures_mpi::MpiPoolExecutor::new(WORKERS) {
        Ok(p) => p,
        Err(e) => {
            out.say(format!("MPI executor: skipped, it could not start: {e}"));
            return Ok(());
        }
    };
    ranks
        .submit_fn(hash_one, 0)?
        .result_timeout(Duration::from_secs(30))?; // workers up
    let (got, t) = timed(|| {
        ranks
            .map_builder()
            .chunksize(50)
            .map(hash_one, items.to_vec())
            .map(|it| it.collect::<Result<Vec<_>, _>>())
    });
    check(expected, got??)?;
    out.measured("hash_all: MPI ranks (spawn), chunksize 50", Some(seq), t);
    let hosts: Vec<String> = ranks.workers().into_iter().map(|w| w.host).collect();
    out.say(format!("MPI workers on hosts {hosts:?}"));
    ranks.shutdown(true, false);
    Ok(())
}

fn check(expected: &[String], got: Vec<String>) -> Result<(), BoxError> {
    if got == expected {
        Ok(())
    } else {
        Err("the pool computed different digests".into())
    }
}
