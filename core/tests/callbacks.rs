//! `add_done_callback`: before and after completion, order, exactly once, in which thread,
//! and panicking callbacks (SEMANTICS.md §2.5). Every blocking call here is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use cfutures_core::{pending, Completion, Future, TaskError, Waitable};

const LONG: Duration = Duration::from_secs(10);

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count_into<T>(c: &Arc<AtomicUsize>) -> impl FnOnce(&Future<T>) + Send + 'static {
    let c = c.clone();
    move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn registered_before_done_runs_at_completion_in_the_completing_thread() {
    let (p, f) = pending::<u32>();
    let (tx, rx) = mpsc::channel();
    f.add_done_callback(move |f| {
        // The future is done and its value readable inside the callback.
        tx.send((
            thread::current().id(),
            *f.result_timeout(Duration::ZERO).unwrap(),
        ))
        .unwrap();
    });
    assert!(rx.try_recv().is_err(), "ran before completion");
    let t = thread::spawn(move || {
        assert!(p.set_running_or_notify_cancel());
        p.set_result(11).unwrap();
        thread::current().id()
    });
    let completer = t.join().unwrap();
    let (ran_on, value) = rx.recv_timeout(LONG).unwrap();
    assert_eq!(ran_on, completer);
    assert_eq!(value, 11);
}

#[test]
fn set_result_returns_after_its_callbacks_ran() {
    let (p, f) = pending::<u32>();
    let c = counter();
    f.add_done_callback(count_into(&c));
    f.add_done_callback(count_into(&c));
    p.set_result(1).unwrap();
    assert_eq!(c.load(Ordering::SeqCst), 2);
}

#[test]
fn registered_after_done_runs_at_once_in_the_calling_thread() {
    for make in [
        || Future::ready(1u8),
        || Future::failed(TaskError::msg("x")),
        || {
            let (p, f) = pending::<u8>();
            f.cancel();
            drop(p);
            f
        },
    ] {
        let f = make();
        let ran_on = Arc::new(Mutex::new(None));
        let r = ran_on.clone();
        f.add_done_callback(move |f| {
            assert!(f.done());
            *r.lock().unwrap() = Some(thread::current().id());
        });
        assert_eq!(*ran_on.lock().unwrap(), Some(thread::current().id()));
    }
}

#[test]
fn registered_on_cancelled_not_notified_runs_at_once() {
    // Plain CANCELLED is done for callbacks (unlike for `wait`).
    let (p, f) = pending::<u8>();
    f.cancel();
    let c = counter();
    f.add_done_callback(count_into(&c));
    assert_eq!(c.load(Ordering::SeqCst), 1);
    // Noticing the cancellation does not run it again.
    assert!(!p.set_running_or_notify_cancel());
    drop(p);
    assert_eq!(c.load(Ordering::SeqCst), 1);
}

#[test]
fn callbacks_run_in_registration_order() {
    let (p, f) = pending::<u8>();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..10 {
        let o = order.clone();
        f.add_done_callback(move |_| o.lock().unwrap().push(i));
    }
    p.set_result(0).unwrap();
    assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[test]
fn cancel_runs_callbacks_in_the_cancelling_thread_before_returning() {
    let (p, f) = pending::<u8>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let s = seen.clone();
        f.add_done_callback(move |f| {
            assert!(f.cancelled());
            s.lock().unwrap().push((i, thread::current().id()));
        });
    }
    assert!(f.cancel());
    let me = thread::current().id();
    assert_eq!(*seen.lock().unwrap(), vec![(0, me), (1, me), (2, me)]);
    // Not re-run by a second cancel, by the executor noticing, or by the promise's drop.
    assert!(f.cancel());
    assert!(!p.set_running_or_notify_cancel());
    drop(p);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn callbacks_run_exactly_once_over_every_transition() {
    // Every path to done: value, exception, broken, dropped promise, cancel + notice.
    type Finish = fn(cfutures_core::Promise<u8>, &Future<u8>);
    let finishes: [Finish; 5] = [
        |p, _| p.set_result(1).unwrap(),
        |p, _| p.set_exception(TaskError::msg("e")).unwrap(),
        |p, _| p.set_broken(cfutures_core::Broken::new("b")).unwrap(),
        |p, _| drop(p),
        |p, f| {
            assert!(f.cancel());
            assert!(f.cancel());
            assert!(!p.set_running_or_notify_cancel());
        },
    ];
    for finish in finishes {
        let (p, f) = pending::<u8>();
        let c = counter();
        f.add_done_callback(count_into(&c));
        finish(p, &f);
        f.add_done_callback(count_into(&c));
        assert_eq!(c.load(Ordering::SeqCst), 2);
    }
}

#[test]
fn a_panicking_callback_is_caught_and_the_rest_still_run() {
    let (p, f) = pending::<u32>();
    let c = counter();
    f.add_done_callback(count_into(&c));
    f.add_done_callback(|_| panic!("callback 2 panics"));
    f.add_done_callback(count_into(&c));
    f.add_done_callback(|_| std::panic::panic_any(17u8));
    f.add_done_callback(count_into(&c));
    // The panics do not reach the completing thread, nor the future.
    p.set_result(3).unwrap();
    assert_eq!(c.load(Ordering::SeqCst), 3);
    assert_eq!(*f.result().unwrap(), 3);
    assert_eq!(f.completion(), Some(Completion::Succeeded));
}

#[test]
fn a_panicking_callback_on_a_done_future_is_caught() {
    let f = Future::ready(5u8);
    f.add_done_callback(|_| panic!("immediate callback panics"));
    let c = counter();
    f.add_done_callback(count_into(&c));
    assert_eq!(c.load(Ordering::SeqCst), 1);
    assert_eq!(*f.result().unwrap(), 5);
}

#[test]
fn a_panicking_callback_on_cancel_is_caught() {
    let (_p, f) = pending::<u8>();
    let c = counter();
    f.add_done_callback(|_| panic!("cancel callback panics"));
    f.add_done_callback(count_into(&c));
    assert!(f.cancel());
    assert_eq!(c.load(Ordering::SeqCst), 1);
    assert!(f.cancelled());
}

#[test]
fn a_callback_may_register_callbacks_and_use_the_future() {
    let (p, f) = pending::<u8>();
    let c = counter();
    let c2 = c.clone();
    f.add_done_callback(move |f| {
        // Re-entrant: the future's lock is not held while callbacks run.
        f.add_done_callback(count_into(&c2));
        let _ = f.clone().cancel();
        assert!(f.done());
        let _ = format!("{f:?}");
    });
    p.set_result(1).unwrap();
    assert_eq!(c.load(Ordering::SeqCst), 1);
}

#[test]
fn a_callback_holding_the_future_does_not_leak_it() {
    let drops = counter();
    struct D(Arc<AtomicUsize>);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (p, f) = pending::<D>();
    let g = f.clone();
    // A cycle through the callback list, broken when the callbacks are taken and run.
    f.add_done_callback(move |_| drop(g));
    p.set_result(D(drops.clone())).unwrap();
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn callback_racing_completion_runs_exactly_once() {
    for _ in 0..500 {
        let (p, f) = pending::<u8>();
        let c = counter();
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let g = f.clone();
        let c2 = c.clone();
        let t = thread::spawn(move || {
            b2.wait();
            for _ in 0..4 {
                g.add_done_callback(count_into(&c2));
            }
        });
        b.wait();
        p.set_result(1).unwrap();
        t.join().unwrap();
        assert_eq!(c.load(Ordering::SeqCst), 4);
        assert_eq!(*f.result().unwrap(), 1);
    }
}

#[test]
fn callback_racing_cancel_runs_exactly_once() {
    for _ in 0..500 {
        let (p, f) = pending::<u8>();
        let c = counter();
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let g = f.clone();
        let c2 = c.clone();
        let t = thread::spawn(move || {
            b2.wait();
            g.add_done_callback(count_into(&c2));
        });
        b.wait();
        assert!(f.cancel());
        t.join().unwrap();
        assert_eq!(c.load(Ordering::SeqCst), 1);
        drop(p);
        assert_eq!(c.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn cancel_racing_the_executor_still_runs_callbacks_before_returning() {
    // The executor noticing the cancellation concurrently must not take the callbacks away
    // from the cancelling thread: when `cancel()` returns true, they have run (Python).
    for _ in 0..1000 {
        let (p, f) = pending::<u8>();
        let c = counter();
        for _ in 0..3 {
            f.add_done_callback(count_into(&c));
        }
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let c2 = c.clone();
        let t = thread::spawn(move || {
            b2.wait();
            let won = f.cancel();
            (won, c2.load(Ordering::SeqCst))
        });
        b.wait();
        let ran = p.set_running_or_notify_cancel();
        let (won, seen) = t.join().unwrap();
        if won {
            assert_eq!(seen, 3, "cancel returned before its callbacks ran");
        } else {
            assert!(ran);
            p.set_result(1).unwrap();
        }
        assert_eq!(c.load(Ordering::SeqCst), 3);
    }
}
