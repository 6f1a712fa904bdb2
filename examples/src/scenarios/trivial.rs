//! Scenario 4 — the pitfall "too trivial to parallelise": checking 1,000 numbers for
//! primality takes about a microsecond each, less than handing a task to a thread, and far
//! less than sending it to a process. Measured: sequential vs threads vs processes, then
//! the same with `chunksize`, which sends many items per task and fixes most of it.

use cfutures_combinators::ExecutorExt;
use cfutures_process_pool::ProcessPoolExecutor;
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{timed, BoxError, Out};
use crate::work::is_prime;

/// How many numbers.
pub const NUMBERS: u64 = 1_000;
/// Workers in each pool.
pub const WORKERS: usize = 2;

/// Runs the scenario.
///
/// # Errors
///
/// If a pool cannot start or a task fails.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let numbers: Vec<u64> = (0..NUMBERS).map(|i| 1_000_000 + i).collect();
    let (expected, seq) = timed(|| numbers.iter().filter(|&&n| is_prime(n)).count());
    out.say(format!(
        "{NUMBERS} numbers from 1,000,000: {expected} primes"
    ));

    let threads = ThreadPoolExecutor::new(WORKERS)?;
    let processes = ProcessPoolExecutor::new(WORKERS)?;
    processes.submit_fn(is_prime, 2)?.result()?; // workers up
    for chunksize in [1, 100] {
        let (n, t) = timed(|| {
            count(
                threads
                    .map_builder()
                    .chunksize(chunksize)
                    .map(is_prime, numbers.clone()),
            )
        });
        same(expected, n?)?;
        out.measured(
            format!("1,000 primality checks: threads, chunksize {chunksize}"),
            Some(seq),
            t,
        );
        let (n, t) = timed(|| {
            count(
                processes
                    .map_builder()
                    .chunksize(chunksize)
                    .map(is_prime, numbers.clone()),
            )
        });
        same(expected, n?)?;
        out.measured(
            format!("1,000 primality checks: processes, chunksize {chunksize}"),
            Some(seq),
            t,
        );
    }
    out.say(
        "each check costs ~1 µs: the pool's cost per task dominates until chunksize spreads it",
    );
    Ok(())
}

fn count<I, E>(it: Result<I, E>) -> Result<usize, BoxError>
where
    I: Iterator<Item = Result<bool, cfutures_core::Error>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut n = 0;
    for r in it? {
        n += usize::from(r?);
    }
    Ok(n)
}

fn same(expected: usize, got: usize) -> Result<(), BoxError> {
    if expected == got {
        Ok(())
    } else {
        Err(format!("expected {expected} primes, the pool found {got}").into())
    }
}
