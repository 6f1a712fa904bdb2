//! Nested waits: a worker waiting on a future of its own pool does not deadlock it
//! (compensating threads, see the crate doc).

mod util;

use cfutures_core::{pending, Waitable};
use cfutures_thread_pool::ThreadPoolExecutor;
use std::sync::{mpsc, Arc};
use util::{Gate, LIMIT};

#[test]
fn one_worker_task_waiting_on_pow_5_2_from_the_same_pool() {
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let p = pool.clone();
    let f = pool
        .submit(move || {
            let inner = p.submit(|| 5u32.pow(2)).unwrap();
            *inner.result_timeout(LIMIT).unwrap()
        })
        .unwrap();
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 25);
}

fn chain(pool: Arc<ThreadPoolExecutor>, depth: u32) -> u32 {
    if depth == 0 {
        return 0;
    }
    let p = pool.clone();
    let f = pool.submit(move || chain(p, depth - 1) + 1).unwrap();
    *f.result_timeout(LIMIT).unwrap()
}

#[test]
fn a_chain_of_nested_waits_in_a_pool_of_one() {
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let p = pool.clone();
    let f = pool.submit(move || chain(p, 10)).unwrap();
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 10);
    // The compensating threads retire once they run out of work.
    util::eventually("surplus threads retire", || pool.live_threads() <= 1);
}

#[test]
fn every_worker_waiting_on_queued_work() {
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let fs: Vec<_> = (0..6u64)
        .map(|i| {
            let p = pool.clone();
            pool.submit(move || {
                let inner: Vec<_> = (0..3u64)
                    .map(|j| p.submit(move || i * j).unwrap())
                    .collect();
                inner
                    .iter()
                    .map(|f| *f.result_timeout(LIMIT).unwrap())
                    .sum::<u64>()
            })
            .unwrap()
        })
        .collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(LIMIT).unwrap(), 3 * i as u64);
    }
}

#[test]
fn waiting_through_the_type_erased_handle_also_compensates() {
    // `wait` and `as_completed` wait through `Waitable`; they block through core too.
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let p = pool.clone();
    let f = pool
        .submit(move || {
            let inner = p.submit(|| 7u8).unwrap().erase();
            inner.wait_deadline(util_deadline())
        })
        .unwrap();
    assert!(*f.result_timeout(LIMIT).unwrap());
}

fn util_deadline() -> Option<std::time::Instant> {
    Some(std::time::Instant::now() + LIMIT)
}

#[test]
fn a_worker_blocked_on_a_future_does_not_count_against_max_workers() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (promise, external) = pending::<u8>();
    let (tx, started) = mpsc::channel();
    let blocked = pool
        .submit(move || {
            tx.send(()).unwrap();
            *external.result_timeout(LIMIT).unwrap()
        })
        .unwrap();
    started.recv_timeout(LIMIT).unwrap();
    util::eventually("the worker parks", || pool.blocked_threads() == 1);
    // Submitted after the worker blocked: it gets a thread of its own.
    let other = pool.submit(|| 2u8).unwrap();
    assert_eq!(*other.result_timeout(LIMIT).unwrap(), 2);
    promise.set_result(1).unwrap();
    assert_eq!(*blocked.result_timeout(LIMIT).unwrap(), 1);
    util::eventually("back to one thread", || pool.live_threads() == 1);
}

#[test]
fn short_waits_start_no_thread() {
    // A task waiting on a future that is running elsewhere (nothing queued) starts nothing.
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let gate = Gate::new();
    let g = gate.clone();
    let (tx, started) = mpsc::channel();
    let inner = pool
        .submit(move || {
            tx.send(()).unwrap();
            g.wait();
            3u8
        })
        .unwrap();
    started.recv_timeout(LIMIT).unwrap();
    let outer = pool
        .submit(move || *inner.result_timeout(LIMIT).unwrap() + 1)
        .unwrap();
    util::eventually("the outer task parks", || pool.blocked_threads() == 1);
    assert_eq!(pool.live_threads(), 2);
    gate.open();
    assert_eq!(*outer.result_timeout(LIMIT).unwrap(), 4);
    assert_eq!(pool.live_threads(), 2);
}
