//! Scenario 4 — the pitfall "too trivial to parallelise": a primality check near a million
//! takes about 0.1 µs, far less than handing a task to a thread (~1 µs) or a process (~4 µs).
//! Measured: sequential vs threads vs processes on 1,000 numbers with `chunksize` 1, 100
//! and 500 (one chunk per worker) — no chunksize makes 1,000 of them worth a pool, since
//! the whole job is shorter than a few hand-offs — and then on 1,000,000 numbers, where
//! chunks of 10,000 and 100,000 items spread the cost and both pools beat sequential.

use cfutures_combinators::ExecutorExt;
use cfutures_process_pool::ProcessPoolExecutor;
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{timed, BoxError, Out, Speedup};
use crate::work::is_prime;

/// How many numbers in the small run (the tutorials' example).
pub const NUMBERS: u64 = 1_000;
/// How many numbers in the large run.
pub const MANY: u64 = 1_000_000;
/// Workers in each pool.
pub const WORKERS: usize = 2;

/// Runs the scenario.
///
/// # Errors
///
/// If a pool cannot start or a task fails.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let threads = ThreadPoolExecutor::new(WORKERS)?;
    let processes = ProcessPoolExecutor::new(WORKERS)?;
    processes.submit_fn(is_prime, 2)?.result()?; // workers up
    let mut best = Vec::new();
    for (n, chunksizes) in [
        (NUMBERS, &[1, 100, 500][..]),
        (MANY, &[10_000, 100_000][..]),
    ] {
        let numbers: Vec<u64> = (0..n).map(|i| 1_000_000 + i).collect();
        let (expected, seq) = timed(|| numbers.iter().filter(|&&n| is_prime(n)).count());
        out.say(format!(
            "{n} numbers from 1,000,000: {expected} primes, {:.2} µs per check sequentially",
            seq.as_secs_f64() * 1e6 / n as f64
        ));
        let mut fastest = f64::MIN;
        for &chunksize in chunksizes {
            let (c, t) = timed(|| {
                count(
                    threads
                        .map_builder()
                        .chunksize(chunksize)
                        .map(is_prime, numbers.clone()),
                )
            });
            same(expected, c?)?;
            out.measured(
                format!("{n} checks: threads, chunksize {chunksize}"),
                Some(seq),
                t,
            );
            fastest = fastest.max(seq.as_secs_f64() / t.as_secs_f64());
            let (c, t) = timed(|| {
                count(
                    processes
                        .map_builder()
                        .chunksize(chunksize)
                        .map(is_prime, numbers.clone()),
                )
            });
            same(expected, c?)?;
            out.measured(
                format!("{n} checks: processes, chunksize {chunksize}"),
                Some(seq),
                t,
            );
            fastest = fastest.max(seq.as_secs_f64() / t.as_secs_f64());
        }
        best.push((n, fastest));
    }
    for (n, fastest) in best {
        out.say(format!(
            "{n} checks: the best pool run took {:.2}× the sequential time ({})",
            1.0 / fastest,
            Speedup(fastest)
        ));
    }
    out.say(
        "chunksize divides the pool's cost per task by the items per chunk; it pays only once \
         the whole job is long against a hand-off (here: a million cheap checks, not a thousand)",
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
