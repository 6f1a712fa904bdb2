//! Scenario 12 — poison tasks: a task that crashes its worker once is run again and
//! succeeds; a task that crashes every worker it is given is quarantined after three deaths,
//! with each death listed and the last words it printed; a `map` chunk holding one such item
//! loses only that item. Python: the first crash breaks the pool (`BrokenProcessPool` for
//! every pending future), and nothing says what the task printed.

use std::path::PathBuf;
use std::time::Duration;

use cfutures_combinators::MapBuilder;
use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, WorkerOutput};

use crate::report::{BoxError, Out};

const BOUND: Duration = Duration::from_secs(20);

/// Crashes this process with `SIGSEGV`, as a segfault in native code would.
fn segfault() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-SEGV", &std::process::id().to_string()])
        .status();
    loop {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Crashes its worker the first time it runs (a flaky native library, an OOM kill).
pub fn flaky(marker: PathBuf) -> String {
    if std::fs::create_dir(&marker).is_ok() {
        segfault();
    }
    "done".to_owned()
}

/// Prints what it is about to do, then crashes its worker: every time.
pub fn parse_record(n: u32) -> u32 {
    println!("parsing record {n}: calling the native parser");
    segfault();
}

/// Doubles `n`; item 13 crashes its worker.
pub fn double_but_13(n: u32) -> u32 {
    if n == 13 {
        segfault();
    }
    n * 2
}

/// Runs the scenario.
///
/// # Errors
///
/// If the pool cannot start or a future misbehaves.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .retry(RetryPolicy::new().backoff(Duration::from_millis(10), Duration::from_millis(100)))
        .capture_output(true)
        .worker_output(WorkerOutput::Null)
        .build()?;

    // 1. A task that crashes its worker once: run again, it succeeds.
    let marker = std::env::temp_dir().join(format!("cfutures-poison-{}", std::process::id()));
    let _ = std::fs::remove_dir(&marker);
    let f = pool.submit_fn(flaky, marker.clone())?;
    let v = f.result_timeout(BOUND)?;
    let _ = std::fs::remove_dir(&marker);
    out.say(format!(
        "flaky(): its first worker died (SIGSEGV); run again → {v:?} (Python: BrokenProcessPool, \
         for it and every other pending task)"
    ));

    // 2. A task that crashes every worker: quarantined after three deaths.
    let f = pool.submit_fn(parse_record, 13)?;
    match f.exception_timeout(BOUND)? {
        Some(e) if e.is_quarantined() => {
            let deaths = e.deaths().unwrap_or_default();
            out.say(format!(
                "parse_record(13): quarantined after {} worker deaths ({})",
                deaths.len(),
                deaths
                    .iter()
                    .map(|d| format!("pid {}: {}", d.pid, d.exit))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            if let Some(o) = e.output() {
                out.say(format!("   its last words: {:?}", o.text().trim_end()));
            }
        }
        other => return Err(format!("parse_record(13) was not quarantined: {other:?}").into()),
    }

    // 3. A map chunk with one poison item: that item fails, the other 19 do not.
    let results: Vec<_> = MapBuilder::new(&pool)
        .chunksize(5)
        .timeout(BOUND)
        .map(double_but_13, 0..20u32)?
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let failed: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let e = r.as_ref().err()?.task_error()?;
            Some(format!(
                "item {i}: {}",
                if e.is_quarantined() {
                    "quarantined"
                } else {
                    "failed"
                }
            ))
        })
        .collect();
    out.say(format!(
        "map(double_but_13, 0..20, chunksize 5): {ok} of 20 ok; {}",
        failed.join(", ")
    ));

    // The pool carries on: poison counts against no one.
    let after = pool.submit_fn(double_but_13, 21)?;
    out.say(format!(
        "after all that, double_but_13(21) → {} (the pool is not broken: {})",
        after.result_timeout(BOUND)?,
        !pool.is_broken()
    ));
    Ok(())
}
