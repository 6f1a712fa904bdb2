//! The initializer: runs once per worker thread; a failing one breaks the pool.

mod util;

use cfutures_thread_pool::ThreadPoolExecutor;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use util::{eventually, Gate, LIMIT};

thread_local! {
    static INITIALIZED: Cell<u32> = const { Cell::new(0) };
}

#[test]
fn the_initializer_runs_once_in_every_worker_before_its_tasks() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .initializer(move || {
            c.fetch_add(1, Ordering::SeqCst);
            INITIALIZED.with(|i| i.set(i.get() + 1));
        })
        .build()
        .unwrap();
    let gate = Gate::new();
    let fs: Vec<_> = (0..3)
        .map(|_| {
            let g = gate.clone();
            pool.submit(move || {
                g.wait();
                INITIALIZED.with(|i| i.get())
            })
            .unwrap()
        })
        .collect();
    // All three running at once: three threads, each of which ran the initializer first.
    // (Opening the gate earlier would let the first thread run all three tasks while the
    // other two threads are still starting, before their initializers ran.)
    eventually("three tasks running at once", || pool.running_tasks() == 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    gate.open();
    for f in &fs {
        assert_eq!(*f.result_timeout(LIMIT).unwrap(), 1);
    }
    for _ in 0..10 {
        pool.submit(|| ()).unwrap().result_timeout(LIMIT).unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

fn assert_broken_by(err: &cfutures_core::Error, cause: &str) {
    let cfutures_core::Error::Broken(b) = err else {
        panic!("expected Broken, got {err:?}");
    };
    assert!(b.message().contains("BrokenThreadPool"), "{b}");
    assert!(
        b.cause().expect("a cause").to_string().contains(cause),
        "{b}"
    );
}

fn no_database() {
    panic!("no database")
}

#[test]
fn a_panicking_initializer_breaks_the_pool() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(no_database)
        .build()
        .unwrap();
    let fs: Vec<_> = (0..5).map(|i| pool.submit(move || i).unwrap()).collect();
    for f in &fs {
        assert_broken_by(&f.result_timeout(LIMIT).unwrap_err(), "no database");
    }
    let e = pool.submit(|| 1).unwrap_err();
    assert!(e.is_broken(), "{e:?}");
    assert!(e.to_string().contains("BrokenThreadPool"));
    assert!(pool.is_shutdown());
    pool.shutdown(true, false); // still fine
    assert!(pool.submit(|| 1).unwrap_err().is_broken());
}

#[test]
fn an_initializer_returning_err_breaks_the_pool() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .initializer(|| -> Result<(), std::io::Error> {
            Err(std::io::Error::other("config missing"))
        })
        .build()
        .unwrap();
    let f = pool.submit(|| 1).unwrap();
    assert_broken_by(&f.result_timeout(LIMIT).unwrap_err(), "config missing");
    assert!(pool.submit(|| 1).unwrap_err().is_broken());
}

#[test]
fn tasks_already_running_complete_when_another_initializer_fails() {
    let first = Arc::new(AtomicUsize::new(0));
    let f2 = first.clone();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        // The first thread initializes fine, the second fails.
        .initializer(move || -> Result<(), String> {
            if f2.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(())
            } else {
                Err("second thread refused".into())
            }
        })
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (tx, started) = mpsc::channel();
    let running = pool
        .submit(move || {
            tx.send(()).unwrap();
            g.wait();
            "finished"
        })
        .unwrap();
    started.recv_timeout(LIMIT).unwrap();
    // No idle thread: this starts the second thread, whose initializer fails.
    let queued = pool.submit(|| "never").unwrap();
    assert_broken_by(
        &queued.result_timeout(LIMIT).unwrap_err(),
        "second thread refused",
    );
    gate.open();
    assert_eq!(*running.result_timeout(LIMIT).unwrap(), "finished");
    assert!(pool.submit(|| "x").unwrap_err().is_broken());
}
