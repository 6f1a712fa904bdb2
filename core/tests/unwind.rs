//! Nothing core runs on an executor's thread unwinds into it: panic payloads whose `Drop`
//! panics, results dropped by the promise, callbacks and waiters that panic (issue 11,
//! point 8). The thread-pool's `tests/faults.rs` checks the same through a pool.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cfutures_core::{discard_task, pending, Completion, FutureId, TaskError, Waitable, Waiter};

/// Its drop panics with a payload that is another `Bomb` while `depth > 0` (`u32::MAX`:
/// for ever).
struct Bomb(u32);

impl Drop for Bomb {
    fn drop(&mut self) {
        match self.0 {
            0 => panic!("bomb"),
            u32::MAX => panic::panic_any(Bomb(u32::MAX)),
            d => panic::panic_any(Bomb(d - 1)),
        }
    }
}

fn hostile(depth: u32) -> Box<dyn Any + Send> {
    Box::new(Bomb(depth))
}

/// Runs `f`, failing the test if it unwinds.
fn no_unwind<R>(what: &str, f: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => panic!("{what} unwound"),
    }
}

#[test]
fn from_panic_drops_hostile_payloads_without_unwinding() {
    for depth in [0, 5, u32::MAX] {
        let e = no_unwind("from_panic", || TaskError::from_panic(hostile(depth)));
        assert!(e.is_panic());
    }
}

#[test]
fn discard_task_survives_a_capture_whose_drop_panics_with_a_hostile_payload() {
    let bomb = Bomb(3);
    no_unwind("discard_task", || {
        discard_task(move || {
            let _b = &bomb;
        })
    });
}

#[test]
fn run_survives_a_task_that_panics_with_a_hostile_payload() {
    let (p, f) = pending::<u32>();
    assert!(no_unwind("run", || p
        .run(|| -> u32 { panic::resume_unwind(hostile(2)) })));
    assert!(f.result().unwrap_err().task_error().unwrap().is_panic());
}

#[test]
fn run_survives_a_result_whose_drop_panics_when_the_promise_drops_it() {
    let (p, f) = pending::<Bomb>();
    drop(f); // the promise holds the last reference: the result is dropped in `run`
    assert!(no_unwind("run", || p.run(|| Bomb(0))));
}

#[test]
fn a_callback_panicking_with_a_hostile_payload_does_not_stop_the_next_one() {
    let (p, f) = pending::<u32>();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let r = ran.clone();
        f.add_done_callback(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            panic::resume_unwind(hostile(1));
        });
    }
    no_unwind("set_result", || p.set_result(7).unwrap());
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(*f.result().unwrap(), 7);
}

struct Counting(AtomicUsize);
impl Waiter for Counting {
    fn notify(&self, _: FutureId, _: Completion) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
struct Panicking;
impl Waiter for Panicking {
    fn notify(&self, _: FutureId, _: Completion) {
        panic::resume_unwind(hostile(0));
    }
}

#[test]
fn a_panicking_waiter_does_not_stop_the_others() {
    let (p, f) = pending::<u32>();
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    let c: Arc<dyn Waiter> = counting.clone();
    let bad: Arc<dyn Waiter> = Arc::new(Panicking);
    // Inline slot, then the box: both positions.
    f.install_waiter(&bad).unwrap();
    f.install_waiter(&c).unwrap();
    f.install_waiter(&bad).unwrap();
    f.install_waiter(&c).unwrap();
    no_unwind("set_result", || p.set_result(1).unwrap());
    assert_eq!(counting.0.load(Ordering::SeqCst), 2);
}
