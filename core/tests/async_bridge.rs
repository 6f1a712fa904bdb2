//! The async bridge: a cfutures `Future` awaited from async code — under tokio and under a
//! minimal hand-written executor — including wake-ups that race completion, cancellation,
//! and dropping the awaiting side. (The loom models of the waker registration are in
//! `loom.rs`.)

use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use cfutures_core::{pending, Future, InlineExecutor, Submit};

const LIMIT: Duration = Duration::from_secs(30);

/// The smallest executor: poll, park until woken, poll again — with a deadline, so a lost
/// wake-up fails the test instead of hanging it.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark()
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut f = std::pin::pin!(f);
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
            return v;
        }
        let now = Instant::now();
        assert!(now < deadline, "not woken within {LIMIT:?}: a lost wake-up");
        std::thread::park_timeout(deadline - now);
    }
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountWakes(AtomicUsize);
impl Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
fn counting_waker() -> (Arc<CountWakes>, Waker) {
    let c = Arc::new(CountWakes::default());
    (c.clone(), Waker::from(c))
}

fn poll_once<F: std::future::Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Counts its clones, to tell "moved out" from "cloned".
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>, u32);
impl Clone for Counted {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::SeqCst);
        Counted(self.0.clone(), self.1)
    }
}

#[test]
fn await_gives_the_value_of_a_future_completed_on_another_thread() {
    let (p, f) = pending::<u64>();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5)); // let the awaiting side park first
        p.set_result(42).unwrap();
    });
    assert_eq!(block_on(f.into_future()).unwrap(), 42);
    t.join().unwrap();
}

#[test]
fn await_moves_the_value_out_of_the_last_handle_and_clones_otherwise() {
    let clones = Arc::new(AtomicUsize::new(0));
    let f = Future::ready(Counted(clones.clone(), 1));
    assert_eq!(block_on(f.into_future()).unwrap().1, 1);
    assert_eq!(
        clones.load(Ordering::SeqCst),
        0,
        "the last handle moves the value out"
    );

    let f = Future::ready(Counted(clones.clone(), 2));
    let other = f.clone();
    assert_eq!(block_on(f.into_future()).unwrap().1, 2);
    assert_eq!(clones.load(Ordering::SeqCst), 1, "shared: cloned");
    assert_eq!(
        other.result().unwrap().1,
        2,
        "the other handle still has it"
    );
}

#[test]
fn awaiting_a_reference_needs_no_clone() {
    struct NotClone(&'static str);
    let ex = InlineExecutor::new();
    let f = ex.submit(|| NotClone("hello")).unwrap();
    let v: &NotClone = block_on((&f).into_future()).unwrap();
    assert_eq!(v.0, "hello");
    assert!(
        std::ptr::eq(v, f.result().unwrap()),
        "the same value, not a copy"
    );
}

#[test]
fn await_gives_the_failure_cancellation_and_broken_errors() {
    let ex = InlineExecutor::new();
    let boom = ex.submit(|| -> u8 { panic!("boom") }).unwrap();
    let e = block_on(boom.into_future()).unwrap_err();
    assert_eq!(e.task_error().unwrap().panic_message(), Some("boom"));

    let (p, f) = pending::<u8>();
    drop(p); // the executor lost it
    assert!(block_on(f.into_future()).unwrap_err().is_broken());

    let (_p, f) = pending::<u8>();
    assert!(f.cancel());
    assert!(block_on((&f).into_future()).unwrap_err().is_cancelled());
}

#[test]
fn a_cancel_by_anyone_wakes_the_awaiting_side_at_once() {
    // Woken by the cancel itself, before the executor notices it (as `result()` returns at
    // once): the promise is still alive and never looks at the future.
    let (promise, f) = pending::<u8>();
    let (count, waker) = counting_waker();
    let mut awaiting = (&f).into_future();
    assert!(poll_once(&mut awaiting, &waker).is_pending());
    assert!(f.clone().cancel());
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    match poll_once(&mut awaiting, &waker) {
        Poll::Ready(r) => assert!(r.unwrap_err().is_cancelled()),
        Poll::Pending => panic!("still pending after the cancel"),
    }
    drop(promise);
}

#[test]
fn a_new_waker_replaces_the_old_one() {
    let (p, f) = pending::<u8>();
    let (old, old_waker) = counting_waker();
    let (new, new_waker) = counting_waker();
    let mut awaiting = (&f).into_future();
    assert!(poll_once(&mut awaiting, &old_waker).is_pending());
    assert!(poll_once(&mut awaiting, &old_waker).is_pending()); // same waker: kept
    assert!(poll_once(&mut awaiting, &new_waker).is_pending()); // the task moved
    p.set_result(1).unwrap();
    assert_eq!(
        old.0.load(Ordering::SeqCst),
        0,
        "the replaced waker is not woken"
    );
    assert_eq!(new.0.load(Ordering::SeqCst), 1);
    assert!(poll_once(&mut awaiting, &new_waker).is_ready());
}

#[test]
fn dropping_the_awaiting_side_does_not_cancel_and_unregisters() {
    let (p, f) = pending::<u8>();
    let (count, waker) = counting_waker();
    let mut awaiting = f.clone().into_future();
    assert!(poll_once(&mut awaiting, &waker).is_pending());
    drop(awaiting);
    assert!(!f.cancelled(), "a plain await does not cancel when dropped");
    assert!(p.set_running_or_notify_cancel(), "the task still runs");
    p.set_result(9).unwrap();
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        0,
        "the dropped await's waker was removed"
    );
    assert_eq!(*f.result().unwrap(), 9);
}

#[test]
fn cancel_on_drop_cancels_a_task_that_has_not_started() {
    let (p, f) = pending::<u8>();
    let (_, waker) = counting_waker();
    let mut awaiting = f.clone().cancel_on_drop();
    assert!(poll_once(&mut awaiting, &waker).is_pending());
    drop(awaiting);
    assert!(f.cancelled());
    assert!(!p.set_running_or_notify_cancel(), "the executor skips it");

    // A reference await too.
    let (p, f) = pending::<u8>();
    let mut awaiting = (&f).into_future().cancel_on_drop();
    assert!(poll_once(&mut awaiting, &waker).is_pending());
    drop(awaiting);
    assert!(f.cancelled());
    drop(p);

    // A running task cannot be cancelled: it finishes, and its value stays readable.
    let (p, f) = pending::<u8>();
    assert!(p.set_running_or_notify_cancel());
    let mut awaiting = f.clone().cancel_on_drop();
    assert!(poll_once(&mut awaiting, &waker).is_pending());
    drop(awaiting);
    p.set_result(3).unwrap();
    assert_eq!(*f.result().unwrap(), 3);

    // A completed await cancels nothing.
    let f = Future::ready(4u8);
    assert_eq!(block_on(f.clone().cancel_on_drop()).unwrap(), 4);
    assert!(!f.cancelled());
}

#[test]
fn wake_ups_racing_completion_are_never_lost() {
    // Each round: one thread completes the future while this one polls and parks; the
    // barrier lines the two up so the completion lands anywhere in the poll.
    for round in 0..2_000u32 {
        let (p, f) = pending::<u32>();
        let start = Arc::new(Barrier::new(2));
        let s = start.clone();
        let t = std::thread::spawn(move || {
            s.wait();
            if round % 2 == 0 {
                std::hint::spin_loop();
            }
            p.set_result(round).unwrap();
        });
        start.wait();
        let got = if round % 2 == 0 {
            block_on(f.into_future()).unwrap()
        } else {
            *block_on((&f).into_future()).unwrap()
        };
        assert_eq!(got, round);
        t.join().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_awaits_futures_completed_by_other_threads() {
    let mut promises = Vec::new();
    let mut futures = Vec::new();
    for i in 0..100u64 {
        let (p, f) = pending::<u64>();
        promises.push((i, p));
        futures.push(f);
    }
    let t = std::thread::spawn(move || {
        for (i, p) in promises.into_iter().rev() {
            p.set_result(i * i).unwrap();
        }
    });
    // Each awaited in its own tokio task, all at once.
    let tasks: Vec<_> = futures
        .into_iter()
        .map(|f| tokio::spawn(f.into_future()))
        .collect();
    let mut total = 0;
    for task in tasks {
        total += tokio::time::timeout(LIMIT, task)
            .await
            .expect("woken in time")
            .unwrap()
            .unwrap();
    }
    assert_eq!(total, (0..100u64).map(|i| i * i).sum());
    t.join().unwrap();
}

#[tokio::test]
async fn tokio_select_and_timeout_drop_the_await_without_cancelling() {
    let (p, f) = pending::<u8>();
    // A timeout that fires drops the await: the cfutures future is not cancelled.
    let r = tokio::time::timeout(Duration::from_millis(10), (&f).into_future()).await;
    assert!(r.is_err(), "timed out");
    assert!(!f.cancelled());
    p.set_result(5).unwrap();
    assert_eq!(*(&f).await.unwrap(), 5);

    // With cancel_on_drop, the lost branch cancels the task it no longer wants.
    let (p, f) = pending::<u8>();
    tokio::select! {
        _ = f.clone().cancel_on_drop() => panic!("nobody completes it"),
        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
    }
    assert!(f.cancelled());
    assert!(!p.set_running_or_notify_cancel());
}
