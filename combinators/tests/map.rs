//! `map` and `map_unordered`: a port of the `map` tests of CPython's
//! `Lib/test/test_concurrent_futures/executor.py` and `test_thread_pool.py` (3.14), adapted
//! where cfutures deliberately differs (each item yields its own `Result`; dropping the
//! iterator cancels what has not started), plus property tests.
//!
//! Runs over `InlineExecutor`, the test-only `common::Threads` and the real
//! `ThreadPoolExecutor`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cfutures_combinators::{map, map_unordered, ExecutorExt, MapBuilder};
use cfutures_core::{Executor, InlineExecutor, MapChunk, Submit};
use cfutures_thread_pool::ThreadPoolExecutor;
use common::*;
use proptest::prelude::*;

fn pool(n: usize) -> ThreadPoolExecutor {
    ThreadPoolExecutor::new(n).unwrap()
}

fn pow((a, b): (u64, u32)) -> u64 {
    a.pow(b)
}

// test_map (and with chunksize=3, as ProcessPool's test does)
#[test]
fn map_equals_sequential() {
    let items = || (0..10u64).zip(0..10u32);
    let expected: Vec<u64> = items().map(pow).collect();
    let p = pool(4);
    let got: Vec<u64> = p.map(pow, items()).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, expected);
    let got: Vec<u64> = p
        .map_builder()
        .chunksize(3)
        .map(pow, items())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, expected);
    let inline = InlineExecutor::new();
    let got: Vec<u64> = map(&inline, pow, items())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, expected);
}

// Chunking with chunksize >= len(input) works (ProcessPool test_map_chunksize: 40, 50).
#[test]
fn chunksize_larger_than_input() {
    let p = pool(2);
    for chunksize in [39, 40, 41, 50] {
        let got: Vec<usize> = p
            .map_builder()
            .chunksize(chunksize)
            .map(|x: usize| x + 1, 0..40)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (1..41).collect::<Vec<_>>());
    }
}

// Python raises ValueError from the call; here the call that already returns a `Result`
// gives `SubmitError::InvalidArgument`, and nothing is submitted.
#[test]
fn chunksize_zero_is_an_error_from_the_call() {
    let submitted = Arc::new(AtomicUsize::new(0));
    let s = submitted.clone();
    let f = move |x: u8| {
        s.fetch_add(1, Ordering::SeqCst);
        x
    };
    let pool = InlineExecutor::new();
    let b = || pool.map_builder().chunksize(0);
    let e = b().map(f.clone(), [1, 2]).unwrap_err();
    assert!(e.is_invalid_argument());
    assert_eq!(e.to_string(), "chunksize must be >= 1");
    assert!(b()
        .map_unordered(f.clone(), [1])
        .unwrap_err()
        .is_invalid_argument());
    assert!(b()
        .try_map(|x: u8| Ok::<u8, String>(x), [1])
        .unwrap_err()
        .is_invalid_argument());
    let e = b().map_vec(f, vec![1u8]).unwrap_err();
    assert!(e.is_invalid_argument(), "{e:?}");
    assert_eq!(submitted.load(Ordering::SeqCst), 0, "nothing ran");
}

#[test]
fn buffersize_zero_is_an_error_from_the_call() {
    let pool = InlineExecutor::new();
    let e = pool
        .map_builder()
        .buffersize(0)
        .map(|x: u8| x, 0..)
        .unwrap_err();
    assert!(e.is_invalid_argument());
    assert_eq!(e.to_string(), "buffersize must be >= 1");
    let e = pool
        .map_builder()
        .buffersize(0)
        .map_unordered(|x: u8| x, 0..)
        .unwrap_err();
    assert!(e.is_invalid_argument());
}

// test_map_exception: divmod([1, 1, 1, 1], [2, 3, 0, 5]). Python raises at the third and
// stops; here the third item is an error and the fourth still yields.
#[test]
fn failing_item_does_not_end_iteration() {
    quiet_planned_panics();
    let divmod = |(a, b): (i32, i32)| {
        if b == 0 {
            panic!("{PLANNED}: integer division or modulo by zero");
        }
        (a / b, a % b)
    };
    for chunksize in [1, 2, 4] {
        let p = pool(2);
        let mut it = p
            .map_builder()
            .chunksize(chunksize)
            .map(divmod, [(1, 2), (1, 3), (1, 0), (1, 5)])
            .unwrap();
        assert_eq!(it.next().unwrap().unwrap(), (0, 1));
        assert_eq!(it.next().unwrap().unwrap(), (0, 1));
        let err = it.next().unwrap().unwrap_err();
        let task = err.task_error().expect("the task failed");
        assert!(task.is_panic());
        assert!(task.panic_message().unwrap().contains("division"));
        assert_eq!(it.next().unwrap().unwrap(), (0, 1));
        assert!(it.next().is_none());
    }
}

// test_map_timeout: map(sleep, [0, 0, 6], timeout=5) yields two results, then a timeout.
#[test]
fn timeout() {
    let p = pool(3);
    let gate = Latch::new();
    let g = gate.clone();
    let results: Vec<_> = p
        .map_builder()
        .timeout(Duration::from_millis(300))
        .map(
            move |block: bool| {
                if block {
                    g.wait();
                }
            },
            [false, false, true],
        )
        .unwrap()
        .collect();
    gate.open();
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(results[2].as_ref().unwrap_err().is_timeout());
}

type Job = Box<dyn FnOnce() + Send + 'static>;
type Logger = Box<dyn Fn(&'static str) + Send + Sync + 'static>;

// test_executor_map_current_future_cancel: one worker busy; map(..., timeout=0); the
// timeout cancels the awaited future and the remaining one: neither ever starts.
fn current_future_cancel<E>(ex: E)
where
    E: Executor + Submit<Job> + Submit<MapChunk<Logger, &'static str>>,
{
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Latch::new();
    let log_n_wait = {
        let (log, stop) = (log.clone(), stop.clone());
        move |ident: &'static str| {
            log.lock().unwrap().push(format!("{ident} started"));
            stop.wait();
            log.lock().unwrap().push(format!("{ident} stopped"));
        }
    };
    let f = log_n_wait.clone();
    let job: Job = Box::new(move || f("first"));
    let first = ex.submit(job).unwrap();
    {
        let logger: Logger = Box::new(log_n_wait);
        let mut it = ex
            .map_builder()
            .timeout(Duration::ZERO)
            .map(logger, ["second", "third"])
            .unwrap();
        assert!(it.next().unwrap().unwrap_err().is_timeout());
        assert!(it.next().is_none());
    }
    stop.open();
    assert!(first.wait_timeout(LONG));
    ex.shutdown(true, false);
    assert_eq!(*log.lock().unwrap(), ["first started", "first stopped"]);
}

#[test]
fn timeout_cancels_the_tasks_not_started() {
    current_future_cancel(pool(1));
    current_future_cancel(Threads::new(1));
}

type Counter = Box<dyn Fn(u32) + Send + Sync>;

/// Starts a map of a counting `f` (through `start`, which may check the iterator) while a
/// task holds the only worker, then drops the iterator: `f` must never run.
fn dropping_cancels_the_tasks_not_started<I>(start: impl FnOnce(Arc<Threads>, Counter) -> I) {
    let ex = Arc::new(Threads::new(1));
    let gate = Latch::new();
    let g = gate.clone();
    let busy = ex.submit(move || g.wait()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let it = start(
        ex.clone(),
        Box::new(move |_: u32| {
            r.fetch_add(1, Ordering::SeqCst);
        }),
    );
    drop(it);
    gate.open();
    assert!(busy.wait_timeout(LONG));
    ex.shutdown(true, false);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// Dropping the iterator cancels what has not started (Python only does this for a started
// generator; cfutures always does).
#[test]
fn drop_cancels_the_tasks_not_started() {
    dropping_cancels_the_tasks_not_started(|ex, f| {
        let it = map(ex, f, 0..5).unwrap();
        assert_eq!(it.progress().total, 5, "all submitted at the call");
        it
    });
}

// test_map_submits_without_iteration: without buffersize everything is submitted at the
// call and runs even if the iterator is never advanced (kept alive here: dropping it would
// cancel what has not started).
#[test]
fn submits_without_iteration() {
    let p = pool(2);
    let finished = Arc::new(Mutex::new(Vec::new()));
    let f = finished.clone();
    let _it = p
        .map(move |n: i32| f.lock().unwrap().push(n), 0..10)
        .unwrap();
    p.shutdown(true, false);
    let mut got = finished.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

// test_map_buffersize
#[test]
fn buffersize() {
    let p = pool(2);
    for buffersize in [1, 2, 4, 8] {
        let got: Vec<String> = p
            .map_builder()
            .buffersize(buffersize)
            .map(|i: i32| i.to_string(), 0..4)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, ["0", "1", "2", "3"]);
    }
}

// test_map_buffersize_on_multiple_iterables (zip is the caller's business in Rust)
#[test]
fn buffersize_on_zipped_iterables() {
    let p = pool(2);
    let got: Vec<i32> = p
        .map_builder()
        .buffersize(2)
        .map(|(a, b): (i32, i32)| a + b, (0..4).zip(0..4))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, [0, 2, 4, 6]);
}

// test_map_buffersize_on_infinite_iterable
#[test]
fn buffersize_on_infinite_iterable() {
    let p = pool(2);
    let mut res = p
        .map_builder()
        .buffersize(2)
        .map(|i: u64| i.to_string(), 0..)
        .unwrap();
    assert_eq!(res.next().unwrap().unwrap(), "0");
    assert_eq!(res.next().unwrap().unwrap(), "1");
    assert_eq!(res.next().unwrap().unwrap(), "2");
    // At most 2 chunks in flight, one more taken per item yielded.
    assert!(res.progress().total <= 5, "{}", res.progress());
}

// test_map_buffersize_on_empty_iterable, test_map_buffersize_without_iterable
#[test]
fn buffersize_on_empty_iterable() {
    let p = pool(2);
    let mut res = p
        .map_builder()
        .buffersize(2)
        .map(|i: i32| i.to_string(), std::iter::empty())
        .unwrap();
    assert!(res.next().is_none());
    assert!(p.map(|i: i32| i, Vec::new()).unwrap().next().is_none());
}

// test_map_buffersize_when_buffer_is_full: exactly `buffersize` chunks are read at the call.
#[test]
fn buffersize_when_buffer_is_full() {
    let p = pool(2);
    let mut ints = 0..10;
    let it = p
        .map_builder()
        .buffersize(2)
        .map(|i: i32| i.to_string(), &mut ints)
        .unwrap();
    drop(it);
    assert_eq!(ints.next(), Some(2));

    let mut ints = 0..100;
    let it = p
        .map_builder()
        .buffersize(2)
        .chunksize(3)
        .map(|i: i32| i.to_string(), &mut ints)
        .unwrap();
    drop(it);
    assert_eq!(ints.next(), Some(6), "two chunks of three");
}

// Without a buffersize the whole input is read (and submitted) at the call, as in Python
// before 3.14: an endless input would never return, a huge one is held as tasks.
#[test]
fn without_buffersize_the_whole_input_is_read_at_the_call() {
    let read = AtomicUsize::new(0);
    let input = (0..100).inspect(|_| {
        read.fetch_add(1, Ordering::SeqCst);
    });
    let ex = InlineExecutor::new();
    let it = ex
        .map_builder()
        .chunksize(7)
        .map(|x: i32| x, input)
        .unwrap();
    assert_eq!(read.load(Ordering::SeqCst), 100);
    assert_eq!(it.progress().total, 100);
}

// The input is read lazily with a buffersize: one chunk per chunk taken.
#[test]
fn buffersize_reads_lazily() {
    let read = AtomicUsize::new(0);
    let input = (0..100).inspect(|_| {
        read.fetch_add(1, Ordering::SeqCst);
    });
    let ex = InlineExecutor::new();
    let mut it = ex
        .map_builder()
        .buffersize(3)
        .chunksize(2)
        .map(|x: i32| x * 10, input)
        .unwrap();
    assert_eq!(read.load(Ordering::SeqCst), 6);
    assert_eq!(it.next().unwrap().unwrap(), 0); // takes chunk 0, submits chunk 3
    assert_eq!(read.load(Ordering::SeqCst), 8);
    assert_eq!(it.next().unwrap().unwrap(), 10);
    assert_eq!(read.load(Ordering::SeqCst), 8);
    assert_eq!(it.next().unwrap().unwrap(), 20);
    assert_eq!(read.load(Ordering::SeqCst), 10);
}

// test_free_reference: results are moved out, the iterator keeps no reference.
#[test]
fn free_reference() {
    let p = pool(2);
    for chunksize in [1, 3] {
        for obj in p
            .map_builder()
            .chunksize(chunksize)
            .map(Arc::new, 0..10)
            .unwrap()
        {
            assert_eq!(Arc::strong_count(&obj.unwrap()), 1);
        }
    }
}

// A panicking item fails only its own slot, even inside a chunk (Python loses the chunk).
#[test]
fn failure_is_per_item_within_a_chunk() {
    quiet_planned_panics();
    let p = pool(2);
    let out: Vec<_> = p
        .map_builder()
        .chunksize(4)
        .map(
            |x: i32| {
                if x == 5 {
                    panic!("{PLANNED}: boom(5)");
                }
                x
            },
            0..10,
        )
        .unwrap()
        .collect();
    for (i, r) in out.iter().enumerate() {
        if i == 5 {
            assert!(r.as_ref().unwrap_err().is_failed());
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as i32);
        }
    }
}

#[test]
fn submit_error_at_call() {
    let p = pool(1);
    p.shutdown(true, false);
    assert!(p.map(|x: i32| x, 0..3).unwrap_err().is_shutdown());
    assert!(p.map_unordered(|x: i32| x, 0..3).unwrap_err().is_shutdown());
    // Empty input submits nothing, so nothing is refused.
    assert!(p.map(|x: i32| x, 0..0).unwrap().next().is_none());
}

// With a buffersize, a refill refused by a shut-down executor fails that chunk's items and
// ends the input; what was in flight still yields.
#[test]
fn refill_refused_after_shutdown() {
    let ex = Threads::new(1);
    let mut it = ex
        .map_builder()
        .buffersize(1)
        .map(|x: i32| x, 0..5)
        .unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0); // submitted chunk 1
    ex.shutdown(false, false);
    assert_eq!(it.next().unwrap().unwrap(), 1); // refill of chunk 2 refused
    assert!(it.next().unwrap().unwrap_err().is_broken());
    assert!(it.next().is_none());
}

// shutdown(cancel_futures) cancels queued chunks: their items yield Cancelled.
#[test]
fn cancelled_chunks_yield_cancelled() {
    let p = pool(1);
    let gate = Latch::new();
    let g = gate.clone();
    let busy = p.submit(move || g.wait()).unwrap();
    let it = p.map(|x: i32| x, 0..3).unwrap();
    p.shutdown(false, true);
    gate.open();
    assert!(busy.wait_timeout(LONG));
    let out: Vec<_> = it.collect();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|r| r.as_ref().unwrap_err().is_cancelled()));
}

#[test]
fn progress_while_iterating() {
    let ex = InlineExecutor::new();
    let mut it = ex.map_builder().chunksize(2).map(|x: u8| x, 0..5).unwrap();
    assert_eq!(it.progress().to_string(), "5/5"); // inline: all done at the call
    let mut n = 0;
    while let Some(r) = it.next() {
        r.unwrap();
        n += 1;
        assert_eq!(it.progress().total, 5);
    }
    assert_eq!(n, 5);

    let p = pool(2);
    let gate = Latch::new();
    let g = gate.clone();
    let mut it = p
        .map_builder()
        .buffersize(2)
        .map(
            move |x: u32| {
                if x == 0 {
                    g.wait();
                }
                x
            },
            0..6,
        )
        .unwrap();
    let p0 = it.progress();
    assert_eq!(p0.total, 2);
    assert!(p0.done <= 1);
    gate.open();
    let all: Vec<u32> = it.by_ref().map(Result::unwrap).collect();
    assert_eq!(all, [0, 1, 2, 3, 4, 5]);
    assert_eq!(it.progress().to_string(), "6/6");
}

// map_unordered: completion order.
#[test]
fn unordered_yields_in_completion_order() {
    let p = pool(2);
    let gate = Latch::new();
    let g = gate.clone();
    let mut it = p
        .map_unordered(
            move |x: u32| {
                if x == 0 {
                    g.wait();
                }
                x
            },
            0..4,
        )
        .unwrap();
    let mut first: Vec<u32> = (0..3).map(|_| it.next().unwrap().unwrap()).collect();
    first.sort();
    assert_eq!(first, [1, 2, 3], "the blocked item comes last");
    gate.open();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert!(it.next().is_none());
    assert_eq!(it.progress().to_string(), "4/4");
}

#[test]
fn unordered_timeout() {
    let p = pool(2);
    let gate = Latch::new();
    let g = gate.clone();
    let out: Vec<_> = p
        .map_builder()
        .timeout(Duration::from_millis(200))
        .map_unordered(
            move |x: u32| {
                if x == 0 {
                    g.wait();
                }
                x
            },
            0..3,
        )
        .unwrap()
        .collect();
    gate.open();
    assert_eq!(out.len(), 3);
    assert!(out[..2].iter().all(Result::is_ok));
    assert!(out[2].as_ref().unwrap_err().is_timeout());
}

#[test]
fn unordered_with_buffersize_on_infinite_iterable() {
    let ex = Threads::new(3);
    let mut got: Vec<u64> = ex
        .map_builder()
        .buffersize(4)
        .chunksize(3)
        .map_unordered(|x: u64| x * 2, 0..)
        .unwrap()
        .take(30)
        .map(Result::unwrap)
        .collect();
    got.sort();
    // Not necessarily the first 30 items, but all distinct even numbers.
    got.dedup();
    assert_eq!(got.len(), 30);
    assert!(got.iter().all(|x| x % 2 == 0));
}

#[test]
fn free_functions_and_arc_executor() {
    let p = Arc::new(pool(2));
    let it = map(p.clone(), |x: i32| x + 1, 0..3).unwrap();
    assert_eq!(it.map(Result::unwrap).collect::<Vec<_>>(), [1, 2, 3]);
    let mut v: Vec<i32> = map_unordered(p, |x: i32| x - 1, 0..3)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    v.sort();
    assert_eq!(v, [-1, 0, 1]);
}

/// Which executor a property test runs on.
#[derive(Clone, Copy, Debug)]
enum Exec {
    Inline,
    Threads(usize),
    Pool(usize),
}

fn exec() -> impl Strategy<Value = Exec> {
    prop_oneof![
        Just(Exec::Inline),
        (1usize..5).prop_map(Exec::Threads),
        (1usize..5).prop_map(Exec::Pool),
    ]
}

/// Runs `map` (or `map_unordered`) of `f` over `items` with the options on `exec`.
fn run_map<F>(
    exec: Exec,
    items: Vec<i64>,
    chunksize: usize,
    buffersize: Option<usize>,
    unordered: bool,
    f: F,
) -> Vec<Result<i64, cfutures_core::Error>>
where
    F: Fn(i64) -> i64 + Send + Sync + 'static,
{
    fn go<E, F>(
        ex: E,
        items: Vec<i64>,
        chunksize: usize,
        buffersize: Option<usize>,
        unordered: bool,
        f: F,
    ) -> Vec<Result<i64, cfutures_core::Error>>
    where
        E: Submit<MapChunk<F, i64>>,
        F: Fn(i64) -> i64,
    {
        let mut b = MapBuilder::new(ex).chunksize(chunksize);
        if let Some(n) = buffersize {
            b = b.buffersize(n);
        }
        if unordered {
            b.map_unordered(f, items).unwrap().collect()
        } else {
            b.map(f, items).unwrap().collect()
        }
    }
    match exec {
        Exec::Inline => go(
            InlineExecutor::new(),
            items,
            chunksize,
            buffersize,
            unordered,
            f,
        ),
        Exec::Threads(n) => go(Threads::new(n), items, chunksize, buffersize, unordered, f),
        Exec::Pool(n) => go(pool(n), items, chunksize, buffersize, unordered, f),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `map` over random inputs, chunk sizes, buffer sizes and worker counts equals the
    /// sequential map; `map_unordered` yields the same multiset.
    #[test]
    fn map_equals_sequential_map(
        items in prop::collection::vec(-1000i64..1000, 0..200),
        chunksize in 1usize..20,
        buffersize in prop::option::of(1usize..8),
        exec in exec(),
    ) {
        let f = |x: i64| x * 3 - 1;
        let expected: Vec<i64> = items.iter().copied().map(f).collect();
        let got: Vec<i64> = run_map(exec, items.clone(), chunksize, buffersize, false, f)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        prop_assert_eq!(&got, &expected);
        let mut got: Vec<i64> = run_map(exec, items, chunksize, buffersize, true, f)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        got.sort();
        let mut expected = expected;
        expected.sort();
        prop_assert_eq!(got, expected);
    }

    /// With random failing items, `map` yields an error at exactly those positions and the
    /// right value everywhere else.
    #[test]
    fn map_errors_exactly_at_failing_items(
        items in prop::collection::vec((0i64..1000, any::<bool>()), 0..150),
        chunksize in 1usize..10,
        buffersize in prop::option::of(1usize..6),
        exec in exec(),
    ) {
        quiet_planned_panics();
        // Odd-keyed items fail when flagged: encode the flag in the value.
        let encoded: Vec<i64> = items.iter().map(|&(x, fail)| x * 2 + i64::from(fail)).collect();
        let f = |v: i64| {
            if v % 2 == 1 {
                panic!("{PLANNED}: item {v}");
            }
            v / 2 + 7
        };
        let out = run_map(exec, encoded, chunksize, buffersize, false, f);
        prop_assert_eq!(out.len(), items.len());
        for ((x, fail), r) in items.iter().zip(&out) {
            if *fail {
                let e = r.as_ref().unwrap_err();
                prop_assert!(e.task_error().is_some_and(|t| t.is_panic()));
            } else {
                prop_assert_eq!(*r.as_ref().unwrap(), x + 7);
            }
        }
        // Unordered: the same number of failures and the same values.
        let encoded: Vec<i64> = items.iter().map(|&(x, fail)| x * 2 + i64::from(fail)).collect();
        let out = run_map(exec, encoded, chunksize, buffersize, true, f);
        let fails = out.iter().filter(|r| r.is_err()).count();
        prop_assert_eq!(fails, items.iter().filter(|(_, f)| *f).count());
        let mut ok: Vec<i64> = out.into_iter().filter_map(Result::ok).collect();
        ok.sort();
        let mut expected: Vec<i64> = items.iter().filter(|(_, f)| !f).map(|(x, _)| x + 7).collect();
        expected.sort();
        prop_assert_eq!(ok, expected);
    }
}

// Dropping the unordered iterator also cancels what has not started.
#[test]
fn unordered_drop_cancels_the_tasks_not_started() {
    dropping_cancels_the_tasks_not_started(|ex, f| map_unordered(ex, f, 0..5).unwrap());
}

// The iterators can move to another thread (and be consumed there).
#[test]
fn iterators_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let p = Arc::new(pool(2));
    let it = assert_send(map(p.clone(), |x: i32| x * 2, vec![1, 2, 3]).unwrap());
    let un = assert_send(map_unordered(p.clone(), |x: i32| x * 2, vec![1, 2, 3]).unwrap());
    let t = std::thread::spawn(move || {
        let a: Vec<i32> = it.map(Result::unwrap).collect();
        let mut b: Vec<i32> = un.map(Result::unwrap).collect();
        b.sort();
        (a, b)
    });
    let (a, b) = t.join().unwrap();
    assert_eq!(a, [2, 4, 6]);
    assert_eq!(b, [2, 4, 6]);
    let fs = vec![cfutures_core::Future::ready(1)];
    let ac = assert_send(cfutures_combinators::as_completed(fs, None));
    assert_eq!(std::thread::spawn(move || ac.count()).join().unwrap(), 1);
}

#[test]
fn progress_counts_a_short_last_chunk_exactly() {
    // 10 items in chunks of 4: 4 + 4 + 2. The last chunk's completion adds 2, not 4.
    let p = pool(2);
    let mut it = p.map_builder().chunksize(4).map(|x: u32| x, 0..10).unwrap();
    let all: Vec<u32> = it.by_ref().map(Result::unwrap).collect();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(it.progress().to_string(), "10/10");

    let mut it = p
        .map_builder()
        .chunksize(4)
        .map_unordered(|x: u32| x, 0..10)
        .unwrap();
    let mut all: Vec<u32> = it.by_ref().map(Result::unwrap).collect();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(it.progress().to_string(), "10/10");

    // All complete before the watcher is installed (inline executor): counted at once.
    let ex = InlineExecutor::new();
    let it = ex
        .map_builder()
        .chunksize(4)
        .map(|x: u32| x, 0..10)
        .unwrap();
    assert_eq!(it.progress().to_string(), "10/10");
}
