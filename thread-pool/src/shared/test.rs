//! The worker's backstop: a loop that unwinds anyway (by fault injection, since nothing a
//! user can do reaches it) is accounted for and replaced.

use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::ThreadPoolExecutor;

/// The address of the pool whose next worker-loop turn unwinds (0: none).
static UNWIND_NEXT: AtomicUsize = AtomicUsize::new(0);
/// How many injected unwinds happened.
static INJECTED: AtomicUsize = AtomicUsize::new(0);

/// Called at the top of every turn of the worker loop (test builds only).
pub(super) fn maybe_unwind(shared: &Shared) {
    let me = shared as *const Shared as usize;
    if UNWIND_NEXT.load(Ordering::SeqCst) == me
        && UNWIND_NEXT
            .compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        INJECTED.fetch_add(1, Ordering::SeqCst);
        // A payload whose drop panics, for good measure.
        panic::panic_any(PanicOnDrop);
    }
}

struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("the injected payload panics on drop");
    }
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_worker_loop_that_unwinds_is_replaced_and_accounted_for() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    assert_eq!(*pool.submit(|| 1).unwrap().result().unwrap(), 1);
    // The worker goes to sleep; the next submit wakes it, and its next turn unwinds.
    eventually("the worker sleeps", || {
        pool.shared.sleeping.load(Ordering::SeqCst) == 1
    });
    let before = INJECTED.load(Ordering::SeqCst);
    UNWIND_NEXT.store(Arc::as_ptr(&pool.shared) as usize, Ordering::SeqCst);
    let f = pool.submit(|| 2).unwrap();
    assert_eq!(*f.result_timeout(Duration::from_secs(10)).unwrap(), 2);
    assert_eq!(INJECTED.load(Ordering::SeqCst), before + 1);
    // Counts are right: one live thread (the replacement), nobody counted spinning twice.
    eventually("one live thread", || pool.live_threads() == 1);
    assert_eq!(pool.shared.started_threads(), 2);
    let fs: Vec<_> = (0..10).map(|i| pool.submit(move || i).unwrap()).collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(Duration::from_secs(10)).unwrap(), i);
    }
    pool.shutdown(true, false);
    assert_eq!(pool.live_threads(), 0);
    assert_eq!(pool.shared.thread_handles(), 0);
}
