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
    // The same type inside the process pool's `io::Error`.
    assert!(processes
        .get_ref()
        .and_then(|e| e.downcast_ref::<cfutures::InvalidArgument>())
        .is_some_and(|e| e.is_zero_workers()));
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

fn parse(s: String) -> Result<u32, String> {
    s.parse().map_err(|e| format!("{s:?}: {e}"))
}

#[test]
fn try_map_works_on_the_process_pool() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let input = ["1", "x", "3"].map(String::from);
    for chunksize in [1, 2] {
        let out: Vec<_> = pool
            .map_builder()
            .chunksize(chunksize)
            .try_map(parse, input.clone())
            .unwrap()
            .collect();
        assert_eq!(*out[0].as_ref().unwrap(), 1);
        let e = out[1].as_ref().unwrap_err().task_error().unwrap();
        assert!(e.is_error());
        assert!(e.to_string().starts_with("\"x\": invalid digit"), "{e}");
        assert_eq!(*out[2].as_ref().unwrap(), 3);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_awaits_the_process_pool() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let futures: Vec<_> = (0..10u64)
        .map(|i| pool.submit_fn(triple, i).unwrap())
        .collect();
    let mut total = 0;
    for f in futures {
        total += tokio::time::timeout(LIMIT, f).await.unwrap().unwrap();
    }
    assert_eq!(total, (0..10u64).map(|i| i * 3).sum());
}

fn shout(x: u32) -> u32 {
    println!("worker says {x}");
    x
}

#[test]
#[ignore = "helper, run in a child process by worker_println_goes_to_the_parents_stderr"]
fn helper_a_worker_prints() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool.submit_fn(shout, 7).unwrap();
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 7);
}

#[test]
fn worker_println_goes_to_the_parents_stderr() {
    // Run the helper in a child process, to see where its worker's `println!` lands.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_a_worker_prints",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the helper ran: {stdout}");
    assert!(stderr.contains("worker says 7"), "on stderr: {stderr}");
    assert!(!stdout.contains("worker says 7"), "not on stdout: {stdout}");
}

fn first_and_len(s: SharedBytes) -> (u8, usize) {
    (s[0], s.len())
}

/// One `SharedSlice` for both pools: a thread pool moves the handle (the same memory, not a
/// copy), a process pool sends a reference to the same pages.
#[test]
fn shared_slices_go_to_both_pools_from_the_prelude() {
    let data = SharedBytes::from_slice(&[9u8; 1 << 16]).unwrap();
    let threads = ThreadPoolExecutor::new(1).unwrap();
    let view = data.clone();
    let addr = data.as_ptr() as usize;
    let same = threads
        .submit(move || view.as_ptr() as usize == addr && view.is_shared())
        .unwrap();
    assert!(*same.result_timeout(LIMIT).unwrap());
    let processes = ProcessPoolExecutor::new(1).unwrap();
    let f = processes
        .submit_fn(first_and_len, data.slice(10..20))
        .unwrap();
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), (9, 10));
    let _: cfutures::process_pool::SharedSlice<u8> = data;
}
