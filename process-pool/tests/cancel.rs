//! Cancelling: queued futures as in Python; running ones by killing their worker.

mod util;

use std::time::{Duration, Instant};

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

fn wait_running<T>(f: &cfutures_core::Future<T>) {
    let t0 = Instant::now();
    while !f.running() && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(f.running());
}

#[test]
fn cancel_a_running_endless_loop() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool.submit_fn(spin, ()).unwrap();
    let queued = pool.submit_fn(add_one, 1).unwrap();
    wait_running(&f);
    assert!(!f.cancel(), "Future::cancel cannot stop a running task");
    assert!(pool.cancel(&f));
    let e = f.result_timeout(WAIT).unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    assert!(f.cancelled());
    assert_eq!(*queued.result_timeout(WAIT).unwrap(), 2);
    assert_eq!(
        *pool
            .submit_fn(add_one, 2)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        3
    );
}

#[test]
fn cancel_a_queued_task() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let busy = pool
        .submit_fn_with_timeout(spin, (), Duration::from_millis(300))
        .unwrap();
    let queued: Vec<_> = (0..5u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    // The last ones are still in the parent's queue: Python's cancel works on them.
    let last = queued.last().unwrap();
    assert!(last.cancel());
    assert!(busy
        .exception_timeout(WAIT)
        .unwrap()
        .unwrap()
        .is_time_limit());
    assert!(last.result_timeout(WAIT).unwrap_err().is_cancelled());
    for (i, f) in queued.iter().enumerate().take(4) {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
}

#[test]
fn cancel_of_a_finished_future_is_false() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool.submit_fn(add_one, 1).unwrap();
    f.result_timeout(WAIT).unwrap();
    assert!(!pool.cancel(&f));
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn cancel_a_task_waiting_in_a_worker_window() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    // Tiny tasks first: the worker's window deepens, so later tasks are sent behind the
    // running one (they are `Running` already, and `Future::cancel` refuses them).
    let warm: Vec<_> = (0..200u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for f in &warm {
        f.result_timeout(WAIT).unwrap();
    }
    let first = pool.submit_fn(nap, 200).unwrap();
    let second = pool.submit_fn(spin, ()).unwrap();
    let third = pool.submit_fn(add_one, 7).unwrap();
    wait_running(&second);
    assert!(!second.cancel());
    assert!(pool.cancel(&second));
    assert_eq!(*first.result_timeout(WAIT).unwrap(), 200);
    assert!(second.result_timeout(WAIT).unwrap_err().is_cancelled());
    assert_eq!(*third.result_timeout(WAIT).unwrap(), 8);
}
