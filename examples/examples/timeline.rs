//! Writes a process-pool run as a timeline SVG: each worker a lane, each task a bar coloured by its outcome, each worker death marked.
//!
//! `cargo run --release -p cfutures-examples --example timeline [PATH]` (default
//! `target/timeline.svg`). The run: 36 tasks of 5–40 ms on 3 workers; two panic, and two kill
//! their worker (`abort`) once, then run again elsewhere (a retry policy). The drawing is
//! [`cfutures_examples::timeline::svg`], from the events `pool.events()` gave.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, WorkerOutput};

/// Sleeps `ms` milliseconds.
fn work(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics after `ms` milliseconds.
fn buggy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("a bug")
}

/// Kills its worker after 10 ms the first time (the marker directory is absent).
fn crash_once(marker: PathBuf) -> u64 {
    if std::fs::create_dir(&marker).is_ok() {
        std::thread::sleep(Duration::from_millis(10));
        std::process::abort();
    }
    work(20)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cfutures_process_pool::init();
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/timeline.svg"), PathBuf::from);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(3)
        .quiet_panics(true)
        .worker_output(WorkerOutput::Null)
        .retry(RetryPolicy::new().backoff(Duration::from_millis(5), Duration::from_millis(20)))
        .build()?;
    let events = pool.events();
    let tmp = std::env::temp_dir();
    let markers: Vec<PathBuf> = (0..2)
        .map(|i| tmp.join(format!("cfutures-timeline-{}-{i}", std::process::id())))
        .collect();
    for m in &markers {
        let _ = std::fs::remove_dir(m);
    }
    let mut futures = Vec::new();
    for i in 0..36u64 {
        let ms = 5 + (i * 13) % 36;
        futures.push(match i {
            9 | 27 => pool.submit_fn(buggy, ms)?,
            14 => pool.submit_fn(crash_once, markers[0].clone())?,
            22 => pool.submit_fn(crash_once, markers[1].clone())?,
            _ => pool.submit_fn(work, ms)?,
        });
    }
    for f in &futures {
        // Bounded: every task here ends within milliseconds.
        let _ = f.exception_timeout(Duration::from_secs(30))?;
    }
    pool.shutdown(true, false);
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(e) = events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        all.push(e);
    }
    for m in &markers {
        let _ = std::fs::remove_dir(m);
    }
    let deaths = all
        .iter()
        .filter(|e| matches!(e, cfutures_core::events::Event::WorkerDied { .. }))
        .count();
    let svg = cfutures_examples::timeline::svg(
        &all,
        &format!("cfutures process pool: 36 tasks on 3 workers, {deaths} worker deaths"),
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, svg)?;
    println!(
        "{} events ({} lost) → {} ({deaths} worker deaths marked)",
        all.len(),
        events.dropped(),
        path.display()
    );
    Ok(())
}
