//! Tasks run in worker processes: functions, task types, results, failures returned by tasks.

mod util;

use cfutures_core::{Submit, Task, TaskError};
use cfutures_process_pool::{ProcessPoolExecutor, RemoteTask};
use serde::{Deserialize, Serialize};
use util::*;

#[test]
fn submit_fn_runs_in_another_process() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let f = pool.submit_fn(add_one, 41).unwrap();
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 42);
    let p = pool.submit_fn(pid, ()).unwrap();
    let worker = *p.result_timeout(WAIT).unwrap();
    assert_ne!(worker, std::process::id());
    assert!(pool.worker_pids().contains(&worker));
}

#[test]
fn many_tasks_in_order_of_submission() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let fs: Vec<_> = (0..2000u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
}

#[test]
fn non_capturing_closures_and_tuples() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool
        .submit_fn(
            |(a, b): (String, u32)| a.repeat(b as usize),
            ("ab".to_owned(), 3),
        )
        .unwrap();
    assert_eq!(f.result_timeout(WAIT).unwrap(), "ababab");
}

#[derive(Serialize, Deserialize)]
struct Divide {
    a: i64,
    b: i64,
}

#[derive(Debug)]
struct DivByZero;
impl std::fmt::Display for DivByZero {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}
impl std::error::Error for DivByZero {}

impl Task for Divide {
    type Output = i64;
    fn run(self) -> Result<i64, TaskError> {
        if self.b == 0 {
            return Err(TaskError::new(DivByZero));
        }
        Ok(self.a / self.b)
    }
}
impl RemoteTask for Divide {}

#[test]
fn task_types_and_returned_errors() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let ok = pool.submit(Divide { a: 10, b: 3 }).unwrap();
    let bad = pool.submit(Divide { a: 1, b: 0 }).unwrap();
    assert_eq!(*ok.result_timeout(WAIT).unwrap(), 3);
    let e = bad.exception_timeout(WAIT).unwrap().expect("failed");
    assert!(e.is_error(), "{e:?}");
    assert!(e.to_string().contains("division by zero"), "{e}");
}

#[test]
fn submit_after_shutdown_is_refused() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool.submit_fn(add_one, 1).unwrap();
    pool.shutdown(true, false);
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 2);
    assert!(pool.submit_fn(add_one, 1).unwrap_err().is_shutdown());
}

#[test]
fn zero_workers_is_rejected() {
    assert!(ProcessPoolExecutor::new(0).is_err());
}
