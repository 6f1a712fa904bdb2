//! How core blocks: spin, yield, park; the per-thread blocking hook pools use to avoid
//! nested-wait deadlocks; `block_until` and `Backoff` as public building blocks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cfutures_core::blocking::{self, Backoff, BlockingHook};
use cfutures_core::{pending, Future};

const LONG: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Hook {
    before: AtomicUsize,
    after: AtomicUsize,
}

impl BlockingHook for Hook {
    fn before_park(&self) {
        self.before.fetch_add(1, Ordering::SeqCst);
    }
    fn after_park(&self) {
        self.after.fetch_add(1, Ordering::SeqCst);
    }
}

fn with_hook<R>(f: impl FnOnce(&Hook) -> R) -> R {
    let hook = Arc::new(Hook::default());
    let prev = blocking::set_thread_hook(Some(hook.clone()));
    assert!(prev.is_none());
    let r = f(&hook);
    let mine = blocking::set_thread_hook(None).expect("still installed");
    let hook: Arc<dyn BlockingHook> = hook;
    assert!(Arc::ptr_eq(&mine, &hook));
    r
}

#[test]
fn hook_is_told_around_a_real_park() {
    with_hook(|hook| {
        let (p, f) = pending::<u8>();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            p.set_result(1).unwrap();
        });
        assert_eq!(*f.result_timeout(LONG).unwrap(), 1);
        t.join().unwrap();
        assert_eq!(hook.before.load(Ordering::SeqCst), 1);
        assert_eq!(hook.after.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn hook_is_told_around_a_park_that_times_out() {
    with_hook(|hook| {
        let (_p, f) = pending::<u8>();
        assert!(f
            .result_timeout(Duration::from_millis(20))
            .unwrap_err()
            .is_timeout());
        assert_eq!(hook.before.load(Ordering::SeqCst), 1);
        assert_eq!(hook.after.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn hook_is_not_told_when_nothing_parks() {
    with_hook(|hook| {
        let f = Future::ready(1u8);
        assert_eq!(*f.result().unwrap(), 1);
        let (_p, g) = pending::<u8>();
        assert!(g.result_timeout(Duration::ZERO).is_err());
        assert_eq!(hook.before.load(Ordering::SeqCst), 0);
        assert_eq!(hook.after.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn hooks_are_per_thread() {
    let hook = Arc::new(Hook::default());
    blocking::set_thread_hook(Some(hook.clone()));
    let t = thread::spawn(|| {
        let (p, f) = pending::<u8>();
        let setter = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            p.set_result(1).unwrap();
        });
        f.result_timeout(LONG).unwrap();
        setter.join().unwrap();
    });
    t.join().unwrap();
    assert_eq!(hook.before.load(Ordering::SeqCst), 0);
    blocking::set_thread_hook(None);
}

#[test]
fn set_thread_hook_returns_the_previous_one() {
    let a: Arc<dyn BlockingHook> = Arc::new(Hook::default());
    let b: Arc<dyn BlockingHook> = Arc::new(Hook::default());
    assert!(blocking::set_thread_hook(Some(a.clone())).is_none());
    let prev = blocking::set_thread_hook(Some(b.clone())).unwrap();
    assert!(Arc::ptr_eq(&prev, &a));
    let prev = blocking::set_thread_hook(None).unwrap();
    assert!(Arc::ptr_eq(&prev, &b));
    assert!(blocking::set_thread_hook(None).is_none());
}

#[test]
fn backoff_completes_after_spinning_and_yielding() {
    let mut b = Backoff::new();
    assert!(!b.is_completed());
    let mut steps = 0;
    while !b.is_completed() {
        b.snooze();
        steps += 1;
        assert!(steps < 1000, "never completes");
    }
    assert!(steps > 1, "parks without spinning or yielding first");
    assert!(!Backoff::default().is_completed());
}

#[test]
fn block_until_returns_at_once_when_ready() {
    let parked = AtomicBool::new(false);
    assert!(blocking::block_until(
        None,
        || true,
        || {
            parked.store(true, Ordering::SeqCst);
            true
        },
        || {}
    ));
    assert!(!parked.load(Ordering::SeqCst));
}

#[test]
fn block_until_respects_a_past_deadline() {
    assert!(!blocking::block_until(
        Some(Instant::now()),
        || false,
        || panic!("must not prepare to park"),
        || panic!("must not park")
    ));
}

#[test]
fn block_until_before_park_may_say_already_ready() {
    let after = AtomicUsize::new(0);
    assert!(blocking::block_until(
        Some(Instant::now() + LONG),
        || false,
        || false,
        || {
            after.fetch_add(1, Ordering::SeqCst);
        }
    ));
    assert_eq!(after.load(Ordering::SeqCst), 1);
}

#[test]
fn block_until_is_woken_by_unpark() {
    let flag = Arc::new(AtomicBool::new(false));
    let me = thread::current();
    let f2 = flag.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        f2.store(true, Ordering::SeqCst);
        me.unpark();
    });
    let start = Instant::now();
    assert!(blocking::block_until(
        Some(start + LONG),
        || flag.load(Ordering::SeqCst),
        || true,
        || {}
    ));
    t.join().unwrap();
}

#[test]
fn deadline_after_overflow_is_no_deadline() {
    assert!(blocking::deadline_after(Duration::MAX).is_none());
    let d = blocking::deadline_after(Duration::from_secs(1)).unwrap();
    assert!(d > Instant::now());
}
