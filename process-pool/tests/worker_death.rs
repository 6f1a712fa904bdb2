//! Worker death under the default policy: only the task the worker ran fails, with the pid and
//! the signal or exit code; the worker is replaced and the pool carries on.

mod util;

use std::time::Duration;

use cfutures_core::{TaskError, WorkerExit};
use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

fn segfault(_: ()) {
    // SAFETY: none — this task exists to crash its worker.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
}

fn abort(_: ()) {
    std::process::abort();
}

fn exit3(_: ()) {
    std::process::exit(3);
}

/// Runs `crash` on a pool of one worker next to queued work; checks the typed error and that
/// the queued work and later work still run.
fn check_crash<F: Fn(()) + Copy + Send + Sync + 'static>(crash: F, expected: WorkerExit) {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let before = pool.submit_fn(add_one, 1).unwrap();
    let bad = pool.submit_fn(crash, ()).unwrap();
    let after: Vec<_> = (0..5u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    assert_eq!(*before.result_timeout(WAIT).unwrap(), 2);
    let err = bad
        .exception_timeout(WAIT)
        .unwrap()
        .expect("the task failed");
    match err {
        TaskError::WorkerDied { pid, exit } => {
            assert_eq!(exit, expected, "{err}");
            assert_ne!(pid, std::process::id());
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    for (i, f) in after.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    assert!(!pool.is_broken());
    assert_eq!(
        *pool
            .submit_fn(add_one, 9)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        10
    );
}

#[test]
fn segfault_fails_only_its_task() {
    check_crash(segfault, WorkerExit::Signal(libc::SIGSEGV));
}

#[test]
fn abort_fails_only_its_task() {
    check_crash(abort, WorkerExit::Signal(libc::SIGABRT));
}

#[test]
fn exit_fails_only_its_task() {
    check_crash(exit3, WorkerExit::Code(3));
}

#[test]
fn sigkill_of_a_busy_worker() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let busy = pool.submit_fn(spin, ()).unwrap();
    let other = pool.submit_fn(add_one, 1).unwrap();
    assert_eq!(*other.result_timeout(WAIT).unwrap(), 2);
    // Find the worker running `busy`: the one that does not answer while it spins.
    let t0 = std::time::Instant::now();
    while !busy.running() && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(1));
    }
    let pids = pool.worker_pids();
    let spinning = pids
        .iter()
        .copied()
        .find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('R')
                })
                .unwrap_or(false)
        })
        .unwrap_or(pids[0]);
    // Kill every worker: the busy one's task must fail with SIGKILL; nothing else ran.
    for p in &pids {
        // SAFETY: kill has no memory effects; these are our own workers.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    let err = busy.exception_timeout(WAIT).unwrap().expect("failed");
    match err {
        TaskError::WorkerDied { pid, exit } => {
            assert_eq!(exit, WorkerExit::Signal(libc::SIGKILL));
            assert!(pids.contains(&pid), "{pid} not in {pids:?} ({spinning})");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    let fs: Vec<_> = (0..20u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    assert!(pool.worker_pids().iter().all(|p| !pids.contains(p)));
}
