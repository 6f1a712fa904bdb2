//! Watching the pool: live, idle, queued, running and blocked counts.

mod util;

use cfutures_thread_pool::ThreadPoolExecutor;
use std::sync::mpsc;
use util::{Gate, LIMIT};

#[test]
fn counts_follow_the_pool() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    assert_eq!(pool.max_workers(), 2);
    assert_eq!(
        (
            pool.live_threads(),
            pool.idle_threads(),
            pool.queued_tasks(),
            pool.running_tasks()
        ),
        (0, 0, 0, 0)
    );
    let gate = Gate::new();
    let (tx, started) = mpsc::channel();
    let fs: Vec<_> = (0..5)
        .map(|_| {
            let (g, tx) = (gate.clone(), tx.clone());
            pool.submit(move || {
                tx.send(()).unwrap();
                g.wait()
            })
            .unwrap()
        })
        .collect();
    started.recv_timeout(LIMIT).unwrap();
    started.recv_timeout(LIMIT).unwrap();
    assert_eq!(pool.live_threads(), 2);
    assert_eq!(pool.running_tasks(), 2);
    assert_eq!(pool.queued_tasks(), 3);
    assert_eq!(pool.idle_threads(), 0);
    assert_eq!(pool.blocked_threads(), 0);
    let debug = format!("{pool:?}");
    assert!(debug.contains("queued_tasks: 3"), "{debug}");

    gate.open();
    for f in fs {
        f.result_timeout(LIMIT).unwrap();
    }
    util::eventually("all idle", || pool.idle_threads() == 2);
    assert_eq!(pool.running_tasks(), 0);
    assert_eq!(pool.queued_tasks(), 0);
    pool.shutdown(true, false);
    assert_eq!((pool.live_threads(), pool.idle_threads()), (0, 0));
}
