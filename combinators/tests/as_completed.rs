//! `as_completed`: a port of CPython's
//! `Lib/test/test_concurrent_futures/test_as_completed.py` (3.14), plus the rules of
//! SEMANTICS.md §5 and property tests.

#![allow(clippy::mutable_key_type)] // futures hash by identity

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_combinators::as_completed;
use cfutures_core::{
    pending, AnyFuture, Completion, Future, FutureId, InlineExecutor, State, Submit, Waitable,
    Waiter, WaiterKey,
};
use common::*;
use proptest::prelude::*;

// test_no_timeout
#[test]
fn no_timeout() {
    let ex = Threads::new(2);
    let f1 = ex.submit(|| 2 * 21).unwrap();
    let f2 = ex.submit(|| 7 * 6).unwrap();
    let fs = [
        cancelled_and_notified_future(),
        exception_future(),
        successful_future(),
        f1,
        f2,
    ];
    let completed: HashSet<_> = as_completed(fs.clone(), None).map(Result::unwrap).collect();
    assert_eq!(completed, fs.into_iter().collect());
}

// test_future_times_out (timeout 0 and 0.01), and test_zero_timeout.
#[test]
fn future_times_out() {
    for timeout in [Duration::ZERO, Duration::from_millis(10)] {
        let (pending, _p) = pending_future();
        let finished = [
            cancelled_and_notified_future(),
            exception_future(),
            successful_future(),
        ];
        let mut input = finished.to_vec();
        input.push(pending);
        let mut completed = HashSet::new();
        let mut timed_out = false;
        for r in as_completed(input, Some(timeout)) {
            match r {
                Ok(f) => assert!(completed.insert(f)),
                Err(e) => {
                    assert!(!timed_out, "one error, then the end");
                    assert_eq!(e.unfinished(), 1);
                    timed_out = true;
                }
            }
        }
        assert!(timed_out);
        assert_eq!(completed, finished.into_iter().collect());
    }
}

// test_duplicate_futures
#[test]
fn duplicate_futures() {
    let ex = Threads::new(1);
    let f = ex.submit(|| 1).unwrap();
    let completed: Vec<_> = as_completed(std::iter::repeat(f).take(3), Some(LONG)).collect();
    assert_eq!(completed.len(), 1);
}

// test_free_reference_yielded_future: yielded futures are moved out, not retained. In Rust:
// the yielded handle is the only one left, so `try_into_result` can move its value out.
#[test]
fn free_reference_yielded_future() {
    let mut promises = Vec::new();
    let mut futures = Vec::new();
    for _ in 0..8 {
        let (p, f) = pending::<String>();
        promises.push(p);
        futures.push(f);
    }
    let (p, f) = pending::<String>();
    f.cancel();
    drop(p); // cancelled and notified
    futures.push(f);
    futures.push(Future::ready("42".to_owned()));

    let mut yielded = 0;
    for r in as_completed(futures, Some(Duration::ZERO)) {
        match r {
            Ok(f) => {
                yielded += 1;
                // No other handle: the iterator kept none.
                let _ = f.try_into_result().expect("the only handle");
            }
            Err(e) => assert_eq!(e.to_string(), "8 (of 10) futures unfinished"),
        }
    }
    assert_eq!(yielded, 2);
}

// test_free_reference_yielded_future, second half: futures completed one by one while
// iterating, each yielded handle the only one.
#[test]
fn free_reference_while_completing() {
    let (mut promises, futures): (Vec<_>, Vec<_>) = (0..8).map(|_| pending::<String>()).unzip();
    promises.reverse();
    promises.pop().unwrap().set_result("test".into()).unwrap();
    let mut n = 0;
    for r in as_completed(futures, Some(LONG)) {
        let f = r.unwrap();
        assert_eq!(
            f.try_into_result().expect("the only handle").unwrap(),
            "test"
        );
        n += 1;
        if let Some(p) = promises.pop() {
            p.set_result("test".into()).unwrap();
        }
    }
    assert_eq!(n, 8);
}

// test_correct_timeout_exception_msg
#[test]
fn correct_timeout_exception_msg() {
    let (pend, _p1) = pending_future();
    let (run, _p2) = running_future();
    let fs = [
        cancelled_and_notified_future(),
        pend,
        run,
        successful_future(),
    ];
    let results: Vec<_> = as_completed(fs, Some(Duration::ZERO)).collect();
    assert_eq!(results.len(), 3);
    let err = results.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.to_string(), "2 (of 4) futures unfinished");
    assert_eq!((err.unfinished(), err.total()), (2, 4));
    assert!(cfutures_core::Error::from(err.clone()).is_timeout());
}

// SEMANTICS §2.8: a cancelled, unnoticed future is unfinished for as_completed.
#[test]
fn cancelled_unnotified_times_out() {
    let (f, _p) = cancelled_future();
    let mut it = as_completed([f], Some(Duration::from_millis(20)));
    assert_eq!(
        it.next().unwrap().unwrap_err().to_string(),
        "1 (of 1) futures unfinished"
    );
    assert!(it.next().is_none());
}

#[test]
fn empty_input() {
    assert!(as_completed(Vec::<Future<u8>>::new(), None)
        .next()
        .is_none());
    assert!(as_completed(Vec::<Future<u8>>::new(), Some(Duration::ZERO))
        .next()
        .is_none());
}

// Lazy: nothing happens until the first next().
#[test]
fn lazy_until_first_next() {
    let consumed = std::cell::Cell::new(false);
    let input = std::iter::once_with(|| {
        consumed.set(true);
        Future::ready(1)
    });
    let mut it = as_completed(input, None);
    assert!(!consumed.get(), "input not read before next()");
    assert_eq!(it.total(), 0);
    assert!(it.next().unwrap().is_ok());
    assert!(consumed.get());
    assert_eq!((it.done(), it.total()), (1, 1));
}

// The timeout clock starts at the first next(), not at the call (SEMANTICS §5, verified on
// CPython by sleeping between the call and the first next()).
#[test]
fn timeout_clock_starts_at_first_next() {
    let (p, slow) = pending::<i32>();
    let mut it = as_completed([slow], Some(Duration::from_millis(300)));
    // Past the timeout, had the clock started at the call.
    std::thread::sleep(Duration::from_millis(400));
    let t = std::thread::spawn(move || p.set_result(5).unwrap());
    assert_eq!(*it.next().unwrap().unwrap().result().unwrap(), 5);
    t.join().unwrap();
}

#[test]
fn finished_first_then_completion_order() {
    let (promises, futures): (Vec<_>, Vec<_>) = (0..3).map(|_| pending::<usize>()).unzip();
    let ready = Future::ready(100);
    let mut input = futures.clone();
    input.push(ready.clone());
    let mut it = as_completed(input, Some(LONG));
    // The already-finished one comes first (this also installs the waiters).
    assert_eq!(it.next().unwrap().unwrap(), ready);
    assert_eq!(it.progress().to_string(), "1/4");
    // Complete in the order 2, 0, 1 from another thread.
    let t = std::thread::spawn(move || {
        let mut promises: Vec<_> = promises.into_iter().map(Some).collect();
        for i in [2, 0, 1] {
            promises[i].take().unwrap().set_result(i).unwrap();
        }
    });
    t.join().unwrap();
    let order: Vec<usize> = it.by_ref().map(|f| *f.unwrap().result().unwrap()).collect();
    assert_eq!(order, [2, 0, 1]);
    assert_eq!((it.done(), it.total()), (4, 4));
}

#[test]
fn mixed_types_and_executors() {
    let threads = Threads::new(1);
    let inline = InlineExecutor::new();
    let fs: Vec<AnyFuture> = vec![
        threads.submit(|| "text").unwrap().erase(),
        inline.submit(|| 1u64).unwrap().erase(),
        threads.submit(|| vec![1, 2]).unwrap().erase(),
    ];
    let got: HashSet<_> = as_completed(fs.clone(), Some(LONG))
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, fs.into_iter().collect());
}

#[test]
fn works_across_threads_with_an_executor() {
    let ex = Threads::new(4);
    let fs: Vec<_> = (0..500).map(|i| ex.submit(move || i).unwrap()).collect();
    let mut seen: Vec<i32> = as_completed(fs, Some(LONG))
        .map(|f| *f.unwrap().result().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..500).collect::<Vec<_>>());
}

#[test]
fn many_completing_threads_racing_the_consumer() {
    // Four threads complete 4 x 5000 futures while the consumer installs its waiter and
    // drains the notification queue: every future comes out once, none is lost between
    // the consumer's last look and its park.
    let n = 5000;
    let mut promises = Vec::new();
    let mut futures = Vec::new();
    for _ in 0..4 {
        let (p, f): (Vec<_>, Vec<_>) = (0..n).map(|_| pending::<usize>()).unzip();
        promises.push(p);
        futures.extend(f);
    }
    let completers: Vec<_> = promises
        .into_iter()
        .map(|ps| {
            std::thread::spawn(move || {
                for (i, p) in ps.into_iter().enumerate() {
                    p.set_result(i).unwrap();
                    if i % 64 == 0 {
                        std::thread::yield_now(); // vary the interleaving
                    }
                }
            })
        })
        .collect();
    let ids: HashSet<_> = futures.iter().map(|f| f.id()).collect();
    let seen: Vec<_> = as_completed(futures, Some(LONG))
        .map(|f| f.expect("no timeout").id())
        .collect();
    for t in completers {
        t.join().unwrap();
    }
    assert_eq!(seen.len(), 4 * n);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
}

#[test]
fn dropping_the_iterator_midway_is_fine() {
    let (promises, futures): (Vec<_>, Vec<_>) = (0..10).map(|_| pending::<usize>()).unzip();
    let mut input = futures.clone();
    input.push(Future::ready(7));
    let mut it = as_completed(input, None);
    assert!(it.next().unwrap().is_ok());
    drop(it);
    // Completing after the iterator is gone notifies nobody and breaks nothing.
    for (i, p) in promises.into_iter().enumerate() {
        p.set_result(i).unwrap();
    }
    assert!(futures.iter().all(|f| f.done()));
}

/// What an input iterator says of its length.
#[derive(Clone, Copy, Debug)]
enum Hint {
    /// The truth (a `Vec`'s iterator).
    Exact,
    /// Nothing: no upper bound (`iter::from_fn`, a channel).
    Unbounded,
    /// An upper bound this many items below the truth: a buggy iterator, which must still
    /// yield every future.
    TooSmall(usize),
}

struct Hinted<T> {
    inner: std::vec::IntoIter<T>,
    hint: Hint,
}

impl<T> Hinted<T> {
    fn new(v: Vec<T>, hint: Hint) -> Self {
        Hinted {
            inner: v.into_iter(),
            hint,
        }
    }
}

impl<T> Iterator for Hinted<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.inner.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.inner.len();
        match self.hint {
            Hint::Exact => (n, Some(n)),
            Hint::Unbounded => (0, None),
            Hint::TooSmall(k) => (0, Some(n.saturating_sub(k + 1))),
        }
    }
}

#[test]
fn an_input_longer_than_its_size_hint_still_yields_every_future() {
    // 100 pending futures behind an iterator that claims to be empty: the waiter, sized
    // from the hint, fills up and is replaced as the input goes on, while another thread
    // completes the futures.
    let (promises, futures): (Vec<_>, Vec<_>) = (0..100).map(|_| pending::<usize>()).unzip();
    let mut input = futures.clone();
    input.push(Future::ready(100));
    input.push(futures[3].clone()); // a duplicate
    let start = Latch::new();
    let go = start.clone();
    let completer = std::thread::spawn(move || {
        go.wait();
        for (i, p) in promises.into_iter().enumerate() {
            p.set_result(i).unwrap();
        }
    });
    let mut it = as_completed(Hinted::new(input, Hint::TooSmall(200)), Some(LONG));
    let first = it.next().unwrap().unwrap();
    start.open();
    let mut got: Vec<usize> = std::iter::once(first)
        .chain(it.by_ref().map(Result::unwrap))
        .map(|f| *f.result().unwrap())
        .collect();
    completer.join().unwrap();
    got.sort();
    assert_eq!(got, (0..=100).collect::<Vec<_>>());
    assert_eq!(it.total(), 101);
}

/// A future that counts its live waiter installations (installed, not yet removed).
#[derive(Clone)]
struct Tracked {
    f: Future<usize>,
    live: Arc<AtomicIsize>,
}

impl Waitable for Tracked {
    fn id(&self) -> FutureId {
        Waitable::id(&self.f)
    }
    fn state(&self) -> State {
        self.f.state()
    }
    fn completion(&self) -> Option<Completion> {
        self.f.completion()
    }
    fn install_waiter(&self, w: &Arc<dyn Waiter>) -> Result<WaiterKey, Completion> {
        let r = self.f.install_waiter(w);
        if r.is_ok() {
            self.live.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
    fn remove_waiter(&self, key: WaiterKey) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.f.remove_waiter(key)
    }
    fn cancel(&self) -> bool {
        self.f.cancel()
    }
    fn wait_deadline(&self, d: Option<Instant>) -> bool {
        self.f.wait_deadline(d)
    }
}

#[test]
fn dropping_after_a_too_small_size_hint_removes_every_waiter() {
    // The waiter is replaced several times while installing (the hint says 0); dropping
    // the iterator then leaves no installation behind, old or new.
    let live = Arc::new(AtomicIsize::new(0));
    let (promises, futures): (Vec<_>, Vec<_>) = (0..50)
        .map(|_| {
            let (p, f) = pending::<usize>();
            let live = live.clone();
            (p, Tracked { f, live })
        })
        .unzip();
    let mut input = futures.clone();
    input.push(Tracked {
        f: Future::ready(7),
        live: live.clone(),
    });
    let mut it = as_completed(Hinted::new(input, Hint::TooSmall(60)), None);
    assert_eq!(*it.next().unwrap().unwrap().f.result().unwrap(), 7);
    assert_eq!(it.total(), 51);
    assert_eq!(live.load(Ordering::SeqCst), 50);
    drop(it);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    for (i, p) in promises.into_iter().enumerate() {
        p.set_result(i).unwrap();
    }
    assert!(futures.iter().all(|t| t.f.done()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every distinct future is yielded exactly once; the already-finished ones first.
    #[test]
    fn yields_every_future_exactly_once(
        finished in prop::collection::vec(any::<bool>(), 0..60),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        order in any::<u64>(),
        hint in prop_oneof![
            Just(Hint::Exact),
            Just(Hint::Unbounded),
            (0usize..20).prop_map(Hint::TooSmall),
        ],
    ) {
        let mut futures = Vec::new();
        let mut later = Vec::new();
        for (i, done) in finished.iter().enumerate() {
            if *done {
                futures.push(Future::ready(i));
            } else {
                let (p, f) = pending::<usize>();
                later.push((p, i));
                futures.push(f);
            }
        }
        // One finished future at the end, so that the first `next()` (which installs the
        // waiters) returns before the completer starts.
        let mut finished = finished;
        finished.push(true);
        futures.push(Future::ready(finished.len() - 1));
        let mut input = futures.clone();
        for d in &dups {
            input.push(d.get(&futures).clone());
        }
        // Complete the others in a pseudo-random order, from another thread.
        let n_later = later.len();
        let mut state = order | 1;
        for i in (1..later.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            later.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut it = as_completed(Hinted::new(input, hint), Some(LONG));
        let first = it.next();
        prop_assert!(first.as_ref().is_some_and(|r| r.is_ok()));
        let completer = std::thread::spawn(move || {
            for (p, i) in later {
                p.set_result(i).unwrap();
            }
        });
        let mut got: Vec<usize> = first
            .into_iter()
            .chain(it.by_ref())
            .map(|f| *f.unwrap().result().unwrap())
            .collect();
        completer.join().unwrap();
        let n_finished = finished.len() - n_later;
        // The finished ones come first, in input order.
        let expect_first: Vec<usize> = (0..finished.len()).filter(|&i| finished[i]).collect();
        prop_assert_eq!(&got[..n_finished.min(got.len())], &expect_first[..]);
        got.sort();
        prop_assert_eq!(got, (0..finished.len()).collect::<Vec<_>>());
        prop_assert_eq!(it.done(), finished.len());
        prop_assert_eq!(it.total(), finished.len());
    }
}
