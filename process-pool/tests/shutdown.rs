//! After shutdown (and drop, terminate_workers, kill_workers) no worker process remains and
//! none is a zombie. One test, so that this binary's children are only its pools' workers.

mod util;

use std::time::{Duration, Instant};

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn assert_no_children(what: &str) {
    let c = children();
    assert!(c.is_empty(), "after {what}: children {c:?} remain");
}

fn wait_running<T>(f: &cfutures_core::Future<T>) {
    let t0 = Instant::now();
    while !f.running() && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn no_worker_and_no_zombie_remains() {
    // shutdown(wait = true) after work.
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let fs: Vec<_> = (0..50u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    fs[0].result_timeout(WAIT).unwrap();
    assert!(!children().is_empty());
    pool.shutdown(true, false);
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    assert_no_children("shutdown(wait)");
    drop(pool);

    // Drop waits for accepted work, then reaps.
    let f = {
        let pool = ProcessPoolExecutor::new(2).unwrap();
        pool.submit_fn(add_one, 1).unwrap()
    };
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 2);
    assert_no_children("drop");

    // shutdown(wait = false, cancel_futures = true): queued work is cancelled, running work
    // finishes in the background; dropping the pool later waits for it.
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let running = pool.submit_fn(nap, 100).unwrap();
    wait_running(&running);
    let queued: Vec<_> = (0..20u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    pool.shutdown(false, true);
    assert!(pool.submit_fn(add_one, 1).unwrap_err().is_shutdown());
    assert_eq!(*running.result_timeout(WAIT).unwrap(), 100);
    for f in &queued {
        let r = f.result_timeout(WAIT);
        assert!(r.is_ok() || r.unwrap_err().is_cancelled());
    }
    drop(pool);
    assert_no_children("shutdown(no wait, cancel) then drop");

    // kill_workers and terminate_workers: running futures fail as broken, queued ones are
    // cancelled, submits are refused, every worker is reaped.
    for kill in [true, false] {
        let pool = ProcessPoolExecutor::new(2).unwrap();
        let a = pool.submit_fn(spin, ()).unwrap();
        let b = pool.submit_fn(spin, ()).unwrap();
        let queued = pool.submit_fn(add_one, 1).unwrap();
        wait_running(&a);
        wait_running(&b);
        if kill {
            pool.kill_workers();
        } else {
            pool.terminate_workers();
        }
        for f in [&a, &b] {
            let e = f.result_timeout(WAIT).unwrap_err();
            assert!(e.is_broken(), "{e:?}");
        }
        assert!(queued.result_timeout(WAIT).unwrap_err().is_cancelled());
        assert!(pool.submit_fn(add_one, 1).is_err());
        pool.shutdown(true, false);
        assert_no_children(if kill {
            "kill_workers"
        } else {
            "terminate_workers"
        });
    }
}
