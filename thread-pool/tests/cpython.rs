//! Ports of CPython's `ThreadPoolExecutor` tests.
//!
//! Source: CPython `Lib/test/test_concurrent_futures/` (3.13/3.14 branch):
//! `test_thread_pool.py` (`ThreadPoolExecutorTest`), `test_shutdown.py`
//! (`ExecutorShutdownTest`, `ThreadPoolShutdownTest`), `test_init.py`
//! (`InitializerMixin`, `FailingInitializerMixin`) and `executor.py` (`ExecutorTest`).
//! Each test keeps the CPython name. Python semaphores and sleeps that only hold tasks
//! become gates; `map`-based checks use `submit` (map lives in `cfutures-combinators`).
//! Not ported: interpreter-exit and fork tests (no Rust equivalent), `submit` keyword
//! arguments, `map` tests (ported with the combinators).

mod util;

use cfutures_thread_pool::{default_max_workers, ThreadPoolExecutor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::{Gate, LIMIT};

/// `ThreadPoolMixin`: five workers.
fn executor() -> ThreadPoolExecutor {
    ThreadPoolExecutor::new(5).unwrap()
}

fn abs_all(pool: &ThreadPoolExecutor) -> Vec<cfutures_core::Future<i32>> {
    (-5..5)
        .map(|v: i32| pool.submit(move || v.abs()).unwrap())
        .collect()
}

// ----- test_thread_pool.py ------------------------------------------------------------

#[test]
fn test_default_workers() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        ThreadPoolExecutor::default().max_workers(),
        32.min(cpus + 4)
    );
    assert_eq!(default_max_workers(), 32.min(cpus + 4));
}

#[test]
fn test_saturation() {
    let executor = ThreadPoolExecutor::new(4).unwrap();
    let sem = Gate::new();
    let fs: Vec<_> = (0..15 * executor.max_workers())
        .map(|_| {
            let s = sem.clone();
            executor.submit(move || s.wait()).unwrap()
        })
        .collect();
    assert_eq!(executor.live_threads(), executor.max_workers());
    sem.open();
    executor.shutdown(true, false);
    assert!(fs.iter().all(|f| f.done()));
}

#[test]
fn test_idle_thread_reuse() {
    let executor = ThreadPoolExecutor::default();
    executor
        .submit(|| 21 * 2)
        .unwrap()
        .result_timeout(LIMIT)
        .unwrap();
    executor
        .submit(|| 6 * 7)
        .unwrap()
        .result_timeout(LIMIT)
        .unwrap();
    executor
        .submit(|| 3 * 14)
        .unwrap()
        .result_timeout(LIMIT)
        .unwrap();
    assert_eq!(executor.live_threads(), 1);
    executor.shutdown(true, false);
}

// ----- executor.py (ExecutorTest) -----------------------------------------------------

#[test]
fn test_submit() {
    let executor = executor();
    let future = executor.submit(|| 2u32.pow(8)).unwrap();
    assert_eq!(*future.result_timeout(LIMIT).unwrap(), 256);
}

#[test]
fn test_max_workers_negative() {
    // Python: 0 and -1 raise ValueError("max_workers must be greater than 0"); usize has
    // no negatives.
    let e = ThreadPoolExecutor::new(0).unwrap_err();
    assert_eq!(e.to_string(), "max_workers must be greater than 0");
}

#[test]
fn test_free_reference() {
    // Issue #14406: the executor must not keep a reference to the task (and what it
    // captured) once the future is done.
    let executor = executor();
    for _ in 0..10 {
        let obj = Arc::new(Mutex::new(0u8));
        let weak = Arc::downgrade(&obj);
        let f = executor.submit(move || *obj.lock().unwrap()).unwrap();
        f.result_timeout(LIMIT).unwrap();
        assert!(
            weak.upgrade().is_none(),
            "the finished task still holds its captures"
        );
    }
}

#[test]
fn test_shutdown_race_issue12456() {
    // Submit and shut down concurrently: no hang, no lost future.
    let executor = Arc::new(executor());
    let e = executor.clone();
    let t = std::thread::spawn(move || {
        (0..200)
            .filter_map(|i| e.submit(move || i).ok())
            .collect::<Vec<_>>()
    });
    executor.shutdown(false, false);
    for f in t.join().unwrap() {
        f.result_timeout(LIMIT).unwrap();
    }
}

// ----- test_shutdown.py ----------------------------------------------------------------

#[test]
fn test_run_after_shutdown() {
    let executor = executor();
    executor.shutdown(true, false);
    assert!(executor.submit(|| 2u32.pow(5)).unwrap_err().is_shutdown());
}

#[test]
fn test_hang_issue12364() {
    let executor = executor();
    let fs: Vec<_> = (0..50)
        .map(|_| {
            executor
                .submit(|| std::thread::sleep(Duration::from_millis(2)))
                .unwrap()
        })
        .collect();
    executor.shutdown(true, false);
    for f in fs {
        f.result_timeout(LIMIT).unwrap();
    }
}

#[test]
fn test_cancel_futures() {
    let executor = executor();
    // Python relies on timing for "at least one task started before shutdown"; here the
    // first task to start says so, and shutdown waits for that word.
    let (tx, started) = std::sync::mpsc::channel();
    let fs: Vec<_> = (0..50)
        .map(|_| {
            let tx = tx.clone();
            executor
                .submit(move || {
                    let _ = tx.send(());
                    std::thread::sleep(Duration::from_millis(20))
                })
                .unwrap()
        })
        .collect();
    started.recv_timeout(LIMIT).unwrap();
    executor.shutdown(true, true);
    // We can't guarantee the exact number of cancellations, but we can guarantee that
    // *some* were cancelled: with five workers, at most five started.
    let cancelled = fs.iter().filter(|f| f.cancelled()).count();
    assert!(cancelled > 20, "{cancelled}");
    // The others finished (none left pending), without an error.
    let others: Vec<_> = fs.iter().filter(|f| !f.cancelled()).collect();
    assert!(!others.is_empty());
    for f in others {
        assert!(f.done());
        assert!(f.exception_timeout(LIMIT).unwrap().is_none());
    }
}

#[test]
fn test_hang_gh94440() {
    // shutdown(wait=True) doesn't hang when a future was submitted and quickly cancelled
    // right before shutdown.
    let executor = ThreadPoolExecutor::new(1).unwrap();
    executor
        .submit(|| 0)
        .unwrap()
        .result_timeout(LIMIT)
        .unwrap();
    executor.submit(|| 0).unwrap().cancel();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        executor.shutdown(true, false);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(LIMIT).expect("shutdown hung");
}

#[test]
fn test_threads_terminate() {
    let executor = executor();
    let sem = Gate::new();
    for _ in 0..3 {
        let s = sem.clone();
        executor.submit(move || s.wait()).unwrap();
    }
    assert_eq!(executor.live_threads(), 3);
    sem.open();
    executor.shutdown(true, false);
    assert_eq!(executor.live_threads(), 0);
}

#[test]
fn test_context_manager_shutdown() {
    let results: Vec<i32> = {
        let e = ThreadPoolExecutor::new(5).unwrap();
        let fs = abs_all(&e);
        fs.iter()
            .map(|f| *f.result_timeout(LIMIT).unwrap())
            .collect()
        // `e` dropped here: shutdown(wait = true)
    };
    assert_eq!(results, [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]);
}

#[test]
fn test_del_shutdown() {
    let executor = ThreadPoolExecutor::new(5).unwrap();
    let res = abs_all(&executor);
    drop(executor);
    // The results were all computed before the executor got shut down.
    for (f, v) in res.iter().zip(-5..5) {
        assert!(f.done());
        assert_eq!(*f.result().unwrap(), i32::abs(v));
    }
}

#[test]
fn test_shutdown_no_wait() {
    let executor = ThreadPoolExecutor::new(5).unwrap();
    let res = abs_all(&executor);
    executor.shutdown(false, false);
    for (f, v) in res.iter().zip(-5..5) {
        assert_eq!(*f.result_timeout(LIMIT).unwrap(), i32::abs(v));
    }
}

fn thread_names(executor: ThreadPoolExecutor) -> Vec<String> {
    let fs: Vec<_> = (0..10)
        .map(|_| {
            executor
                .submit(|| std::thread::current().name().unwrap().to_owned())
                .unwrap()
        })
        .collect();
    drop(executor);
    fs.iter().map(|f| f.result().unwrap().clone()).collect()
}

#[test]
fn test_thread_names_assigned() {
    let executor = ThreadPoolExecutor::builder()
        .max_workers(5)
        .thread_name_prefix("SpecialPool")
        .build()
        .unwrap();
    for name in thread_names(executor) {
        let n = name.strip_prefix("SpecialPool_").expect(&name);
        assert!(n.parse::<usize>().unwrap() <= 4, "{name}");
    }
}

#[test]
fn test_thread_names_default() {
    for name in thread_names(ThreadPoolExecutor::new(5).unwrap()) {
        let rest = name.strip_prefix("ThreadPoolExecutor-").expect(&name);
        let (pool, n) = rest.split_once('_').expect(&name);
        assert!(pool.parse::<usize>().is_ok(), "{name}");
        assert!(n.parse::<usize>().unwrap() <= 4, "{name}");
    }
}

// ----- test_init.py ----------------------------------------------------------------------

static INITIALIZER_STATUS: Mutex<&str> = Mutex::new("uninitialized");

#[test]
fn initializer_mixin_test_initializer() {
    let executor = ThreadPoolExecutor::builder()
        .max_workers(5)
        .initializer(|| *INITIALIZER_STATUS.lock().unwrap() = "initialized")
        .build()
        .unwrap();
    // Python submits to every worker; each sees the initialized state.
    let gate = Gate::new();
    let fs: Vec<_> = (0..5)
        .map(|_| {
            let g = gate.clone();
            executor
                .submit(move || {
                    g.wait();
                    *INITIALIZER_STATUS.lock().unwrap()
                })
                .unwrap()
        })
        .collect();
    gate.open();
    for f in fs {
        assert_eq!(*f.result_timeout(LIMIT).unwrap(), "initialized");
    }
}

#[test]
fn failing_initializer_mixin_test_initializer() {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let executor = ThreadPoolExecutor::builder()
        .max_workers(5)
        .initializer(move || -> Result<(), String> {
            s.fetch_add(1, Ordering::SeqCst);
            Err("error in initializer".into())
        })
        .build()
        .unwrap();
    let futures: Vec<_> = (0..5).map(|_| executor.submit(|| 2u32.pow(5))).collect();
    // Python: each future raises BrokenExecutor; a submit may already be refused with it.
    for f in futures {
        match f {
            Ok(f) => assert!(f.result_timeout(LIMIT).unwrap_err().is_broken()),
            Err(e) => assert!(e.is_broken()),
        }
    }
    // At some point, the executor is known broken, and later submits fail.
    assert!(executor.submit(|| 0).unwrap_err().is_broken());
    assert!(started.load(Ordering::SeqCst) >= 1);
}
