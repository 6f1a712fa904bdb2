//! Scenario 6 — `wait` with each `ReturnWhen`, and `map` with a timeout.

use std::time::{Duration, Instant};

use cfutures_combinators::{wait, ExecutorExt, ReturnWhen};
use cfutures_core::{fallible, Future};
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{BoxError, Out, Secs};

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Runs the scenario.
///
/// # Errors
///
/// If the pool cannot be built or a submit is refused.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let pool = ThreadPoolExecutor::new(4)?;
    // Four tasks: 50, 100 and 200 ms, and one that fails after 80 ms.
    let submit_all = || -> Result<Vec<Future<u64>>, BoxError> {
        let mut fs = Vec::new();
        for ms in [50, 200, 100] {
            fs.push(pool.submit(move || sleep_ms(ms))?);
        }
        fs.push(pool.submit(fallible(|| -> Result<u64, String> {
            sleep_ms(80);
            Err("the 80 ms task failed".into())
        }))?);
        Ok(fs)
    };
    out.say("tasks: sleep 50 ms, 200 ms, 100 ms, and one failing after 80 ms");
    for when in [
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
        ReturnWhen::AllCompleted,
    ] {
        let fs = submit_all()?;
        let start = Instant::now();
        let r = wait(fs, Some(Duration::from_secs(10)), when);
        out.say(format!(
            "wait({when:?}) returned after {}: {} done, {} not done",
            Secs(start.elapsed()),
            r.done.len(),
            r.not_done.len()
        ));
        // Let the rest finish before the next round.
        wait(
            r.not_done,
            Some(Duration::from_secs(10)),
            ReturnWhen::AllCompleted,
        );
    }
    let fs = submit_all()?;
    let r = wait(
        fs,
        Some(Duration::from_millis(60)),
        ReturnWhen::AllCompleted,
    );
    out.say(format!(
        "wait(AllCompleted, timeout 60 ms): {} done, {} not done — a timeout returns, it is not an error",
        r.done.len(),
        r.not_done.len()
    ));
    wait(
        r.not_done,
        Some(Duration::from_secs(10)),
        ReturnWhen::AllCompleted,
    );

    // map with a timeout: the results that made it, then one Timeout error, then the end.
    // Tasks not started are cancelled (Python raises TimeoutError and loses the results).
    let start = Instant::now();
    let items = [50, 100, 600, 50];
    let results: Vec<String> = pool
        .map_builder()
        .timeout(Duration::from_millis(300))
        .map(sleep_ms, items)?
        .map(|r| match r {
            Ok(ms) => format!("{ms} ms ok"),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    out.say(format!(
        "map(sleep, {items:?}, timeout 300 ms) → [{}] after {}",
        results.join(", "),
        Secs(start.elapsed())
    ));

    // A failing item fails only its own slot.
    let results: Vec<String> = pool
        .map(
            |x: u32| {
                assert!(x != 3, "item {x} is bad");
                x * 10
            },
            1..=5,
        )?
        .map(|r| match r {
            Ok(v) => v.to_string(),
            Err(e) => format!("Err({e})"),
        })
        .collect();
    out.say(format!(
        "map with a panicking item → [{}]",
        results.join(", ")
    ));
    Ok(())
}
