//! Retry and quarantine: a task whose worker died runs again (`RetryPolicy`), a task that
//! kept killing workers fails as poison (`TaskError::Quarantined`, each death listed), and a
//! poison task neither breaks the pool nor holds up other tasks. Each task counts its runs in
//! a file of its own (one line per run), so the counts are the worker processes' own.

mod util;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cfutures_combinators::MapBuilder;
use cfutures_core::{ChunkOutput, MapChunk, Submit, TaskError, WorkerExit};
use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, TaskOptions, WorkerDeathPolicy};
use util::*;

/// A fresh file to count runs in.
fn counter(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "cfpp-retry-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// Appends a line to `path`; returns how many runs it now counts (this one included).
fn count_run(path: &str) -> usize {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(b"run\n").unwrap();
    drop(f);
    runs(path)
}

fn runs(path: impl AsRef<std::path::Path>) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn segfault() {
    // SAFETY: none — this task exists to crash its worker.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
}

/// Kills its worker every time.
fn always_segfault(path: String) -> u32 {
    count_run(&path);
    segfault();
    0
}

/// Kills its worker on its first run only.
fn segfault_once(path: String) -> u32 {
    let n = count_run(&path);
    if n == 1 {
        segfault();
    }
    n as u32
}

/// Panics on its first `fails` runs.
fn panic_first((path, fails): (String, usize)) -> usize {
    let n = count_run(&path);
    assert!(n > fails, "run {n} fails");
    n
}

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn healthy(pool: &ProcessPoolExecutor) {
    assert!(!pool.is_broken());
    let f = pool.submit_fn(add_one, 41).unwrap();
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 42);
}

#[test]
fn a_task_that_always_segfaults_is_quarantined_after_three_deaths() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .retry(RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(5)))
        .build()
        .unwrap();
    let path = counter("always");
    let bad = pool.submit_fn(always_segfault, s(&path)).unwrap();
    let others: Vec<_> = (0..20u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    let err = bad.exception_timeout(WAIT).unwrap().expect("it failed");
    assert!(err.is_quarantined(), "{err}");
    assert!(!err.is_worker_died());
    let deaths = err.deaths().unwrap();
    assert_eq!(deaths.len(), 3, "{err}");
    for d in deaths {
        assert_eq!(d.exit, WorkerExit::Signal(libc::SIGSEGV));
    }
    // Three different workers died (each death replaced its worker).
    let mut pids: Vec<u32> = deaths.iter().map(|d| d.pid).collect();
    pids.dedup();
    assert_eq!(pids.len(), 3);
    assert!(err
        .to_string()
        .starts_with("task quarantined: the worker processes that ran it died 3 times ("));
    // It ran three times, and is never run again.
    assert_eq!(runs(&path), 3);
    for (i, f) in others.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    healthy(&pool);
    assert_eq!(runs(&path), 3);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_task_that_segfaults_once_succeeds_on_its_second_run() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .retry(RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(1)))
        .build()
        .unwrap();
    let path = counter("once");
    let f = pool.submit_fn(segfault_once, s(&path)).unwrap();
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 2);
    assert_eq!(runs(&path), 2);
    healthy(&pool);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn without_a_policy_a_death_fails_the_task_at_once() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let path = counter("none");
    let f = pool.submit_fn(segfault_once, s(&path)).unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(err.is_worker_died(), "{err}");
    assert_eq!(runs(&path), 1);
    let _ = std::fs::remove_file(&path);
    // Per submission, `no_retry` wins over the pool's policy, and `retry` adds one.
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .retry(RetryPolicy::new())
        .build()
        .unwrap();
    let path = counter("no-retry");
    let f = pool
        .with(TaskOptions::new().no_retry())
        .submit_fn(segfault_once, s(&path))
        .unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_worker_died());
    assert_eq!(runs(&path), 1);
    let plain = ProcessPoolExecutor::new(1).unwrap();
    let path2 = counter("per-submit");
    let opts = TaskOptions::new().retry(RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO));
    let f = plain
        .with(opts)
        .submit_fn(segfault_once, s(&path2))
        .unwrap();
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 2);
    for p in [path, path2] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn attempts_below_the_poison_threshold_end_as_a_plain_death() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .retry(
            RetryPolicy::new()
                .attempts(2)
                .poison_after(5)
                .backoff(Duration::ZERO, Duration::ZERO),
        )
        .build()
        .unwrap();
    let path = counter("attempts");
    let f = pool.submit_fn(always_segfault, s(&path)).unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(
        matches!(err, TaskError::WorkerDied { exit: WorkerExit::Signal(s), .. } if s == libc::SIGSEGV),
        "{err}"
    );
    assert_eq!(runs(&path), 2);
    healthy(&pool);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_poison_task_does_not_break_a_break_pool_pool() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .on_worker_death(WorkerDeathPolicy::BreakPool)
        .retry(
            RetryPolicy::new()
                .poison_after(2)
                .backoff(Duration::ZERO, Duration::ZERO),
        )
        .build()
        .unwrap();
    let path = counter("breakpool");
    let f = pool.submit_fn(always_segfault, s(&path)).unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(err.is_quarantined(), "{err}");
    assert_eq!(err.deaths().unwrap().len(), 2);
    healthy(&pool);
    // A death of a task without a policy still breaks it, as Python's pool.
    let path2 = counter("breakpool-plain");
    let g = pool
        .with(TaskOptions::new().no_retry())
        .submit_fn(always_segfault, s(&path2))
        .unwrap();
    assert!(g.exception_timeout(WAIT).unwrap_err().is_broken());
    assert!(pool.is_broken());
    for p in [path, path2] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn the_predicate_retries_errors_it_names() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .quiet_panics(true)
        .build()
        .unwrap();
    let retry_panics = RetryPolicy::new()
        .attempts(3)
        .backoff(Duration::ZERO, Duration::ZERO)
        .retry_if(|e| e.is_panic());
    // Panics twice, then succeeds: the third attempt is its last, and it is enough.
    let path = counter("pred-ok");
    let f = pool
        .with(TaskOptions::new().retry(retry_panics.clone()))
        .submit_fn(panic_first, (s(&path), 2))
        .unwrap();
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 3);
    assert_eq!(runs(&path), 3);
    // Panics three times: attempts run out; the last panic is the error.
    let path2 = counter("pred-out");
    let f = pool
        .with(TaskOptions::new().retry(retry_panics))
        .submit_fn(panic_first, (s(&path2), 5))
        .unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert_eq!(err.panic_message(), Some("run 3 fails"));
    assert_eq!(runs(&path2), 3);
    // Without a predicate (or one that says no), an error is final.
    let path3 = counter("pred-none");
    let f = pool
        .with(TaskOptions::new().retry(RetryPolicy::new()))
        .submit_fn(panic_first, (s(&path3), 1))
        .unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_panic());
    assert_eq!(runs(&path3), 1);
    let path4 = counter("pred-no");
    let no = RetryPolicy::new().retry_if(|e| e.is_codec());
    let f = pool
        .with(TaskOptions::new().retry(no))
        .submit_fn(panic_first, (s(&path4), 1))
        .unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_panic());
    assert_eq!(runs(&path4), 1);
    // A predicate that panics counts as "no".
    let path5 = counter("pred-panics");
    let bad = RetryPolicy::new().retry_if(|_| panic!("a predicate's bug"));
    let f = pool
        .with(TaskOptions::new().retry(bad))
        .submit_fn(panic_first, (s(&path5), 1))
        .unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_panic());
    assert_eq!(runs(&path5), 1);
    healthy(&pool);
    for p in [path, path2, path3, path4, path5] {
        let _ = std::fs::remove_file(p);
    }
}

/// Kills its worker for item 5; doubles the others.
fn double_but_five(x: u64) -> u64 {
    if x == 5 {
        segfault();
    }
    x * 2
}

#[test]
fn a_chunk_with_one_poison_item_fails_only_that_item() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .retry(RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO))
        .build()
        .unwrap();
    // Through `map`: 12 items in chunks of 4; item 5 is in the second chunk.
    let results: Vec<_> = MapBuilder::new(&pool)
        .chunksize(4)
        .timeout(WAIT)
        .map(double_but_five, 0..12u64)
        .unwrap()
        .collect();
    assert_eq!(results.len(), 12, "one result per item, no more");
    for (i, r) in results.iter().enumerate() {
        if i == 5 {
            let e = r.as_ref().unwrap_err().task_error().expect("a task error");
            assert!(e.is_quarantined(), "{e}");
            // The chunk's death counts against no item: three deaths as a task of its own.
            assert_eq!(e.deaths().unwrap().len(), 3);
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u64 * 2);
        }
    }
    // One chunk's future: the caller sees that one, with each item's own result.
    let chunk = MapChunk::new(std::sync::Arc::new(double_but_five), vec![4u64, 5, 6]);
    let f = pool.submit(chunk).unwrap();
    let out = f.into_result().unwrap();
    assert!(matches!(out, ChunkOutput::Mixed(_)));
    let items: Vec<_> = out.into_iter().collect();
    assert_eq!(items.len(), 3);
    assert_eq!(*items[0].as_ref().unwrap(), 8);
    assert!(items[1].as_ref().unwrap_err().is_quarantined());
    assert_eq!(*items[2].as_ref().unwrap(), 12);
    healthy(&pool);
}

#[test]
fn a_chunk_without_a_policy_fails_whole_as_before() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let chunk = MapChunk::new(std::sync::Arc::new(double_but_five), vec![4u64, 5, 6]);
    let f = pool.submit(chunk).unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(err.is_worker_died(), "{err}");
}

#[test]
fn a_retry_waiting_for_its_backoff_holds_up_no_other_task() {
    // A backoff far longer than the bounded wait: if the retry blocked the queue, the task
    // behind it would time out.
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .retry(RetryPolicy::new().backoff(Duration::from_secs(600), Duration::from_secs(600)))
        .build()
        .unwrap();
    let path = counter("backoff");
    let first = pool.submit_fn(segfault_once, s(&path)).unwrap();
    let behind: Vec<_> = (0..10u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for (i, f) in behind.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    assert!(!first.done());
    assert_eq!(runs(&path), 1);
    // It can be cancelled while it waits.
    assert!(pool.cancel(&first));
    assert!(first.result_timeout(WAIT).unwrap_err().is_cancelled());
    healthy(&pool);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn stopping_the_workers_fails_a_waiting_retry() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .retry(RetryPolicy::new().backoff(Duration::from_secs(600), Duration::from_secs(600)))
        .build()
        .unwrap();
    let path = counter("forced");
    let first = pool.submit_fn(segfault_once, s(&path)).unwrap();
    // Wait until it ran (and died) once, then until the pool serves again.
    assert_eq!(
        *pool
            .submit_fn(add_one, 1)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        2
    );
    assert_eq!(runs(&path), 1);
    pool.kill_workers();
    assert!(first.result_timeout(WAIT).unwrap_err().is_broken());
    drop(pool); // returns: nothing is left waiting
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_task_stopped_at_its_time_limit_is_not_retried() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .retry(RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO))
        .build()
        .unwrap();
    let path = counter("limit");
    let f = pool
        .with(TaskOptions::new().time_limit(Duration::from_millis(100)))
        .submit_fn(count_then_spin, s(&path))
        .unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_time_limit());
    assert_eq!(runs(&path), 1);
    healthy(&pool);
    let _ = std::fs::remove_file(&path);
}

fn count_then_spin(path: String) {
    count_run(&path);
    spin(())
}

#[test]
fn invalid_policies_are_refused() {
    let e = ProcessPoolExecutor::builder()
        .retry(RetryPolicy::new().attempts(0))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let e = pool
        .with(TaskOptions::new().retry(RetryPolicy::new().poison_after(0)))
        .submit_fn(add_one, 1)
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
}

#[test]
fn the_new_errors_cross_the_wire() {
    let q = TaskError::Quarantined {
        deaths: vec![cfutures_core::WorkerDeath {
            pid: 3,
            exit: WorkerExit::Code(9),
        }]
        .into(),
    };
    let w = TaskError::msg("boom").with_output(cfutures_core::TaskOutput::new(&b"tail"[..], 99));
    for e in [q, w] {
        let bytes = postcard::to_allocvec(&e).unwrap();
        let back: TaskError = postcard::from_bytes(&bytes).unwrap();
        // A returned error crosses as its message and type name (`dyn Error` here).
        assert_eq!(back.to_string().replace(" (dyn Error)", ""), e.to_string());
        assert_eq!(back.deaths(), e.deaths());
        assert_eq!(back.output(), e.output());
    }
}
