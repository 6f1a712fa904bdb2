//! Smoke tests of the core state machine (the full suite is in `core/tests/`).

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn result_across_threads() {
    let (p, f) = pending::<u64>();
    let t = std::thread::spawn(move || {
        assert!(p.set_running_or_notify_cancel());
        p.set_result(7).unwrap();
    });
    assert_eq!(*f.result_timeout(Duration::from_secs(10)).unwrap(), 7);
    t.join().unwrap();
    assert_eq!(f.into_result().unwrap(), 7);
}

#[test]
fn dropped_promise_breaks_future() {
    let (p, f) = pending::<u8>();
    drop(p);
    assert!(f.result().unwrap_err().is_broken());
}

#[test]
fn cancel_then_notify() {
    let (p, f) = pending::<u8>();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    f.add_done_callback(move |f| {
        assert!(f.cancelled());
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(f.cancel());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(f.cancel());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.completion(), None);
    assert!(!p.set_running_or_notify_cancel());
    assert_eq!(f.completion(), Some(Completion::Cancelled));
    assert!(f.result().unwrap_err().is_cancelled());
}
