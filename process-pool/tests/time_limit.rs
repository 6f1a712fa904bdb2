//! Per-task time limits: the worker is killed and replaced, the future fails with
//! `TaskError::TimeLimit`, the pool carries on.

mod util;

use std::time::Duration;

use cfutures_core::TaskError;
use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

#[test]
fn endless_loop_with_a_time_limit() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let limit = Duration::from_millis(200);
    let f = pool.submit_fn_with_timeout(spin, (), limit).unwrap();
    let next = pool.submit_fn(add_one, 1).unwrap();
    let e = f.exception_timeout(WAIT).unwrap().expect("failed");
    assert!(
        matches!(e, TaskError::TimeLimit { limit: l } if l == limit),
        "{e:?}"
    );
    assert_eq!(*next.result_timeout(WAIT).unwrap(), 2);
}

#[test]
fn default_time_limit_from_the_builder() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .time_limit(Duration::from_millis(150))
        .build()
        .unwrap();
    let f = pool.submit_fn(spin, ()).unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_time_limit());
    // Short tasks are unaffected.
    assert_eq!(
        *pool
            .submit_fn(add_one, 1)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        2
    );
}

#[test]
fn time_limit_on_a_worker_that_is_already_running() {
    // The worker exists and is idle, so the task goes straight into its pipe from this
    // thread: the I/O thread must still arm the timer.
    let pool = ProcessPoolExecutor::new(1).unwrap();
    assert_eq!(
        *pool
            .submit_fn(add_one, 1)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        2
    );
    let f = pool
        .submit_fn_with_timeout(spin, (), Duration::from_millis(100))
        .unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_time_limit());
}
