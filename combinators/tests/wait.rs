//! `wait`: a port of CPython's `Lib/test/test_concurrent_futures/test_wait.py` (3.14), plus
//! the rules of SEMANTICS.md §4 and property tests.
//!
//! Python's `time.sleep(…)` orderings become latches; its module-level futures in fixed
//! states are in `common`.

#![allow(clippy::mutable_key_type)] // futures hash by identity

mod common;

use std::time::{Duration, Instant};

use cfutures_combinators::{wait, FutureSet, ReturnWhen};
use cfutures_core::{pending, AnyFuture, Future, InlineExecutor, Submit, TaskError};
use common::*;
use proptest::prelude::*;

fn set<T: Clone + Eq + std::hash::Hash>(items: &[&T]) -> FutureSet<T> {
    items.iter().map(|f| (*f).clone()).collect()
}

// test_20369: duplicates collapse.
#[test]
fn duplicates_collapse() {
    let ex = Threads::new(2);
    let f = ex.submit(|| 2).unwrap();
    let r = wait([f.clone(), f.clone()], None, ReturnWhen::AllCompleted);
    assert_eq!(r.done, set(&[&f]));
    assert!(r.not_done.is_empty());
}

#[test]
fn empty_input_returns_empty_sets() {
    let r = wait(Vec::<Future<i32>>::new(), None, ReturnWhen::AllCompleted);
    assert!(r.done.is_empty() && r.not_done.is_empty());
    let r = wait(Vec::<Future<i32>>::new(), None, ReturnWhen::FirstCompleted);
    assert!(r.done.is_empty() && r.not_done.is_empty());
}

// test_first_completed
#[test]
fn first_completed() {
    let ex = Threads::new(2);
    let gate = Latch::new();
    let (cancelled, _p) = cancelled_future();
    let f1 = ex.submit(|| 21 * 2).unwrap();
    let g = gate.clone();
    let f2 = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    let r = wait(
        [cancelled.clone(), f1.clone(), f2.clone()],
        Some(LONG),
        ReturnWhen::FirstCompleted,
    );
    gate.open();
    assert_eq!(r.done, set(&[&f1]));
    assert_eq!(r.not_done, set(&[&cancelled, &f2]));
}

// test_first_completed_some_already_completed
#[test]
fn first_completed_some_already_completed() {
    let ex = Threads::new(1);
    let gate = Latch::new();
    let g = gate.clone();
    let f1 = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    let can = cancelled_and_notified_future();
    let ok = successful_future();
    let r = wait(
        [can.clone(), ok.clone(), f1.clone()],
        Some(LONG),
        ReturnWhen::FirstCompleted,
    );
    gate.open();
    assert_eq!(r.done, set(&[&can, &ok]));
    assert_eq!(r.not_done, set(&[&f1]));
}

// test_first_exception: the future that finished with a value before the failure is done.
#[test]
fn first_exception() {
    let ex = Threads::new(3);
    let gate = Latch::new();
    let f1 = ex.submit(|| 2 * 21).unwrap();
    let first = f1.clone();
    let f2 = ex
        .submit(move || -> i32 {
            assert!(first.wait_timeout(LONG));
            panic!("sleep_and_raise")
        })
        .unwrap();
    let g = gate.clone();
    let f3 = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    let r = wait(
        [f1.clone(), f2.clone(), f3.clone()],
        Some(LONG),
        ReturnWhen::FirstException,
    );
    gate.open();
    assert_eq!(r.done, set(&[&f1, &f2]));
    assert_eq!(r.not_done, set(&[&f3]));
}

// test_first_exception_some_already_complete
#[test]
fn first_exception_some_already_complete() {
    let ex = Threads::new(2);
    let gate = Latch::new();
    let f1 = ex.submit(|| -> i32 { panic!("divmod(21, 0)") }).unwrap();
    let g = gate.clone();
    let f2 = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    let ok = successful_future();
    let (cancelled, _p) = cancelled_future();
    let can = cancelled_and_notified_future();
    let r = wait(
        [
            ok.clone(),
            cancelled.clone(),
            can.clone(),
            f1.clone(),
            f2.clone(),
        ],
        Some(LONG),
        ReturnWhen::FirstException,
    );
    gate.open();
    assert_eq!(r.done, set(&[&ok, &can, &f1]));
    assert_eq!(r.not_done, set(&[&cancelled, &f2]));
}

// test_first_exception_one_already_failed
#[test]
fn first_exception_one_already_failed() {
    let ex = Threads::new(1);
    let gate = Latch::new();
    let g = gate.clone();
    let f1 = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    let exc = exception_future();
    let r = wait(
        [exc.clone(), f1.clone()],
        Some(LONG),
        ReturnWhen::FirstException,
    );
    gate.open();
    assert_eq!(r.done, set(&[&exc]));
    assert_eq!(r.not_done, set(&[&f1]));
}

// FIRST_EXCEPTION with no failure waits for all.
#[test]
fn first_exception_without_failure_waits_for_all() {
    let ex = Threads::new(2);
    let gate = Latch::new();
    let g = gate.clone();
    let slow = ex
        .submit(move || {
            g.wait();
            1
        })
        .unwrap();
    let fast = ex.submit(|| 2).unwrap();
    let opener = {
        let gate = gate.clone();
        let fast = fast.clone();
        std::thread::spawn(move || {
            assert!(fast.wait_timeout(LONG));
            gate.open();
        })
    };
    let r = wait(
        [slow.clone(), fast.clone()],
        Some(LONG),
        ReturnWhen::FirstException,
    );
    opener.join().unwrap();
    assert_eq!(r.done, set(&[&slow, &fast]));
    assert!(r.not_done.is_empty());
}

// test_all_completed
#[test]
fn all_completed() {
    let ex = Threads::new(2);
    let f1 = ex.submit(|| -> i32 { panic!("divmod(2, 0)") }).unwrap();
    let f2 = ex.submit(|| 2 * 21).unwrap();
    let ok = successful_future();
    let can = cancelled_and_notified_future();
    let exc = exception_future();
    let all = [ok.clone(), can.clone(), exc.clone(), f1.clone(), f2.clone()];
    let r = wait(all.clone(), Some(LONG), ReturnWhen::AllCompleted);
    assert_eq!(r.done, all.iter().cloned().collect());
    assert!(r.not_done.is_empty());
}

// test_timeout: a timeout returns what is done; it is not an error.
#[test]
fn timeout_returns_partial() {
    let ex = Threads::new(2);
    let gate = Latch::new();
    let f1 = ex.submit(|| 6 * 7).unwrap();
    let g = gate.clone();
    let f2 = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    assert!(f1.wait_timeout(LONG)); // Python relies on 50 ms being enough; we make sure.
    let (can, exc, ok) = (
        cancelled_and_notified_future(),
        exception_future(),
        successful_future(),
    );
    let r = wait(
        [can.clone(), exc.clone(), ok.clone(), f1.clone(), f2.clone()],
        Some(Duration::from_millis(50)),
        ReturnWhen::AllCompleted,
    );
    gate.open();
    assert_eq!(r.done, set(&[&can, &exc, &ok, &f1]));
    assert_eq!(r.not_done, set(&[&f2]));
}

#[test]
fn zero_timeout_does_not_block() {
    let (f, _p) = pending_future();
    let r = wait([f.clone()], Some(Duration::ZERO), ReturnWhen::AllCompleted);
    assert_eq!(r.not_done, set(&[&f]));
}

// test_pending_calls_race
#[test]
fn pending_calls_race() {
    let ex = Threads::new(4);
    let gate = Latch::new();
    let fs: FutureSet<Future<usize>> = (0..100)
        .map(|i| {
            let g = gate.clone();
            ex.submit(move || {
                g.wait();
                i
            })
            .unwrap()
        })
        .collect();
    gate.open();
    let r = wait(fs.iter().cloned(), Some(LONG), ReturnWhen::AllCompleted);
    assert_eq!(r.done, fs);
}

// SEMANTICS §2.8: a cancelled future is not done for `wait` until its executor notices.
#[test]
fn cancelled_but_not_notified_is_not_done() {
    let (f, _p) = cancelled_future();
    assert!(f.done());
    let start = Instant::now();
    let timeout = Duration::from_millis(100);
    let r = wait([f.clone()], Some(timeout), ReturnWhen::FirstCompleted);
    assert!(start.elapsed() >= timeout, "waited the full timeout");
    assert_eq!(r.not_done, set(&[&f]));
}

#[test]
fn cancelled_future_is_done_once_the_executor_notices() {
    let ex = Threads::new(1);
    let gate = Latch::new();
    let g = gate.clone();
    let busy = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    let queued = ex.submit(|| 1).unwrap();
    assert!(queued.cancel());
    let waiter = {
        let queued = queued.clone();
        std::thread::spawn(move || wait([queued], Some(LONG), ReturnWhen::FirstCompleted))
    };
    // The worker dequeues the cancelled task after `busy` and notices the cancellation.
    gate.open();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, set(&[&queued]));
    assert!(busy.wait_timeout(LONG));
}

#[test]
fn completions_from_another_thread_wake_wait() {
    let mut promises = Vec::new();
    let mut futures = Vec::new();
    for _ in 0..1000 {
        let (p, f) = pending::<usize>();
        promises.push(p);
        futures.push(f);
    }
    let t = std::thread::spawn(move || {
        for (i, p) in promises.into_iter().enumerate() {
            p.set_result(i).unwrap();
        }
    });
    let r = wait(
        futures.iter().cloned(),
        Some(LONG),
        ReturnWhen::AllCompleted,
    );
    t.join().unwrap();
    assert_eq!(r.done.len(), 1000);
    assert!(r.not_done.is_empty());
}

#[test]
fn dropped_promise_is_a_failure_for_first_exception() {
    let (p, broken) = pending::<i32>();
    let (never, _keep) = pending_future();
    let t = std::thread::spawn(move || drop(p));
    let r = wait(
        [broken.clone(), never.clone()],
        Some(LONG),
        ReturnWhen::FirstException,
    );
    t.join().unwrap();
    assert_eq!(r.done, set(&[&broken]));
    assert_eq!(r.not_done, set(&[&never]));
}

// Futures of different result types, from different executors, together.
#[test]
fn mixed_types_and_executors() {
    let threads = Threads::new(1);
    let inline = InlineExecutor::new();
    let gate = Latch::new();
    let g = gate.clone();
    let a: AnyFuture = threads
        .submit(move || {
            g.wait();
            String::from("threads")
        })
        .unwrap()
        .erase();
    let b: AnyFuture = inline.submit(|| 7u8).unwrap().erase();
    let r = wait(
        [a.clone(), b.clone()],
        Some(LONG),
        ReturnWhen::FirstCompleted,
    );
    assert_eq!(r.done, set(&[&b]));
    assert_eq!(r.not_done, set(&[&a]));
    gate.open();
    let r = wait([a.clone(), b.clone()], Some(LONG), ReturnWhen::AllCompleted);
    assert_eq!(r.done, set(&[&a, &b]));
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ok,
    Failed,
    CancelledNotified,
    CancelledUnnotified,
    Pending,
    CompletedLater,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Ok),
        Just(Kind::Failed),
        Just(Kind::CancelledNotified),
        Just(Kind::CancelledUnnotified),
        Just(Kind::Pending),
        Just(Kind::CompletedLater),
    ]
}

fn return_when() -> impl Strategy<Value = ReturnWhen> {
    prop_oneof![
        Just(ReturnWhen::FirstCompleted),
        Just(ReturnWhen::FirstException),
        Just(ReturnWhen::AllCompleted),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `wait` partitions its (deduplicated) input exactly, and `done` is exactly the
    /// futures complete for waiting; with no never-completing future and ALL_COMPLETED,
    /// everything is done.
    #[test]
    fn wait_partitions_exactly(
        kinds in prop::collection::vec(kind(), 0..40),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        rw in return_when(),
        timeout_ms in prop_oneof![Just(0u64), Just(5u64)],
    ) {
        let mut futures = Vec::new();
        let mut keep = Vec::new();
        let mut later = Vec::new();
        for k in &kinds {
            let (p, f) = pending::<usize>();
            match k {
                Kind::Ok => p.set_result(1).unwrap(),
                Kind::Failed => p.set_exception(TaskError::msg("boom")).unwrap(),
                Kind::CancelledNotified => { f.cancel(); drop(p) }
                Kind::CancelledUnnotified => { f.cancel(); keep.push(p) }
                Kind::Pending => keep.push(p),
                Kind::CompletedLater => later.push(p),
            }
            futures.push(f);
        }
        let mut input = futures.clone();
        if !futures.is_empty() {
            for d in &dups {
                input.push(d.get(&futures).clone());
            }
        }
        let completer = std::thread::spawn(move || {
            for p in later {
                p.set_result(2).unwrap();
            }
        });
        let r = wait(input, Some(Duration::from_millis(timeout_ms)), rw);
        completer.join().unwrap();

        let distinct: FutureSet<_> = futures.iter().cloned().collect();
        prop_assert!(r.done.is_disjoint(&r.not_done));
        let union: FutureSet<_> = r.done.union(&r.not_done).cloned().collect();
        prop_assert_eq!(&union, &distinct);
        for f in &r.not_done {
            // Not done for waiting at return time (it may have completed since only if it
            // is one completed later).
            let i = futures.iter().position(|g| g == f).unwrap();
            prop_assert!(matches!(
                kinds[i],
                Kind::CancelledUnnotified | Kind::Pending | Kind::CompletedLater
            ));
        }
        for f in &r.done {
            let i = futures.iter().position(|g| g == f).unwrap();
            prop_assert!(!matches!(kinds[i], Kind::CancelledUnnotified | Kind::Pending));
        }
    }

    /// With every future eventually completing, ALL_COMPLETED without a timeout returns
    /// all of them done, whatever the interleaving with the completing thread.
    #[test]
    fn wait_all_completed_sees_everything(n in 0usize..200, rw in return_when()) {
        let (promises, futures): (Vec<_>, Vec<_>) = (0..n).map(|_| pending::<usize>()).unzip();
        let completer = std::thread::spawn(move || {
            for (i, p) in promises.into_iter().enumerate() {
                p.set_result(i).unwrap();
            }
        });
        let r = wait(futures.iter().cloned(), Some(LONG), rw);
        completer.join().unwrap();
        match rw {
            ReturnWhen::FirstCompleted if n > 0 => prop_assert!(!r.done.is_empty()),
            _ => {
                prop_assert_eq!(r.done.len(), n);
                prop_assert!(r.not_done.is_empty());
            }
        }
        prop_assert_eq!(r.done.len() + r.not_done.len(), n);
    }
}

// ALL_COMPLETED waits for each future in turn; a cancelled future it reaches before its
// executor noticed must still be waited for (through a waiter) until it is noticed.
#[test]
fn all_completed_waits_for_the_cancellation_to_be_noticed() {
    let ex = Threads::new(1);
    let gate = Latch::new();
    let g = gate.clone();
    let busy = ex
        .submit(move || {
            g.wait();
            0
        })
        .unwrap();
    let queued = ex.submit(|| 1).unwrap();
    assert!(queued.cancel());
    let (b, q) = (busy.clone(), queued.clone());
    let waiter = std::thread::spawn(move || wait([q, b], Some(LONG), ReturnWhen::AllCompleted));
    gate.open();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, set(&[&busy, &queued]));
    assert!(r.not_done.is_empty());

    // Never noticed: not done after the timeout.
    let (never, _p) = cancelled_future();
    let ok = successful_future();
    let r = wait(
        [never.clone(), ok.clone()],
        Some(Duration::from_millis(20)),
        ReturnWhen::AllCompleted,
    );
    assert_eq!(r.done, set(&[&ok]));
    assert_eq!(r.not_done, set(&[&never]));
}
