//! The `Future` / `Promise` state machine: every state and transition of SEMANTICS.md §2, as
//! DESIGN.md maps it (`Pending → Running → Finished`, `Pending → Cancelled`, and the
//! cancelled-but-not-noticed state `wait` relies on).
//!
//! Callbacks are in `callbacks.rs`, the waiter hook in `waiter.rs`, errors in `errors.rs`,
//! executors and tasks in `executor.rs`. Every blocking call here is bounded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cfutures_core::{pending, Completion, Error, Future, Promise, State, TaskError, Waitable};

/// Long enough never to fire on a healthy run; short enough that a bug fails, not hangs.
const LONG: Duration = Duration::from_secs(10);

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

#[test]
fn future_is_send_sync_clone_and_promise_is_send() {
    fn assert_send<T: Send>() {}
    assert_send_sync_clone::<Future<u32>>();
    assert_send_sync_clone::<Future<String>>();
    assert_send_sync_clone::<Future<Vec<Arc<str>>>>();
    assert_send::<Promise<String>>();
    assert_send_sync_clone::<Error>();
    assert_send_sync_clone::<TaskError>();
}

// ---------------------------------------------------------------------------------------
// Queries in each state

#[test]
fn pending_state() {
    let (p, f) = pending::<u32>();
    assert_eq!(f.state(), State::Pending);
    assert_eq!(p.state(), State::Pending);
    assert!(!f.cancelled());
    assert!(!f.running());
    assert!(!f.done());
    assert!(!p.is_cancelled());
    assert_eq!(f.completion(), None);
    assert!(!f.wait_timeout(Duration::ZERO));
}

#[test]
fn running_state() {
    let (p, f) = pending::<u32>();
    assert!(p.set_running_or_notify_cancel());
    assert_eq!(f.state(), State::Running);
    assert!(f.running());
    assert!(!f.done());
    assert!(!f.cancelled());
    assert_eq!(f.completion(), None);
    assert!(f.result_timeout(Duration::ZERO).unwrap_err().is_timeout());
    drop(p);
}

#[test]
fn finished_with_value_state() {
    let (p, f) = pending::<u32>();
    assert!(p.set_running_or_notify_cancel());
    p.set_result(5).unwrap();
    assert_eq!(f.state(), State::Finished);
    assert!(f.done());
    assert!(!f.running());
    assert!(!f.cancelled());
    assert_eq!(f.completion(), Some(Completion::Succeeded));
    assert_eq!(*f.result().unwrap(), 5);
    assert!(f.exception().unwrap().is_none());
}

#[test]
fn finished_with_exception_state() {
    let (p, f) = pending::<u32>();
    assert!(p.set_running_or_notify_cancel());
    p.set_exception(TaskError::msg("boom")).unwrap();
    assert_eq!(f.state(), State::Finished);
    assert!(f.done());
    assert!(!f.cancelled());
    assert_eq!(f.completion(), Some(Completion::Failed));
    let err = f.result().unwrap_err();
    assert!(err.is_failed());
    assert_eq!(err.task_error().unwrap().to_string(), "boom");
    assert_eq!(f.exception().unwrap().unwrap().to_string(), "boom");
}

#[test]
fn cancelled_not_notified_state() {
    let (p, f) = pending::<u32>();
    assert!(f.cancel());
    assert_eq!(f.state(), State::Cancelled);
    assert!(p.is_cancelled());
    assert!(f.cancelled());
    assert!(f.done());
    assert!(!f.running());
    // done() but not complete for `wait`: the executor has not noticed yet.
    assert_eq!(f.completion(), None);
    assert!(f.wait_timeout(Duration::ZERO));
    assert!(f.result().unwrap_err().is_cancelled());
    assert!(f.exception().unwrap_err().is_cancelled());
    drop(p);
}

#[test]
fn cancelled_and_notified_state() {
    let (p, f) = pending::<u32>();
    assert!(f.cancel());
    assert!(!p.set_running_or_notify_cancel());
    assert_eq!(f.state(), State::Cancelled);
    assert!(f.cancelled() && f.done());
    assert_eq!(f.completion(), Some(Completion::Cancelled));
    assert!(f.result_timeout(Duration::ZERO).unwrap_err().is_cancelled());
    assert!(f
        .exception_timeout(Duration::ZERO)
        .unwrap_err()
        .is_cancelled());
}

// ---------------------------------------------------------------------------------------
// cancel()

#[test]
fn cancel_pending_succeeds() {
    let (_p, f) = pending::<u32>();
    assert!(f.cancel());
    assert!(f.cancelled());
}

#[test]
fn cancel_already_cancelled_returns_true_without_rerunning_callbacks() {
    let (p, f) = pending::<u32>();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    f.add_done_callback(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(f.cancel());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(f.cancel());
    assert!(f.clone().cancel());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Also after the executor noticed.
    assert!(!p.set_running_or_notify_cancel());
    assert!(f.cancel());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    drop(p);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn cancel_running_fails() {
    let (p, f) = pending::<u32>();
    assert!(p.set_running_or_notify_cancel());
    assert!(!f.cancel());
    assert_eq!(f.state(), State::Running);
    p.set_result(1).unwrap();
    assert_eq!(*f.result().unwrap(), 1);
}

#[test]
fn cancel_finished_fails() {
    let (p, f) = pending::<u32>();
    p.set_result(1).unwrap();
    assert!(!f.cancel());
    assert_eq!(*f.result().unwrap(), 1);

    let (p, f) = pending::<u32>();
    p.set_exception(TaskError::msg("x")).unwrap();
    assert!(!f.cancel());
    assert!(f.result().unwrap_err().is_failed());

    let (p, f) = pending::<u32>();
    drop(p);
    assert!(!f.cancel());
    assert!(f.result().unwrap_err().is_broken());
}

#[test]
fn cancel_wakes_blocked_result_callers() {
    let (p, f) = pending::<u32>();
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let f = f.clone();
            let tx = tx.clone();
            thread::spawn(move || {
                tx.send(()).unwrap();
                let r = f.result_timeout(LONG).copied();
                r.unwrap_err()
            })
        })
        .collect();
    for _ in 0..3 {
        rx.recv_timeout(LONG).unwrap();
    }
    assert!(f.cancel());
    for w in waiters {
        assert!(w.join().unwrap().is_cancelled());
    }
    drop(p);
}

// ---------------------------------------------------------------------------------------
// set_running_or_notify_cancel()

#[test]
fn set_running_from_pending() {
    let (p, f) = pending::<u32>();
    assert!(p.set_running_or_notify_cancel());
    assert!(f.running());
}

#[test]
fn set_running_from_cancelled_notifies() {
    let (p, f) = pending::<u32>();
    f.cancel();
    assert_eq!(f.completion(), None);
    assert!(!p.set_running_or_notify_cancel());
    assert_eq!(f.completion(), Some(Completion::Cancelled));
    assert!(f.cancelled());
}

#[test]
fn set_running_twice_is_refused_and_changes_nothing() {
    let (p, f) = pending::<u32>();
    assert!(p.set_running_or_notify_cancel());
    assert!(!p.set_running_or_notify_cancel());
    assert_eq!(f.state(), State::Running);
    p.set_result(3).unwrap();
    assert_eq!(*f.result().unwrap(), 3);
}

#[test]
fn set_running_after_notified_is_refused_and_changes_nothing() {
    let (p, f) = pending::<u32>();
    f.cancel();
    assert!(!p.set_running_or_notify_cancel());
    assert!(!p.set_running_or_notify_cancel());
    assert_eq!(f.state(), State::Cancelled);
    assert_eq!(f.completion(), Some(Completion::Cancelled));
}

// ---------------------------------------------------------------------------------------
// set_result / set_exception / set_broken / set_outcome in every state

/// A value that counts its drops, to check a refused value is dropped, not leaked.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn set_result_from_pending_and_running() {
    let (p, f) = pending::<&str>();
    p.set_result("direct").unwrap();
    assert_eq!(*f.result().unwrap(), "direct");

    let (p, f) = pending::<&str>();
    assert!(p.set_running_or_notify_cancel());
    p.set_result("ran").unwrap();
    assert_eq!(*f.result().unwrap(), "ran");
}

#[test]
fn set_exception_and_broken_and_outcome_from_pending_and_running() {
    for run_first in [false, true] {
        let (p, f) = pending::<u8>();
        if run_first {
            assert!(p.set_running_or_notify_cancel());
        }
        p.set_exception(TaskError::msg("e")).unwrap();
        assert!(f.exception().unwrap().is_some());

        let (p, f) = pending::<u8>();
        if run_first {
            assert!(p.set_running_or_notify_cancel());
        }
        p.set_broken(cfutures_core::Broken::new("pool broke"))
            .unwrap();
        let e = f.result().unwrap_err();
        assert!(e.is_broken());
        assert_eq!(e.to_string(), "pool broke");
        // A broken future has no task exception: the task never produced an outcome.
        assert!(f.exception().unwrap_err().is_broken());

        let (p, f) = pending::<u8>();
        if run_first {
            assert!(p.set_running_or_notify_cancel());
        }
        p.set_outcome(Ok(9)).unwrap();
        assert_eq!(*f.result().unwrap(), 9);

        let (p, f) = pending::<u8>();
        if run_first {
            assert!(p.set_running_or_notify_cancel());
        }
        p.set_outcome(Err(TaskError::msg("bad"))).unwrap();
        assert_eq!(f.exception().unwrap().unwrap().to_string(), "bad");
    }
}

#[test]
fn setting_a_cancelled_future_is_invalid_state() {
    // Not noticed (CANCELLED) and noticed (CANCELLED_AND_NOTIFIED).
    for notice in [false, true] {
        let raw = if notice {
            "CANCELLED_AND_NOTIFIED"
        } else {
            "CANCELLED"
        };
        type Setter = fn(Promise<u8>) -> Result<(), cfutures_core::InvalidState>;
        let setters: [(&str, Setter); 4] = [
            ("set_result", |p| p.set_result(1)),
            ("set_exception", |p| p.set_exception(TaskError::msg("x"))),
            ("set_broken", |p| {
                p.set_broken(cfutures_core::Broken::new("b"))
            }),
            ("set_outcome", |p| p.set_outcome(Ok(2))),
        ];
        for (name, set) in setters {
            let (p, f) = pending::<u8>();
            assert!(f.cancel());
            if notice {
                assert!(!p.set_running_or_notify_cancel());
            }
            let err = set(p).expect_err(name);
            assert_eq!(
                err.message(),
                format!("{raw}: cannot set the outcome of a cancelled future"),
                "{name}"
            );
            assert_eq!(
                err.to_string(),
                format!("invalid state: {raw}: cannot set the outcome of a cancelled future")
            );
            // Never a silent overwrite: still cancelled, and now noticed (the promise is gone).
            assert!(f.result().unwrap_err().is_cancelled(), "{name}");
            assert_eq!(f.completion(), Some(Completion::Cancelled), "{name}");
            assert!(Error::from(err).is_invalid_state());
        }
    }
}

#[test]
fn refused_value_is_dropped() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (p, f) = pending::<Counted>();
    f.cancel();
    assert!(p.set_result(Counted(drops.clone())).is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn value_dropped_once_with_last_handle() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (p, f) = pending::<Counted>();
    let g = f.clone();
    p.set_result(Counted(drops.clone())).unwrap();
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(g);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

// Setting a finished future twice cannot be written: setting consumes the promise. The
// `compile_fail` doctest on `Promise` shows it.

// ---------------------------------------------------------------------------------------
// result / result_timeout / exception / exception_timeout

#[test]
fn zero_timeouts_do_not_wait() {
    let (p, f) = pending::<u32>();
    assert!(f.result_timeout(Duration::ZERO).unwrap_err().is_timeout());
    assert!(f
        .exception_timeout(Duration::ZERO)
        .unwrap_err()
        .is_timeout());
    assert!(!f.wait_timeout(Duration::ZERO));
    assert!(f
        .result_deadline(Some(Instant::now()))
        .unwrap_err()
        .is_timeout());
    // A deadline in the past is the same.
    let past = Instant::now();
    thread::sleep(Duration::from_millis(1));
    assert!(f.exception_deadline(Some(past)).unwrap_err().is_timeout());
    // Zero timeouts on done futures give the outcome.
    p.set_result(4).unwrap();
    assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), 4);
    assert!(f.exception_timeout(Duration::ZERO).unwrap().is_none());
    assert!(f.wait_timeout(Duration::ZERO));
}

#[test]
fn timeouts_expire_then_the_future_still_completes() {
    let (p, f) = pending::<u32>();
    let start = Instant::now();
    let short = Duration::from_millis(30);
    assert!(f.result_timeout(short).unwrap_err().is_timeout());
    assert!(start.elapsed() >= short, "returned before the timeout");
    assert!(f.exception_timeout(short).unwrap_err().is_timeout());
    assert!(!f.wait_timeout(short));
    assert!(!f.done());
    p.set_result(8).unwrap();
    assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), 8);
}

#[test]
fn huge_timeout_means_no_deadline() {
    let (p, f) = pending::<u32>();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        p.set_result(1).unwrap();
    });
    // Overflows `Instant`: treated as "wait forever" — released by the result.
    assert_eq!(*f.result_timeout(Duration::MAX).unwrap(), 1);
    t.join().unwrap();
}

#[test]
fn result_waits_across_threads() {
    for delay_ms in [0, 1, 20] {
        let (p, f) = pending::<String>();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(delay_ms));
            assert!(p.set_running_or_notify_cancel());
            p.set_result(format!("after {delay_ms}")).unwrap();
        });
        assert_eq!(
            f.result_timeout(LONG).unwrap(),
            &format!("after {delay_ms}")
        );
        t.join().unwrap();
    }
}

#[test]
fn exception_waits_across_threads() {
    let (p, f) = pending::<u8>();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        p.set_exception(TaskError::msg("late")).unwrap();
    });
    let e = f.exception_timeout(LONG).unwrap().unwrap();
    assert_eq!(e.to_string(), "late");
    t.join().unwrap();
}

#[test]
fn many_waiters_all_wake() {
    let (p, f) = pending::<u64>();
    let barrier = Arc::new(Barrier::new(9));
    let ts: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            let b = barrier.clone();
            thread::spawn(move || {
                b.wait();
                *f.result_timeout(LONG).unwrap()
            })
        })
        .collect();
    barrier.wait();
    thread::sleep(Duration::from_millis(5));
    p.set_result(77).unwrap();
    for t in ts {
        assert_eq!(t.join().unwrap(), 77);
    }
}

#[test]
fn result_reference_is_stable_and_shared() {
    let (p, f) = pending::<Vec<u8>>();
    p.set_result(vec![1, 2, 3]).unwrap();
    let g = f.clone();
    let a: *const Vec<u8> = f.result().unwrap();
    let b: *const Vec<u8> = g.result().unwrap();
    assert_eq!(a, b, "the value is written once and never moved");
}

#[test]
fn failure_is_the_same_error_every_time() {
    let (p, f) = pending::<u8>();
    p.set_exception(TaskError::new(std::io::Error::other("disk")))
        .unwrap();
    let e1 = f.result().unwrap_err();
    let e2 = f.result().unwrap_err();
    let x1 = f.exception().unwrap().unwrap();
    let io1 = e1
        .task_error()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    let io2 = e2
        .task_error()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    let io3 = x1.downcast_ref::<std::io::Error>().unwrap();
    // The same object, as Python re-raises the same exception instance.
    assert!(std::ptr::eq(io1, io2) && std::ptr::eq(io2, io3));
}

// ---------------------------------------------------------------------------------------
// Dropped promises

#[test]
fn dropped_pending_promise_breaks_the_future() {
    let (p, f) = pending::<u8>();
    drop(p);
    assert_eq!(f.state(), State::Finished);
    assert_eq!(f.completion(), Some(Completion::Failed));
    let e = f.result().unwrap_err();
    assert!(e.is_broken());
    assert!(e.to_string().contains("promise was dropped"), "{e}");
}

#[test]
fn dropped_running_promise_releases_a_blocked_waiter() {
    let (p, f) = pending::<u8>();
    assert!(p.set_running_or_notify_cancel());
    let t = thread::spawn(move || f.result_timeout(LONG).copied());
    thread::sleep(Duration::from_millis(10));
    drop(p);
    assert!(t.join().unwrap().unwrap_err().is_broken());
}

#[test]
fn dropped_promise_of_a_cancelled_future_notifies_the_cancellation() {
    let (p, f) = pending::<u8>();
    assert!(f.cancel());
    assert_eq!(f.completion(), None);
    drop(p);
    assert_eq!(f.completion(), Some(Completion::Cancelled));
    assert!(f.result().unwrap_err().is_cancelled());
}

#[test]
fn dropped_promise_racing_cancel_always_ends_complete_for_wait() {
    // Whatever wins, the promise is gone, so `wait` must see the future complete.
    for _ in 0..500 {
        let (p, f) = pending::<u8>();
        let g = f.clone();
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait();
            g.cancel()
        });
        b.wait();
        drop(p);
        let cancelled = t.join().unwrap();
        let c = f.completion();
        if cancelled {
            assert_eq!(c, Some(Completion::Cancelled));
        } else {
            assert_eq!(c, Some(Completion::Failed));
        }
    }
}

// ---------------------------------------------------------------------------------------
// into_result / try_into_result

#[derive(Debug, PartialEq)]
struct NoClone(String);

#[test]
fn into_result_moves_the_value_out_without_clone() {
    let (p, f) = pending::<NoClone>();
    p.set_result(NoClone("mine".into())).unwrap();
    assert_eq!(f.into_result().unwrap(), NoClone("mine".into()));
}

#[test]
fn into_result_waits() {
    let (p, f) = pending::<NoClone>();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        p.set_result(NoClone("late".into())).unwrap();
    });
    assert_eq!(f.into_result().unwrap(), NoClone("late".into()));
    t.join().unwrap();
}

#[test]
fn into_result_with_another_handle_is_invalid_state() {
    let (p, f) = pending::<NoClone>();
    p.set_result(NoClone("x".into())).unwrap();
    let g = f.clone();
    let e = f.into_result().unwrap_err();
    assert!(e.is_invalid_state(), "{e}");
    // The other handle still reads it.
    assert_eq!(g.result().unwrap().0, "x");
    assert_eq!(g.into_result().unwrap().0, "x");
}

#[test]
fn try_into_result_gives_the_handle_back_when_shared() {
    let (p, f) = pending::<NoClone>();
    let g = f.clone();
    p.set_result(NoClone("y".into())).unwrap();
    let f = f.try_into_result().expect_err("shared");
    drop(g);
    let v = f.try_into_result().expect("unique").unwrap();
    assert_eq!(v, NoClone("y".into()));
}

#[test]
fn into_result_of_failed_cancelled_and_broken() {
    let (p, f) = pending::<NoClone>();
    p.set_exception(TaskError::msg("nope")).unwrap();
    assert!(f.into_result().unwrap_err().is_failed());

    let (p, f) = pending::<NoClone>();
    f.cancel();
    assert!(f.into_result().unwrap_err().is_cancelled());
    drop(p);

    let (p, f) = pending::<NoClone>();
    drop(p);
    assert!(f.into_result().unwrap_err().is_broken());
}

#[test]
fn into_result_waits_for_the_promise_to_finish_its_callbacks() {
    // The result is visible before the completing thread has run the callbacks and let go
    // of the shared state; `into_result` must wait for it, not report "shared".
    for _ in 0..50 {
        let (p, f) = pending::<NoClone>();
        f.add_done_callback(|_| thread::sleep(Duration::from_millis(1)));
        let t = thread::spawn(move || p.set_result(NoClone("cb".into())).unwrap());
        assert_eq!(f.into_result().unwrap(), NoClone("cb".into()));
        t.join().unwrap();
    }
}

#[test]
fn try_into_result_inside_its_own_callback_does_not_deadlock() {
    let (p, f) = pending::<NoClone>();
    let (tx, rx) = mpsc::channel();
    f.add_done_callback(move |f| {
        // The only counted handle is this clone, but the promise is running us: the value
        // cannot be moved out yet, and waiting for it would deadlock.
        let r = f.clone().try_into_result();
        tx.send(r.is_err()).unwrap();
    });
    drop(f);
    let t = thread::spawn(move || p.set_result(NoClone("z".into())).unwrap());
    assert!(rx.recv_timeout(LONG).expect("callback finished"));
    t.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// Identity, Debug, constructors, Promise::run

#[test]
// Hashing is by identity, which interior mutability never changes.
#[allow(clippy::mutable_key_type)]
fn handles_compare_and_hash_by_identity() {
    let (_p1, f1) = pending::<u8>();
    let (_p2, f2) = pending::<u8>();
    let f1b = f1.clone();
    assert_eq!(f1, f1b);
    assert_ne!(f1, f2);
    assert_eq!(f1.id(), f1b.id());
    assert_ne!(f1.id(), f2.id());
    let set: HashSet<_> = [f1.clone(), f1b, f2.clone()].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert_eq!(f1.id().as_usize(), f1.id().as_usize());
}

#[test]
fn debug_shows_state_and_outcome() {
    let (p, f) = pending::<u8>();
    let d = format!("{f:?}");
    assert!(d.contains("Pending"), "{d}");
    assert!(format!("{p:?}").contains("Promise"));
    p.set_result(1).unwrap();
    let d = format!("{f:?}");
    assert!(
        d.contains("Finished") && d.contains("returned") && d.contains("u8"),
        "{d}"
    );
    let f = Future::<u8>::failed(TaskError::msg("kaput"));
    let d = format!("{f:?}");
    assert!(d.contains("raised") && d.contains("kaput"), "{d}");
}

#[test]
fn ready_and_failed_constructors() {
    let f = Future::ready(3u8);
    assert!(f.done());
    assert_eq!(*f.result().unwrap(), 3);
    let f = Future::<u8>::failed(TaskError::msg("f"));
    assert!(f.done());
    assert_eq!(f.exception().unwrap().unwrap().to_string(), "f");
    let p: Promise<u8> = Promise::default();
    let f = p.future();
    assert_eq!(f, p.future());
    p.set_result(1).unwrap();
    assert_eq!(*f.result().unwrap(), 1);
}

#[test]
fn promise_run_runs_catches_panics_and_skips_cancelled() {
    let (p, f) = pending::<u8>();
    assert!(p.run(|| 5u8));
    assert_eq!(*f.result().unwrap(), 5);

    let (p, f) = pending::<u8>();
    assert!(p.run(|| -> u8 { panic!("task blew up") }));
    let e = f.exception().unwrap().unwrap();
    assert!(e.is_panic());
    assert_eq!(e.panic_message(), Some("task blew up"));

    let (p, f) = pending::<u8>();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    f.cancel();
    assert!(!p.run(move || {
        r.fetch_add(1, Ordering::SeqCst);
        1u8
    }));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(f.completion(), Some(Completion::Cancelled));
}

// ---------------------------------------------------------------------------------------
// Races (bounded loops; the proptest and loom suites go further)

#[test]
fn cancel_vs_set_running_exactly_one_wins() {
    for _ in 0..1000 {
        let (p, f) = pending::<u8>();
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait();
            f.cancel()
        });
        b.wait();
        let ran = p.set_running_or_notify_cancel();
        let cancelled = t.join().unwrap();
        assert!(ran != cancelled, "ran={ran} cancelled={cancelled}");
        let fut = p.future();
        if ran {
            assert_eq!(fut.state(), State::Running);
            p.set_result(1).unwrap();
        } else {
            assert_eq!(fut.completion(), Some(Completion::Cancelled));
        }
    }
}

#[test]
fn cancel_vs_set_result() {
    for _ in 0..1000 {
        let (p, f) = pending::<u8>();
        let g = f.clone();
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait();
            g.cancel()
        });
        b.wait();
        let set = p.set_result(9).is_ok();
        let cancelled = t.join().unwrap();
        assert!(set != cancelled);
        if set {
            assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), 9);
        } else {
            assert!(f.result_timeout(Duration::ZERO).unwrap_err().is_cancelled());
            assert_eq!(f.completion(), Some(Completion::Cancelled));
        }
    }
}

// ---------------------------------------------------------------------------------------
// set_cancelled: an executor stopping a task that already started

#[test]
fn set_cancelled_ends_a_running_future_as_cancelled_and_notified() {
    let (p, f) = pending::<u8>();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    f.add_done_callback(move |f| {
        assert!(f.cancelled());
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(p.set_running_or_notify_cancel());
    let g = f.clone();
    let waiter = thread::spawn(move || g.result_timeout(LONG).copied());
    thread::sleep(Duration::from_millis(5));
    p.set_cancelled().unwrap();
    assert!(waiter.join().unwrap().unwrap_err().is_cancelled());
    assert_eq!(f.state(), State::Cancelled);
    assert_eq!(f.completion(), Some(Completion::Cancelled));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(f.cancel(), "already cancelled: true");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn set_cancelled_on_a_future_that_is_not_running_is_invalid_state() {
    let (p, f) = pending::<u8>();
    let e = p.set_cancelled().unwrap_err();
    assert!(e.message().starts_with("PENDING:"), "{e}");
    // The promise is gone without a result: broken, never hanging.
    assert!(f.result().unwrap_err().is_broken());

    let (p, f) = pending::<u8>();
    f.cancel();
    let e = p.set_cancelled().unwrap_err();
    assert!(e.message().starts_with("CANCELLED:"), "{e}");
    assert_eq!(f.completion(), Some(Completion::Cancelled));
}

#[test]
fn try_into_result_in_a_nested_callback_does_not_deadlock() {
    // B's callback completes A; A's callback asks for B's value. B's promise is still up
    // this thread's stack (running B's callbacks), so waiting for it would never end.
    let (pa, fa) = pending::<u8>();
    let (pb, fb) = pending::<NoClone>();
    let (tx, rx) = mpsc::channel();
    let fb2 = fb.clone();
    fa.add_done_callback(move |_| {
        // `fb2` is the only counted handle to B by then.
        let r = fb2.try_into_result();
        tx.send(r.is_err()).unwrap();
    });
    let pa = std::sync::Mutex::new(Some(pa));
    fb.add_done_callback(move |_| {
        pa.lock().unwrap().take().unwrap().set_result(1).unwrap();
    });
    drop(fb);
    let t = thread::spawn(move || pb.set_result(NoClone("b".into())).unwrap());
    assert!(rx.recv_timeout(LONG).expect("nested callback finished"));
    t.join().unwrap();
}
