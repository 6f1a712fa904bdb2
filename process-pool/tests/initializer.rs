//! The initializer runs once per worker before its tasks; if it fails the pool is broken.

mod util;

use std::sync::atomic::{AtomicU32, Ordering};

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
