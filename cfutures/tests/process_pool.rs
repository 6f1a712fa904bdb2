//! The facade with the `process-pool` feature: a binary that depends only on `cfutures`
//! still starts process-pool workers (the worker-mode constructor is linked in), and both
//! pools report a panic and zero workers the same way.

use cfutures::prelude::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn triple(x: u64) -> u64 {
    x * 3
}

#[test]
fn workers_start_in_a_binary_that_depends_only_on_the_facade() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let f = pool.submit_fn(triple, 14).unwrap();
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 42);
    let worker_pid = pool
        .submit_fn(|(): ()| std::process::id(), ())
        .unwrap()
        .result_timeout(LIMIT)
        .copied()
        .unwrap();
    assert_ne!(
        worker_pid,
        std::process::id(),
        "the task ran in another process"
    );
    let out: Vec<u64> = pool
        .map_builder()
        .chunksize(4)
        .map(triple, 0..10)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out, (0..10).map(|x| x * 3).collect::<Vec<_>>());
}

#[test]
fn zero_workers_is_the_same_message_from_both_pools() {
    let threads = ThreadPoolExecutor::new(0).unwrap_err();
    let processes = ProcessPoolExecutor::new(0).unwrap_err();
    assert!(threads.is_zero_workers());
    assert_eq!(threads.to_string(), processes.to_string());
}

fn explode(_: u32) -> u32 {
    panic!("exploded")
}

#[test]
fn both_pools_report_a_panic_with_its_message_and_location() {
    let processes = ProcessPoolExecutor::new(1).unwrap();
    let threads = ThreadPoolExecutor::new(1).unwrap();
    let p = processes.submit_fn(explode, 1).unwrap();
    let t = threads.submit(|| explode(1)).unwrap();
    let p = p.result_timeout(LIMIT).unwrap_err();
    let t = t.result_timeout(LIMIT).unwrap_err();
    for e in [&p, &t] {
        let e = e.task_error().expect("a task error");
        assert_eq!(e.panic_message(), Some("exploded"));
        assert!(e.to_string().contains("process_pool.rs:"), "{e}");
    }
    // The same text, `task panicked at <file:line:column>: <message>`.
    assert_eq!(p.to_string(), t.to_string());
}
