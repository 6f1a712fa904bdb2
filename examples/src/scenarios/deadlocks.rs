//! Scenario 7 — the two deadlocks every `concurrent.futures` tutorial warns about, and what
//! cfutures does instead.
//!
//! 1. Two tasks that wait on each other (the Python docs' `wait_on_a` / `wait_on_b`). No
//!    executor can finish a real cycle; in Python both workers hang for ever. Here the wait
//!    that closes the cycle fails at once with `Error::Deadlock`, which names the cycle
//!    (with the tasks' names, given with `named`); that task fails, and the other one,
//!    seeing it fail, finishes. No timeout is needed.
//! 2. A pool of one worker whose task submits `pow(5, 2)` to the same pool and waits for
//!    it. Python hangs forever. That is not a cycle: cfutures' thread pool notices that its
//!    only worker is blocked on a future while a task is queued, and starts a compensating
//!    thread.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cfutures_core::{fallible, named, Error, Future};
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{BoxError, Out, Secs};

const BOUND: Duration = Duration::from_secs(10);

/// `wait_on_a` / `wait_on_b`: waits (without a timeout) on the other task's future, given
/// through `other`.
fn wait_on(other: mpsc::Receiver<Future<u32>>, mine: u32) -> Result<u32, BoxError> {
    let other = other.recv_timeout(BOUND)?;
    match other.result() {
        Ok(v) => Ok(*v + mine),
        // This wait would never end: fail with the cycle (Python: hangs for ever).
        Err(e @ Error::Deadlock(_)) => Err(e.into()),
        // The other task failed (its wait closed the cycle): carry on.
        Err(_) => Ok(mine),
    }
}

/// Runs the scenario.
///
/// # Errors
///
/// If the pool cannot be built or a future misbehaves.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    // 1. a waits for b, b waits for a.
    let pool = ThreadPoolExecutor::new(2)?;
    let (give_a_b, a_gets_b) = mpsc::channel::<Future<u32>>();
    let (give_b_a, b_gets_a) = mpsc::channel::<Future<u32>>();
    let start = Instant::now();
    let a = pool.submit(named("wait_on_b", fallible(move || wait_on(a_gets_b, 5))))?;
    let b = pool.submit(named("wait_on_a", fallible(move || wait_on(b_gets_a, 6))))?;
    give_a_b.send(b.clone())?;
    give_b_a.send(a.clone())?;
    for (name, f) in [("a", &a), ("b", &b)] {
        match f.result_timeout(BOUND) {
            Ok(v) => out.say(format!("{name} saw the other fail and returned {v}")),
            Err(e) => out.say(format!("{name} failed at once: {e}")),
        }
    }
    out.say(format!(
        "one wait closed the cycle and failed after {}, naming it; the other task \
         finished (Python: both workers stuck for ever)",
        Secs(start.elapsed())
    ));
    let after = pool.submit(|| "the pool is free again")?;
    out.say(*after.result_timeout(BOUND)?);

    // 2. One worker; its task submits to the same pool and waits.
    let pool = Arc::new(ThreadPoolExecutor::new(1)?);
    let p = pool.clone();
    let start = Instant::now();
    let outer = pool.submit(move || -> Result<(u32, usize), String> {
        let inner = p.submit(|| 5u32.pow(2)).map_err(|e| e.to_string())?;
        let v = *inner.result_timeout(BOUND).map_err(|e| e.to_string())?;
        Ok((v, p.live_threads()))
    })?;
    let (v, threads) = outer.result_timeout(BOUND)?.clone()?;
    out.say(format!(
        "max_workers=1, a task that submits pow(5, 2) and waits → {v} in {} (Python: hangs)",
        Secs(start.elapsed())
    ));
    out.say(format!(
        "how: while its only worker was blocked on a future, the pool started a compensating thread ({threads} live threads then, {} now)",
        pool.live_threads()
    ));
    Ok(())
}
