//! Blocking work from async code (Python's `loop.run_in_executor` / `asyncio.wrap_future`):
//! `pool.submit(f)?.await` under tokio, with the thread pool, through the facade's one
//! `use`.

use std::time::Duration;

use cfutures::prelude::*;

const LIMIT: Duration = Duration::from_secs(30);

fn busy_sum(n: u64) -> u64 {
    (0..n).fold(0u64, |a, x| a.wrapping_add(x * x))
}

#[tokio::test(flavor = "current_thread")]
async fn a_single_threaded_runtime_is_not_blocked_while_the_pool_works() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    // The task blocks until the runtime's other async task has run: if awaiting blocked the
    // runtime's only thread, that task could never run and this would time out.
    let blocked = pool.submit(move || rx.recv_timeout(LIMIT).is_ok()).unwrap();
    let other = tokio::spawn(async move { tx.send(()).unwrap() });
    assert!(tokio::time::timeout(LIMIT, blocked).await.unwrap().unwrap());
    other.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_then_await_gives_each_result() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    let futures: Vec<Future<u64>> = (0..20)
        .map(|i| pool.submit(move || busy_sum(1_000 * i)))
        .collect::<Result<_, _>>()
        .unwrap();
    let mut got = Vec::new();
    for f in futures {
        got.push(tokio::time::timeout(LIMIT, f).await.unwrap().unwrap());
    }
    assert_eq!(
        got,
        (0..20).map(|i| busy_sum(1_000 * i)).collect::<Vec<_>>()
    );

    // Failures arrive as `Error`s, as from `result()`.
    let f = pool.submit(fallible(|| "x".parse::<u32>())).unwrap();
    let e = f.await.unwrap_err();
    assert!(e.task_error().unwrap().is_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_awaits_in_parallel_tokio_tasks() {
    let pool = std::sync::Arc::new(ThreadPoolExecutor::new(3).unwrap());
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.submit(move || i * 2).unwrap().await.unwrap() })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += tokio::time::timeout(LIMIT, t).await.unwrap().unwrap();
    }
    assert_eq!(total, (0..200u64).map(|i| i * 2).sum());
}
