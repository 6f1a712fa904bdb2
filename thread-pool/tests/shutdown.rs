//! `shutdown(wait, cancel_futures)` and `Drop`.

mod util;

use cfutures_core::{Completion, State, Waitable};
use cfutures_thread_pool::ThreadPoolExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use util::{Gate, LIMIT};

#[test]
fn submit_after_shutdown_is_refused() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    pool.submit(|| ()).unwrap();
    pool.shutdown(true, false);
    let e = pool.submit(|| 2u32.pow(5)).unwrap_err();
    assert!(e.is_shutdown());
    assert_eq!(e.to_string(), "cannot schedule new futures after shutdown");
    assert!(pool.is_shutdown());
}

#[test]
fn shutdown_is_idempotent_in_every_combination() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let f = pool.submit(|| 1).unwrap();
    pool.shutdown(false, false);
    pool.shutdown(true, false);
    pool.shutdown(false, true);
    pool.shutdown(true, true);
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 1);
    assert_eq!(pool.live_threads(), 0);
}

#[test]
fn shutdown_wait_runs_every_queued_task_and_joins_the_threads() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let fs: Vec<_> = (0..50)
        .map(|_| {
            let d = done.clone();
            pool.submit(move || {
                std::thread::yield_now();
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        })
        .collect();
    pool.shutdown(true, false);
    assert_eq!(done.load(Ordering::SeqCst), 50);
    assert!(fs.iter().all(|f| f.state() == State::Finished));
    assert_eq!(pool.live_threads(), 0);
}

#[test]
fn shutdown_without_wait_still_completes_the_work() {
    let pool = ThreadPoolExecutor::new(3).unwrap();
    let gate = Gate::new();
    let fs: Vec<_> = (0..10)
        .map(|i| {
            let g = gate.clone();
            pool.submit(move || {
                g.wait();
                i
            })
            .unwrap()
        })
        .collect();
    pool.shutdown(false, false); // returns at once: the tasks are still held
    assert!(pool.submit(|| 0).unwrap_err().is_shutdown());
    gate.open();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(LIMIT).unwrap(), i);
    }
}

#[test]
fn cancel_futures_without_wait_leaves_only_started_tasks_to_finish() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let ran = Arc::new(AtomicUsize::new(0));
    let fs: Vec<_> = (0..10)
        .map(|_| {
            let (g, tx, ran) = (gate.clone(), started_tx.clone(), ran.clone());
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
                g.wait();
            })
            .unwrap()
        })
        .collect();
    // Both workers hold a task; the other eight are queued.
    started.recv_timeout(LIMIT).unwrap();
    started.recv_timeout(LIMIT).unwrap();
    assert_eq!(pool.queued_tasks(), 8);

    pool.shutdown(false, true);
    let (running, cancelled): (Vec<_>, Vec<_>) = fs.iter().partition(|f| f.running());
    assert_eq!(running.len(), 2);
    assert_eq!(cancelled.len(), 8);
    for f in &cancelled {
        assert!(f.cancelled());
        // Better than Python: the cancellation is *notified*, so `wait` counts it as done.
        assert_eq!(f.completion(), Some(Completion::Cancelled));
        assert!(f.result_timeout(LIMIT).unwrap_err().is_cancelled());
    }
    assert_eq!(pool.queued_tasks(), 0);

    gate.open();
    for f in &running {
        f.result_timeout(LIMIT).unwrap();
    }
    pool.shutdown(true, false);
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn cancel_futures_runs_done_callbacks_in_the_caller() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (tx, started) = mpsc::channel();
    let busy = pool
        .submit(move || {
            tx.send(()).unwrap();
            g.wait()
        })
        .unwrap();
    started.recv_timeout(LIMIT).unwrap();
    let queued = pool.submit(|| ()).unwrap();
    let me = std::thread::current().id();
    let (cb_tx, cb_rx) = mpsc::channel();
    queued.add_done_callback(move |f| {
        cb_tx
            .send((f.cancelled(), std::thread::current().id()))
            .unwrap();
    });
    pool.shutdown(false, true);
    assert_eq!(cb_rx.recv_timeout(LIMIT).unwrap(), (true, me));
    gate.open();
    busy.result_timeout(LIMIT).unwrap();
}

#[test]
fn a_task_that_shuts_down_its_own_pool_returns() {
    for wait in [false, true] {
        for cancel in [false, true] {
            let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
            let p = pool.clone();
            let f = pool
                .submit(move || {
                    p.shutdown(wait, cancel);
                    p.is_shutdown()
                })
                .unwrap();
            assert!(*f.result_timeout(LIMIT).unwrap());
            assert!(pool.submit(|| ()).unwrap_err().is_shutdown());
        }
    }
}

#[test]
fn shutdown_wait_inside_a_task_waits_for_the_queued_tasks_even_with_one_worker() {
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let p = pool.clone();
    let gate = Gate::new();
    let g = gate.clone();
    let done = Arc::new(AtomicUsize::new(0));
    let outer = pool
        .submit(move || {
            g.wait(); // until the test has queued three more
            p.shutdown(true, false);
            p.queued_tasks()
        })
        .unwrap();
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let d = done.clone();
            pool.submit(move || {
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        })
        .collect();
    let d = done.clone();
    gate.open();
    // The outer task returned only after the three queued tasks ran (on a compensating
    // thread: the only worker was busy waiting).
    assert_eq!(*outer.result_timeout(LIMIT).unwrap(), 0);
    assert_eq!(d.load(Ordering::SeqCst), 3);
    assert!(queued.iter().all(|f| f.done()));
}

#[test]
fn two_tasks_shutting_down_their_pool_with_wait_both_return() {
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let fs: Vec<_> = (0..2)
        .map(|_| {
            let (p, b) = (pool.clone(), barrier.clone());
            pool.submit(move || {
                b.wait();
                p.shutdown(true, false);
            })
            .unwrap()
        })
        .collect();
    for f in fs {
        f.result_timeout(LIMIT).unwrap();
    }
}

#[test]
fn shutdown_from_another_thread_while_tasks_run() {
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let fs: Vec<_> = (0..100u32)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    let p = pool.clone();
    std::thread::spawn(move || p.shutdown(true, false))
        .join()
        .unwrap();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(LIMIT).unwrap(), i as u32);
    }
}

#[test]
fn drop_waits_for_queued_and_running_work() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let d = done.clone();
        pool.submit(move || {
            std::thread::yield_now();
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    drop(pool);
    assert_eq!(done.load(Ordering::SeqCst), 50);
}

#[test]
fn dropping_the_last_handle_inside_a_task_does_not_deadlock() {
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    pool.submit(move || {
        let p = p; // moved in; dropped at the end of the task
        tx.send(p.max_workers()).unwrap();
    })
    .unwrap();
    drop(pool); // the task may hold the last handle
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 2);
}

#[test]
fn concurrent_submits_and_shutdown_lose_no_task() {
    for _ in 0..20 {
        let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
        let submitters: Vec<_> = (0..2)
            .map(|_| {
                let p = pool.clone();
                std::thread::spawn(move || {
                    let mut accepted = Vec::new();
                    while let Ok(f) = p.submit(|| 1u8) {
                        accepted.push(f);
                    }
                    accepted
                })
            })
            .collect();
        std::thread::yield_now();
        pool.shutdown(true, false);
        for s in submitters {
            // Every accepted task ran before `shutdown(wait)` returned.
            for f in s.join().unwrap() {
                assert_eq!(f.state(), State::Finished);
            }
        }
    }
}

/// Submits refused after the shutdown began still count themselves in flight for an
/// instant. A worker that checked the exit condition in such an instant, after the
/// shutdown had woken everyone, used to park for good, and `shutdown(wait)` never returned
/// (found by Miri's scheduler on the test above). Threads that keep submitting after the
/// refusals hold that instant open most of the time.
#[test]
fn refused_submits_racing_shutdown_wait_do_not_strand_a_worker() {
    for _ in 0..200 {
        let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
        // Both workers started and idle.
        let warm: Vec<_> = (0..2).map(|_| pool.submit(|| ()).unwrap()).collect();
        for f in &warm {
            f.result_timeout(LIMIT).unwrap();
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusers: Vec<_> = (0..2)
            .map(|_| {
                let (p, stop) = (pool.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = p.submit(|| ());
                    }
                })
            })
            .collect();
        let (tx, rx) = mpsc::channel();
        let p = pool.clone();
        let shutter = std::thread::spawn(move || {
            p.shutdown(true, false);
            tx.send(()).unwrap();
        });
        let done = rx.recv_timeout(LIMIT);
        stop.store(true, Ordering::Relaxed);
        for r in refusers {
            r.join().unwrap();
        }
        assert!(
            done.is_ok(),
            "shutdown(wait) hung while submits were being refused"
        );
        shutter.join().unwrap();
    }
}

/// Panics when dropped: a task capturing one panics in its drop if it never runs.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("planned panic in a captured value's drop");
        }
    }
}

#[test]
fn a_cancelled_task_whose_drop_panics_harms_neither_worker_nor_shutdown() {
    // One worker, held; two tasks queued behind it capture a value whose drop panics. One
    // is cancelled through its future (the worker drops it when it comes up), the other by
    // shutdown(cancel_futures) (dropped by the thread shutting down). Neither panic may
    // kill the worker, escape `shutdown`, or leave `shutdown(wait)` waiting forever.
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let (started_tx, started) = mpsc::channel();
    let gate = Gate::new();
    let g = gate.clone();
    let first = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            g.wait();
        })
        .unwrap();
    started.recv_timeout(LIMIT).unwrap();
    let (a, b) = (PanicOnDrop, PanicOnDrop);
    let by_future = pool.submit(move || drop(a)).unwrap();
    let by_shutdown = pool.submit(move || drop(b)).unwrap();
    assert!(by_future.cancel());
    let (done_tx, done) = mpsc::channel();
    let p = pool.clone();
    std::thread::spawn(move || {
        p.shutdown(false, true);
        gate.open();
        p.shutdown(true, false);
        done_tx.send(()).unwrap();
    });
    done.recv_timeout(LIMIT)
        .expect("shutdown returned despite the panicking drops");
    assert!(first.result_timeout(LIMIT).is_ok());
    assert!(by_future.cancelled() && by_shutdown.cancelled());
    assert_eq!(pool.live_threads(), 0);
}
