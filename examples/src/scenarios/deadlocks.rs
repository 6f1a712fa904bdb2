//! Scenario 7 — the two deadlocks every `concurrent.futures` tutorial warns about, and what
//! cfutures does instead.
//!
//! 1. Two tasks that wait on each other (the Python docs' `wait_on_a` / `wait_on_b`). No
//!    executor can finish a real cycle; in Python both workers hang forever. Here every wait
//!    can be bounded: each task waits with `result_timeout`, fails with a timeout, and the
//!    pool is free again. (Cancelling works too, for a task that has not started.)
//! 2. A pool of one worker whose task submits `pow(5, 2)` to the same pool and waits for
//!    it. Python hangs forever. cfutures' thread pool notices that its only worker is
//!    blocked on a future while a task is queued, and starts a compensating thread.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cfutures_core::{fallible, Future};
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{BoxError, Out, Secs};

const BOUND: Duration = Duration::from_secs(10);
/// How long each task of the cycle waits for the other.
pub const PATIENCE: Duration = Duration::from_millis(300);

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
    let a = pool.submit(fallible(move || -> Result<u32, BoxError> {
        let b = a_gets_b.recv_timeout(BOUND)?;
        Ok(*b.result_timeout(PATIENCE)? + 1) // a bounded wait: Err(Timeout), not a hang
    }))?;
    let b = pool.submit(fallible(move || -> Result<u32, BoxError> {
        let a = b_gets_a.recv_timeout(BOUND)?;
        Ok(*a.result_timeout(PATIENCE)? + 1)
    }))?;
    give_a_b.send(b.clone())?;
    give_b_a.send(a.clone())?;
    for (name, f) in [("a", &a), ("b", &b)] {
        match f.result_timeout(BOUND) {
            Ok(v) => out.say(format!("{name} → {v}")),
            Err(e) => out.say(format!("{name} waited on the other and failed: {e}")),
        }
    }
    out.say(format!(
        "both failed after {} instead of hanging forever (Python: both workers stuck)",
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
