//! Python's policy (`WorkerDeathPolicy::BreakPool`): one worker death breaks the pool; every
//! pending and running future fails with its own `Broken`; later submits are refused.

mod util;

use cfutures_process_pool::{ProcessPoolExecutor, WorkerDeathPolicy};
use util::*;

/// Exits with code 3 once `path` exists (so that the test has submitted everything before
/// the pool breaks, however slowly its thread is scheduled).
fn exit3_when(path: String) {
    let t0 = std::time::Instant::now();
    while !std::path::Path::new(&path).exists() && t0.elapsed() < WAIT {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::process::exit(3);
}

#[test]
fn one_death_breaks_the_pool() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .on_worker_death(WorkerDeathPolicy::BreakPool)
        .build()
        .unwrap();
    let go = pid_file("break-policy-go");
    let running = pool.submit_fn(spin, ()).unwrap();
    let bad = pool
        .submit_fn(exit3_when, go.to_string_lossy().into_owned())
        .unwrap();
    let queued: Vec<_> = (0..10u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    std::fs::write(&go, b"go").unwrap();
    let e = bad.result_timeout(WAIT).unwrap_err();
    assert!(e.is_broken(), "{e:?}");
    assert!(e.to_string().contains("terminated abruptly"), "{e}");
    assert!(e.to_string().contains("exit code 3"), "{e}");
    let e = running.result_timeout(WAIT).unwrap_err();
    assert!(e.is_broken(), "{e:?}");
    for f in &queued {
        // Queued futures too: each fails with its own `Broken` (Python's policy).
        let e = f.result_timeout(WAIT).unwrap_err();
        assert!(e.is_broken(), "{e:?}");
    }
    assert!(pool.is_broken());
    assert!(pool.submit_fn(add_one, 1).unwrap_err().is_broken());
    let _ = std::fs::remove_file(&go);
}
