//! The waiter hook `wait` and `as_completed` are built on (SEMANTICS.md §2.8, §3): install,
//! remove, notify; a cancelled future counts only once its executor noticed; `AnyFuture`
//! mixes result types.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cfutures_core::{
    pending, AnyFuture, Completion, Future, FutureId, State, TaskError, Waitable, Waiter,
};

const LONG: Duration = Duration::from_secs(10);

/// Records every notification.
#[derive(Default)]
struct Log(Mutex<Vec<(FutureId, Completion)>>);

impl Waiter for Log {
    fn notify(&self, id: FutureId, completion: Completion) {
        self.0.lock().unwrap().push((id, completion));
    }
}

impl Log {
    fn take(&self) -> Vec<(FutureId, Completion)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn log() -> (Arc<Log>, Arc<dyn Waiter>) {
    let l = Arc::new(Log::default());
    let w: Arc<dyn Waiter> = l.clone();
    (l, w)
}

#[test]
fn installed_waiter_is_notified_once_on_result() {
    let (l, w) = log();
    let (p, f) = pending::<u8>();
    f.install_waiter(&w).expect("pending: installed");
    assert!(l.take().is_empty());
    assert!(p.set_running_or_notify_cancel());
    assert!(l.take().is_empty(), "running is not a completion");
    p.set_result(1).unwrap();
    assert_eq!(l.take(), vec![(f.id(), Completion::Succeeded)]);
    // Nothing more, ever.
    f.add_done_callback(|_| {});
    assert!(l.take().is_empty());
}

#[test]
fn notified_with_failed_for_exceptions_and_broken() {
    let (l, w) = log();
    let (p, f) = pending::<u8>();
    f.install_waiter(&w).unwrap();
    p.set_exception(TaskError::msg("x")).unwrap();
    assert_eq!(l.take(), vec![(f.id(), Completion::Failed)]);

    let (p, f) = pending::<u8>();
    f.install_waiter(&w).unwrap();
    drop(p);
    assert_eq!(l.take(), vec![(f.id(), Completion::Failed)]);
}

#[test]
fn cancel_alone_does_not_notify_waiters() {
    let (l, w) = log();
    let (p, f) = pending::<u8>();
    f.install_waiter(&w).unwrap();
    assert!(f.cancel());
    assert!(
        l.take().is_empty(),
        "a cancel the executor has not noticed is not complete"
    );
    assert_eq!(f.completion(), None);
    assert!(!p.set_running_or_notify_cancel());
    assert_eq!(l.take(), vec![(f.id(), Completion::Cancelled)]);
}

#[test]
fn cancelled_not_notified_accepts_a_waiter() {
    let (l, w) = log();
    let (p, f) = pending::<u8>();
    f.cancel();
    assert!(f.done());
    // Done for `done()`, but not complete for waiting: the waiter is installed.
    f.install_waiter(&w).expect("not complete for wait yet");
    drop(p);
    assert_eq!(l.take(), vec![(f.id(), Completion::Cancelled)]);
}

#[test]
fn install_on_a_complete_future_returns_its_completion() {
    let (l, w) = log();
    assert_eq!(
        Future::ready(1u8).install_waiter(&w).unwrap_err(),
        Completion::Succeeded
    );
    assert_eq!(
        Future::<u8>::failed(TaskError::msg("e"))
            .install_waiter(&w)
            .unwrap_err(),
        Completion::Failed
    );
    let (p, f) = pending::<u8>();
    f.cancel();
    assert!(!p.set_running_or_notify_cancel());
    assert_eq!(f.install_waiter(&w).unwrap_err(), Completion::Cancelled);
    assert!(l.take().is_empty(), "a refused install never notifies");
}

#[test]
fn removed_waiter_is_not_notified() {
    let (l, w) = log();
    let (p, f) = pending::<u8>();
    let k = f.install_waiter(&w).unwrap();
    f.remove_waiter(k);
    f.remove_waiter(k); // twice: harmless
    p.set_result(1).unwrap();
    assert!(l.take().is_empty());
    f.remove_waiter(k); // after completion: harmless
}

#[test]
fn removing_one_waiter_keeps_the_others() {
    let (l, w) = log();
    let (p, f) = pending::<u8>();
    let keys: Vec<_> = (0..5).map(|_| f.install_waiter(&w).unwrap()).collect();
    f.remove_waiter(keys[1]);
    f.remove_waiter(keys[3]);
    p.set_result(1).unwrap();
    assert_eq!(l.take().len(), 3);
}

#[test]
fn a_stale_key_does_not_remove_a_newer_installation() {
    // Slots are reused; the key's token tells installations in the same slot apart.
    let (l, w) = log();
    let (p, f) = pending::<u8>();
    let old = f.install_waiter(&w).unwrap();
    f.remove_waiter(old);
    let _new = f.install_waiter(&w).unwrap();
    f.remove_waiter(old);
    p.set_result(1).unwrap();
    assert_eq!(l.take(), vec![(f.id(), Completion::Succeeded)]);
}

#[test]
fn one_waiter_on_many_futures() {
    let (l, w) = log();
    let pairs: Vec<_> = (0..10).map(|_| pending::<u32>()).collect();
    for (_, f) in &pairs {
        f.install_waiter(&w).unwrap();
    }
    let ids: Vec<_> = pairs.iter().map(|(_, f)| f.id()).collect();
    for (i, (p, _)) in pairs.into_iter().enumerate() {
        p.set_result(i as u32).unwrap();
    }
    let got: Vec<_> = l.take().into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, ids);
}

#[test]
fn waiter_notified_from_another_thread() {
    struct Wake(Mutex<Option<FutureId>>, std::thread::Thread);
    impl Waiter for Wake {
        fn notify(&self, id: FutureId, _: Completion) {
            *self.0.lock().unwrap() = Some(id);
            self.1.unpark();
        }
    }
    let wake = Arc::new(Wake(Mutex::new(None), thread::current()));
    let w: Arc<dyn Waiter> = wake.clone();
    let (p, f) = pending::<u8>();
    f.install_waiter(&w).unwrap();
    let t = thread::spawn(move || p.set_result(1).unwrap());
    let deadline = Instant::now() + LONG;
    while wake.0.lock().unwrap().is_none() {
        assert!(Instant::now() < deadline, "never notified");
        thread::park_timeout(Duration::from_millis(10));
    }
    assert_eq!(*wake.0.lock().unwrap(), Some(f.id()));
    t.join().unwrap();
}

#[test]
fn completion_per_state() {
    let (p, f) = pending::<u8>();
    assert_eq!(f.completion(), None);
    assert!(p.set_running_or_notify_cancel());
    assert_eq!(f.completion(), None);
    p.set_result(1).unwrap();
    assert_eq!(f.completion(), Some(Completion::Succeeded));
}

#[test]
fn any_future_mixes_result_types() {
    let (p1, f1) = pending::<u8>();
    let (p2, f2) = pending::<String>();
    let (p3, f3) = pending::<Vec<u64>>();
    let all: Vec<AnyFuture> = vec![f1.erase(), f2.clone().into(), AnyFuture::new(f3.clone())];
    assert!(all.iter().all(|a| a.state() == State::Pending));

    let (l, w) = log();
    let keys: Vec<_> = all.iter().map(|a| a.install_waiter(&w).unwrap()).collect();
    all[2].remove_waiter(keys[2]);

    p1.set_result(1).unwrap();
    assert!(all[1].cancel());
    drop(p2);
    p3.set_result(vec![3]).unwrap();
    assert_eq!(
        l.take(),
        vec![
            (f1.id(), Completion::Succeeded),
            (f2.id(), Completion::Cancelled)
        ]
    );
    assert_eq!(all[0].completion(), Some(Completion::Succeeded));
    assert_eq!(all[1].state(), State::Cancelled);
    assert!(all[2].wait_deadline(Some(Instant::now() + LONG)));
    assert_eq!(*f3.result().unwrap(), vec![3]);
}

#[test]
fn any_future_identity_matches_the_typed_future() {
    let (_p, f) = pending::<u8>();
    let (_q, g) = pending::<String>();
    let a = f.erase();
    let b: AnyFuture = f.clone().into();
    assert_eq!(a, b);
    assert_eq!(a.id(), f.id());
    assert_ne!(a, g.erase());
    let set: HashSet<AnyFuture> = [a.clone(), b, g.erase()].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert!(format!("{a:?}").contains("Pending"));
    // The erased handle works through `Deref` and as a `Waitable` itself.
    fn waitable_id(w: &dyn Waitable) -> FutureId {
        w.id()
    }
    assert_eq!(waitable_id(&a), f.id());
    assert_eq!(waitable_id(&*a), f.id());
}

#[test]
fn any_future_wait_deadline_times_out_and_completes() {
    let (p, f) = pending::<u8>();
    let a = f.erase();
    assert!(!a.wait_deadline(Some(Instant::now())));
    assert!(!a.wait_deadline(Some(Instant::now() + Duration::from_millis(10))));
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        p.set_result(1).unwrap();
    });
    assert!(a.wait_deadline(Some(Instant::now() + LONG)));
    t.join().unwrap();
}

#[test]
fn install_racing_completion_is_notified_or_refused_never_lost() {
    // `install_waiter` is atomic with respect to completion.
    for _ in 0..500 {
        let (l, w) = log();
        let (p, f) = pending::<u8>();
        let b = Arc::new(std::sync::Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait();
            p.set_result(1).unwrap();
        });
        b.wait();
        let installed = f.install_waiter(&w);
        t.join().unwrap();
        match installed {
            Ok(_) => assert_eq!(l.take(), vec![(f.id(), Completion::Succeeded)]),
            Err(c) => {
                assert_eq!(c, Completion::Succeeded);
                assert!(l.take().is_empty());
            }
        }
    }
}

#[test]
fn a_key_is_16_bytes_and_so_is_an_optional_one() {
    assert_eq!(std::mem::size_of::<cfutures_core::WaiterKey>(), 16);
    assert_eq!(std::mem::size_of::<Option<cfutures_core::WaiterKey>>(), 16);
}
