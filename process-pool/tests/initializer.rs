//! The initializer runs once per worker before its tasks; if it fails the pool is broken.

mod util;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

static LEVEL: AtomicU32 = AtomicU32::new(0);

fn set_level(level: u32) {
    LEVEL.store(level, Ordering::Relaxed);
}

fn level(_: ()) -> u32 {
    LEVEL.load(Ordering::Relaxed)
}

fn failing_init(_: ()) {
    panic!("cannot open the database");
}

#[test]
fn initializer_runs_in_each_worker() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(set_level, 7)
        .build()
        .unwrap();
    let fs: Vec<_> = (0..4).map(|_| pool.submit_fn(level, ()).unwrap()).collect();
    for f in fs {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), 7);
    }
}

#[test]
fn failing_initializer_breaks_the_pool() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(failing_init, ())
        .build()
        .unwrap();
    let fs: Vec<_> = (0..3u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for f in &fs {
        let e = f.result_timeout(WAIT).unwrap_err();
        assert!(e.is_broken(), "{e:?}");
    }
    let e = fs[0].result_timeout(WAIT).unwrap_err();
    assert!(e.is_broken(), "{e:?}");
    assert!(e.to_string().contains("cannot open the database"), "{e}");
    assert!(pool.is_broken());
    assert!(pool.submit_fn(add_one, 1).unwrap_err().is_broken());
}

/// A worker killed while it runs its first task after its initializer: the initializer's
/// completion must have reached the parent before that task ran, so that the death is blamed
/// on the task alone — not on the initializer, which would break the whole pool. (Regression:
/// the worker used to hold results back while more frames were queued.)
#[test]
fn a_death_right_after_the_initializer_fails_only_its_task() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(set_level, 3)
        .build()
        .unwrap();
    let path = pid_file("init-busy");
    let busy = pool
        .submit_fn(report_then_spin, path.to_string_lossy().into_owned())
        .unwrap();
    let others: Vec<_> = (0..5u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    let victim = wait_for_pid(&path);
    // SAFETY: kill has no memory effects; `victim` is our own worker.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let err = busy.exception_timeout(WAIT).unwrap().expect("it died");
    assert!(
        matches!(err, cfutures_core::TaskError::WorkerDied { pid, .. } if pid == victim),
        "{err:?}"
    );
    for (i, f) in others.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    assert!(!pool.is_broken());
    // Replacement workers run the initializer too.
    assert_eq!(
        *pool
            .submit_fn(level, ())
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        3
    );
}

/// A time limit fires for a worker's first task after its initializer.
#[test]
fn a_time_limit_right_after_the_initializer_fires() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(set_level, 5)
        .build()
        .unwrap();
    let endless = pool
        .submit_fn_with_timeout(spin, (), Duration::from_millis(200))
        .unwrap();
    let err = endless.exception_timeout(WAIT).unwrap().expect("stopped");
    assert!(err.is_time_limit(), "{err:?}");
    assert_eq!(
        *pool
            .submit_fn(level, ())
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        5
    );
    assert!(!pool.is_broken());
}
