//! Submitting tasks: closures, fallible tasks, `MapChunk`, panics, and the core traits.

mod util;

use cfutures_core::{fallible, ChunkOutput, Executor, MapChunk, Submit, SubmitError, Task};
use cfutures_thread_pool::ThreadPoolExecutor;
use std::sync::Arc;
use util::LIMIT;

#[test]
fn submit_returns_the_result() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let f = pool.submit(|| 2u64.pow(5)).unwrap();
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 32);
}

#[test]
fn many_tasks_all_complete_in_any_order() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    let fs: Vec<_> = (0..1000u64)
        .map(|i| pool.submit(move || i * 3).unwrap())
        .collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(LIMIT).unwrap(), i as u64 * 3);
    }
}

#[test]
fn fallible_task_fails_its_future_with_the_error() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let f = pool.submit(fallible(|| "nope".parse::<i32>())).unwrap();
    let e = f.exception_timeout(LIMIT).unwrap().expect("failed");
    assert!(e.downcast_ref::<std::num::ParseIntError>().is_some());
    assert!(f.result().unwrap_err().is_failed());
}

#[test]
fn panicking_task_fails_only_its_own_future_and_the_worker_survives() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let bad = pool
        .submit(|| -> u8 { panic!("task exploded: {}", 7) })
        .unwrap();
    let good = pool.submit(|| 5u8).unwrap();
    let err = bad.result_timeout(LIMIT).unwrap_err();
    let te = err.task_error().expect("a task error");
    assert!(te.is_panic());
    assert_eq!(te.panic_message(), Some("task exploded: 7"));
    assert_eq!(*good.result_timeout(LIMIT).unwrap(), 5);
    // The same single thread ran both.
    assert_eq!(pool.live_threads(), 1);
}

#[test]
fn map_chunk_runs_each_item_and_isolates_failures() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let f = Arc::new(|x: i32| {
        assert!(x != 3, "three");
        x * 10
    });
    let fut = pool.submit(MapChunk::new(f, vec![1, 2, 3, 4])).unwrap();
    assert!(fut.wait_timeout(LIMIT));
    let out = fut.into_result().unwrap();
    assert!(
        matches!(out, ChunkOutput::Mixed(_)),
        "a failing item keeps per-item results"
    );
    let out: Vec<_> = out.into_iter().collect();
    assert_eq!(out.len(), 4);
    assert_eq!(*out[0].as_ref().unwrap(), 10);
    assert!(out[2].as_ref().unwrap_err().is_panic());
    assert_eq!(*out[3].as_ref().unwrap(), 40);
}

/// Code written against the core traits only.
fn run_generic<E, T>(ex: &E, task: T) -> Result<T::Output, SubmitError>
where
    E: Submit<T> + ?Sized,
    T: Task,
    T::Output: Clone,
{
    Ok(ex.submit(task)?.result_timeout(LIMIT).unwrap().clone())
}

#[test]
fn works_through_the_core_traits() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    assert_eq!(run_generic(&pool, || 7).unwrap(), 7);
    let shared = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    assert_eq!(run_generic(&shared, || "x").unwrap(), "x");
    let dynamic: Box<dyn Executor> = Box::new(ThreadPoolExecutor::new(1).unwrap());
    assert!(!dynamic.is_shutdown());
    dynamic.shutdown(true, false);
    assert!(dynamic.is_shutdown());
    Executor::shutdown(&pool, true, false);
    assert!(run_generic(&pool, || 1).unwrap_err().is_shutdown());
}

#[test]
fn submit_from_many_threads_at_once() {
    let pool = Arc::new(ThreadPoolExecutor::new(3).unwrap());
    let submitters: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                (0..500u64)
                    .map(|i| pool.submit(move || t * 1000 + i).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (t, s) in submitters.into_iter().enumerate() {
        for (i, f) in s.join().unwrap().into_iter().enumerate() {
            assert_eq!(
                *f.result_timeout(LIMIT).unwrap(),
                t as u64 * 1000 + i as u64
            );
        }
    }
    assert!(pool.live_threads() <= 3);
}
