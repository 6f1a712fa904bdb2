//! `max_tasks_per_child`: workers are retired after N tasks and replaced.

mod util;

use std::collections::HashSet;

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

#[test]
fn one_task_per_child_over_100_tasks() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let fs: Vec<_> = (0..100).map(|_| pool.submit_fn(pid, ()).unwrap()).collect();
    let pids: HashSet<u32> = fs
        .iter()
        .map(|f| *f.result_timeout(WAIT).unwrap())
        .collect();
    assert_eq!(pids.len(), 100);
}

#[test]
fn three_tasks_per_child_on_one_worker() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let fs: Vec<_> = (0..7).map(|_| pool.submit_fn(pid, ()).unwrap()).collect();
    let pids: Vec<u32> = fs
        .iter()
        .map(|f| *f.result_timeout(WAIT).unwrap())
        .collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[1], pids[2]);
    assert_ne!(pids[2], pids[3]);
    assert_eq!(pids[3], pids[5]);
    assert_ne!(pids[5], pids[6]);
}
