//! `map_vec`: a `Vec` in, a `Vec` out, the workers reading and writing in place. Results
//! equal the sequential map; the first failure in input order is reported; and every item
//! and every value is dropped exactly once — on success, on a panic, on a timeout, on a
//! refusal and on cancellation.

mod common;

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cfutures_combinators::ExecutorExt;
use cfutures_core::{Executor, Future, InlineExecutor, Submit, SubmitError, Task};
use cfutures_thread_pool::ThreadPoolExecutor;
use common::*;
use proptest::prelude::*;

/// A value that counts the live instances of its kind: +1 when made, -1 when dropped
/// (and, if `boom`, then panics).
struct Counted {
    n: u64,
    live: Arc<AtomicIsize>,
    boom: bool,
}

impl Counted {
    fn new(n: u64, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Counted {
            n,
            live: live.clone(),
            boom: false,
        }
    }
    fn booming(n: u64, live: &Arc<AtomicIsize>) -> Self {
        let mut c = Counted::new(n, live);
        c.boom = true;
        c
    }
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counted({})", self.n)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        if self.boom && !std::thread::panicking() {
            panic!("{PLANNED}: drop of {}", self.n);
        }
    }
}

#[test]
fn values_in_input_order() {
    let pool = ThreadPoolExecutor::new(3).unwrap();
    let input: Vec<u64> = (0..10_000).collect();
    let want: Vec<u64> = input.iter().map(|x| x * 3 + 1).collect();
    assert_eq!(pool.map_vec(|x| x * 3 + 1, input.clone()).unwrap(), want);
    for chunksize in [1, 7, 4096, 10_000, 1 << 20] {
        let got = pool
            .map_builder()
            .chunksize(chunksize)
            .map_vec(|x| x * 3 + 1, input.clone())
            .unwrap();
        assert_eq!(got, want, "chunksize {chunksize}");
    }
}

#[test]
fn empty_and_zero_sized() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    assert!(pool.map_vec(|x: u8| x, Vec::new()).unwrap().is_empty());
    let units = pool.map_vec(|()| (), vec![(); 1000]).unwrap();
    assert_eq!(units.len(), 1000);
    let from_units = pool.map_vec(|()| 7u8, vec![(); 33]).unwrap();
    assert_eq!(from_units, vec![7u8; 33]);
}

#[test]
fn items_and_values_of_other_types_move_and_drop_once() {
    let live_in = Arc::new(AtomicIsize::new(0));
    let live_out = Arc::new(AtomicIsize::new(0));
    {
        let pool = ThreadPoolExecutor::new(2).unwrap();
        let input: Vec<Counted> = (0..5000).map(|i| Counted::new(i, &live_in)).collect();
        let lo = live_out.clone();
        let out = pool
            .map_builder()
            .chunksize(64)
            .map_vec(move |c: Counted| Counted::new(c.n * 2, &lo), input)
            .unwrap();
        assert_eq!(live_in.load(Ordering::SeqCst), 0, "every item moved into f");
        assert_eq!(live_out.load(Ordering::SeqCst), 5000);
        assert!(out.iter().enumerate().all(|(i, c)| c.n == 2 * i as u64));
    }
    assert_eq!(live_out.load(Ordering::SeqCst), 0);
}

#[test]
fn strings_in_strings_out() {
    let pool = InlineExecutor::new();
    let words: Vec<String> = (0..100).map(|i| "x".repeat(i)).collect();
    let out = pool
        .map_builder()
        .chunksize(9)
        .map_vec(|w: String| format!("{}!", w.len()), words)
        .unwrap();
    assert_eq!(out[0], "0!");
    assert_eq!(out[99], "99!");
}

#[test]
fn first_failure_in_input_order_and_nothing_leaks() {
    quiet_planned_panics();
    let live_in = Arc::new(AtomicIsize::new(0));
    let live_out = Arc::new(AtomicIsize::new(0));
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let input: Vec<Counted> = (0..2000).map(|i| Counted::new(i, &live_in)).collect();
    let lo = live_out.clone();
    let err = pool
        .map_builder()
        .chunksize(100)
        .map_vec(
            move |c: Counted| {
                if c.n == 1234 || c.n == 1750 || c.n == 1999 {
                    panic!("{PLANNED} at {}", c.n);
                }
                Counted::new(c.n, &lo)
            },
            input,
        )
        .unwrap_err();
    let te = err.task_error().expect("a task failure");
    assert!(te.is_panic());
    assert!(err.to_string().contains("at 1234"), "{err}");
    // The chunks still running finish; then nothing is left alive.
    pool.shutdown(true, false);
    assert_eq!(live_in.load(Ordering::SeqCst), 0);
    assert_eq!(live_out.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_drop_of_an_item_not_reached_does_not_hide_the_failure() {
    quiet_planned_panics();
    let live = Arc::new(AtomicIsize::new(0));
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let input: Vec<Counted> = (0..10)
        .map(|i| {
            if i == 7 {
                Counted::booming(i, &live)
            } else {
                Counted::new(i, &live)
            }
        })
        .collect();
    let err = pool
        .map_builder()
        .chunksize(10)
        .map_vec(
            |c: Counted| {
                if c.n == 3 {
                    panic!("{PLANNED} in f at 3");
                }
                c.n
            },
            input,
        )
        .unwrap_err();
    assert!(err.to_string().contains("in f at 3"), "{err}");
    pool.shutdown(true, false);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_drop_of_a_value_still_drops_the_others_and_frees_the_buffer() {
    // Chunk 0 (items 0..50) fails at item 0, but only once the seven other chunks are done;
    // their values include one (120, in chunk 2) whose drop panics. The caller drops the
    // output last, so that panic reaches it; the values of chunks 3..8 must still be
    // dropped.
    quiet_planned_panics();
    let live = Arc::new(AtomicIsize::new(0));
    let others = Arc::new(AtomicUsize::new(0));
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let (lv, o) = (live.clone(), others.clone());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.map_builder().chunksize(50).map_vec(
            move |n: u64| {
                if n == 0 {
                    let end = std::time::Instant::now() + LONG;
                    while o.load(Ordering::SeqCst) < 350 {
                        assert!(
                            std::time::Instant::now() < end,
                            "the other chunks never ran"
                        );
                        std::thread::yield_now();
                    }
                    panic!("{PLANNED} in f at 0");
                }
                let c = if n == 120 {
                    Counted::booming(n, &lv)
                } else {
                    Counted::new(n, &lv)
                };
                if n >= 50 {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                c
            },
            (0..400).collect(),
        )
    }));
    pool.shutdown(true, false);
    assert!(!matches!(r, Ok(Ok(_))));
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn timeout_cancels_the_chunks_not_started_and_drops_everything() {
    let live = Arc::new(AtomicIsize::new(0));
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let gate = Latch::new();
    let g = gate.clone();
    let input: Vec<Counted> = (0..10).map(|i| Counted::new(i, &live)).collect();
    let err = pool
        .map_builder()
        .chunksize(2)
        .timeout(Duration::from_millis(50))
        .map_vec(
            move |c: Counted| {
                g.wait();
                c.n
            },
            input,
        )
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    gate.open();
    pool.shutdown(true, false);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn refused_after_shutdown() {
    let live = Arc::new(AtomicIsize::new(0));
    let pool = ThreadPoolExecutor::new(1).unwrap();
    pool.shutdown(true, false);
    let input: Vec<Counted> = (0..10).map(|i| Counted::new(i, &live)).collect();
    let err = pool.map_vec(|c: Counted| c.n, input).unwrap_err();
    assert!(matches!(err, cfutures_core::Error::Broken(_)), "{err}");
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// An executor that passes tasks on to `inner` and opens `all` at the `expect`-th
/// submission, so a test knows when a call has submitted everything.
struct Counting<E> {
    inner: E,
    submitted: AtomicUsize,
    expect: usize,
    all: Latch,
}

impl<E: Executor> Executor for Counting<E> {
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.inner.shutdown(wait, cancel_futures)
    }
    fn is_shutdown(&self) -> bool {
        self.inner.is_shutdown()
    }
}

impl<T: Task, E: Submit<T>> Submit<T> for Counting<E> {
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        let r = self.inner.submit(task);
        if self.submitted.fetch_add(1, Ordering::SeqCst) + 1 == self.expect {
            self.all.open();
        }
        r
    }
}

#[test]
fn cancelled_chunks_report_cancelled() {
    // One worker, held by the first chunk (or not started yet); once all three chunks are
    // submitted, shutdown(cancel_futures) cancels the queued ones.
    let live = Arc::new(AtomicIsize::new(0));
    let all = Latch::new();
    let pool = Arc::new(Counting {
        inner: ThreadPoolExecutor::new(1).unwrap(),
        submitted: AtomicUsize::new(0),
        expect: 3,
        all: all.clone(),
    });
    let gate = Latch::new();
    let g = gate.clone();
    let input: Vec<Counted> = (0..6).map(|i| Counted::new(i, &live)).collect();
    let p = pool.clone();
    let caller = std::thread::spawn(move || {
        p.map_builder().chunksize(2).map_vec(
            move |c: Counted| {
                g.wait();
                c.n
            },
            input,
        )
    });
    all.wait();
    pool.shutdown(false, true);
    gate.open();
    let err = caller.join().unwrap().unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    pool.shutdown(true, false);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn works_over_the_test_executor_too() {
    let ex = Threads::new(3);
    let out = ex
        .map_builder()
        .chunksize(5)
        .map_vec(|x: i64| -x, (0..100).collect())
        .unwrap();
    assert_eq!(out, (0..100).map(|x: i64| -x).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random lengths, chunk sizes and worker counts: `map_vec` equals the sequential map.
    #[test]
    fn equals_sequential_map(
        input in prop::collection::vec(any::<u32>(), 0..3000),
        chunksize in prop::option::of(1usize..500),
        workers in 1usize..4,
    ) {
        let pool = ThreadPoolExecutor::new(workers).unwrap();
        let mut b = pool.map_builder();
        if let Some(c) = chunksize {
            b = b.chunksize(c);
        }
        let got = b.map_vec(|x: u32| u64::from(x) * 7, input.clone()).unwrap();
        let want: Vec<u64> = input.iter().map(|&x| u64::from(x) * 7).collect();
        prop_assert_eq!(got, want);
    }

    /// Random failing items: the error names the first of them in input order, and every
    /// item and value is dropped exactly once.
    #[test]
    fn random_failures(
        len in 1usize..800,
        fail in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        chunksize in 1usize..100,
        workers in 1usize..4,
    ) {
        quiet_planned_panics();
        let failing: Vec<u64> = fail.iter().map(|i| i.index(len) as u64).collect();
        let first = failing.iter().min().copied();
        let live_in = Arc::new(AtomicIsize::new(0));
        let live_out = Arc::new(AtomicIsize::new(0));
        let pool = ThreadPoolExecutor::new(workers).unwrap();
        let input: Vec<Counted> = (0..len as u64).map(|i| Counted::new(i, &live_in)).collect();
        let lo = live_out.clone();
        let r = pool.map_builder().chunksize(chunksize).map_vec(
            move |c: Counted| {
                if failing.contains(&c.n) {
                    panic!("{PLANNED} at {}.", c.n);
                }
                Counted::new(c.n, &lo)
            },
            input,
        );
        match first {
            None => {
                let out = r.unwrap();
                prop_assert!(out.iter().enumerate().all(|(i, c)| c.n == i as u64));
            }
            Some(i) => {
                let err = r.expect_err("a failure");
                let at = format!("at {i}.");
                prop_assert!(err.to_string().contains(&at), "{}", err);
            }
        }
        pool.shutdown(true, false);
        prop_assert_eq!(live_in.load(Ordering::SeqCst), 0);
        prop_assert_eq!(live_out.load(Ordering::SeqCst), 0);
    }
}
