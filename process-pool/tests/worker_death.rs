//! Worker death under the default policy: only the task the worker ran fails, with the pid and
//! the signal or exit code; the worker is replaced and the pool carries on.

mod util;

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
    let path = pid_file("busy");
    let busy = pool
        .submit_fn(report_then_spin, path.to_string_lossy().into_owned())
        .unwrap();
    let victim = wait_for_pid(&path);
    // The other worker serves meanwhile.
    let other_pid = *pool
        .submit_fn(pid, ())
        .unwrap()
        .result_timeout(WAIT)
        .unwrap();
    assert_ne!(other_pid, victim);
    // SAFETY: kill has no memory effects; `victim` is our own worker.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let err = busy.exception_timeout(WAIT).unwrap().expect("failed");
    match err {
        TaskError::WorkerDied { pid, exit } => {
            assert_eq!(pid, victim);
            assert_eq!(exit, WorkerExit::Signal(libc::SIGKILL));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // The pool carries on: the survivor is untouched, a replacement starts for new work.
    let fs: Vec<_> = (0..20u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    let pids = pool.worker_pids();
    assert!(pids.contains(&other_pid), "{pids:?}");
    assert!(!pids.contains(&victim), "{pids:?}");
}
