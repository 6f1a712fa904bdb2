//! Scenario 11 — async code offloading CPU work to the process pool (Python's
//! `loop.run_in_executor(ProcessPoolExecutor(), f, x)`): a tokio program whose one runtime
//! thread keeps serving its other tasks (a heartbeat, here) while the work runs in worker
//! processes and `pool.submit_fn(f, x)?.await` waits for it without blocking the runtime.
//! Measured against the same work done inline on the runtime's thread, where nothing else
//! runs until it is over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures::prelude::*;

use crate::report::{BoxError, Out};
use crate::work::is_prime;

/// Worker processes.
pub const WORKERS: usize = 2;
/// How many ranges of numbers are checked, one task each.
pub const TASKS: u64 = 8;

/// How many numbers each task checks: less in an unoptimized build (the tests).
fn span() -> u64 {
    if cfg!(debug_assertions) {
        5_000
    } else {
        100_000
    }
}

/// Counts the primes in `start..start + len` (a task sent to a worker process).
pub fn count_primes((start, len): (u64, u64)) -> u64 {
    (start..start + len).filter(|&n| is_prime(n)).count() as u64
}

/// Halves an even number; panics on an odd one (the failing task).
pub fn halve_even(n: u64) -> u64 {
    assert!(n % 2 == 0, "{n} is odd");
    n / 2
}

fn ranges() -> impl Iterator<Item = (u64, u64)> {
    let span = span();
    (0..TASKS).map(move |i| (1_000_000 + i * span, span))
}

/// Runs the scenario.
///
/// # Errors
///
/// If the runtime or the pool cannot start, or a task fails.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let pool = ProcessPoolExecutor::new(WORKERS)?;
    pool.submit_fn(count_primes, (0, 10))?.result()?; // workers up
    let numbers = TASKS * span();

    rt.block_on(async {
        // A heartbeat: another async task on the same (only) runtime thread.
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let heartbeat = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(5));
            loop {
                every.tick().await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        tokio::task::yield_now().await; // let it start

        // Inline: the CPU work runs on the runtime's thread; the heartbeat stops.
        let before = ticks.load(Ordering::Relaxed);
        let start = Instant::now();
        let inline: u64 = ranges().map(count_primes).sum();
        let seq = start.elapsed();
        let inline_ticks = ticks.load(Ordering::Relaxed) - before;

        // Offloaded: each range to a worker process; awaiting yields the thread.
        let before = ticks.load(Ordering::Relaxed);
        let start = Instant::now();
        let futures: Vec<Future<u64>> = ranges()
            .map(|r| pool.submit_fn(count_primes, r))
            .collect::<Result<_, _>>()?;
        let mut offloaded = 0;
        for f in futures {
            offloaded += f.await?;
        }
        let pooled = start.elapsed();
        let offload_ticks = ticks.load(Ordering::Relaxed) - before;
        heartbeat.abort();

        if offloaded != inline {
            return Err(format!("inline found {inline} primes, the pool {offloaded}").into());
        }
        out.say(format!(
            "{numbers} numbers in {TASKS} tasks: {offloaded} primes, inline and offloaded alike"
        ));
        out.say(format!(
            "heartbeat (every 5 ms on the same runtime thread): {inline_ticks} ticks while the \
             work ran inline, {offload_ticks} while it was awaited on the process pool"
        ));
        out.measured(
            format!("{TASKS} tasks: inline on the runtime vs awaited on {WORKERS} processes"),
            Some(seq),
            pooled,
        );
        Ok::<(), BoxError>(())
    })?;

    // Results come back through `.await` as from `result()`: a failing task is an Error.
    let failed = rt.block_on(async { pool.submit_fn(halve_even, 7)?.await });
    out.say(format!(
        "a task that panics in its worker → {}",
        match failed {
            Ok(n) => format!("Ok({n})?"),
            Err(e) => format!(
                "Err: {}",
                e.task_error().map_or("?".into(), |t| t.to_string())
            ),
        }
    ));
    Ok(())
}
