//! loom models of the races in the future's state machine. Run with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p cfutures-core --release --test loom -- --test-threads=1
//! ```
//!
//! Under `cfg(loom)`, core's atomics, mutex, `Arc`, `UnsafeCell`, thread-locals and
//! park / unpark are loom's (`core/src/sync.rs`), and a blocking wait yields once and then
//! parks, so loom explores every interleaving of: the state word's transitions, the listener
//! registration under the lock, the value's write and read, and the park / unpark hand-off.
//! A lost wake-up shows up as a loom deadlock ("all threads parked").
#![cfg(loom)]

use std::future::{Future as _, IntoFuture};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cfutures_core::{pending, Completion, FutureId, State, Waitable, Waiter};
use loom::thread;

/// Counts notifications (plain std types: loom runs a model on one OS thread, and these
/// never block).
#[derive(Default)]
struct Count(AtomicUsize, Mutex<Option<Completion>>);
impl Waiter for Count {
    fn notify(&self, _: FutureId, c: Completion) {
        self.0.fetch_add(1, Ordering::SeqCst);
        *self.1.lock().unwrap() = Some(c);
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

#[test]
fn cancel_vs_set_running() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let w = Arc::new(Count::default());
        let dw: Arc<dyn Waiter> = w.clone();
        f.install_waiter(&dw).unwrap();
        // A loom atomic: its increment is a point where loom may switch threads, so the
        // model sees a callback that is still running in another thread.
        let calls = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        f.add_done_callback(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });

        let g = f.clone();
        let c2 = calls.clone();
        let canceller = thread::spawn(move || {
            let won = g.cancel();
            // A cancel that wins has run the callbacks before it returns (Python).
            assert!(!won || c2.load(Ordering::SeqCst) == 1);
            won
        });
        let ran = p.set_running_or_notify_cancel();
        let cancelled = canceller.join().unwrap();

        // Exactly one wins.
        assert!(ran != cancelled, "ran={ran} cancelled={cancelled}");
        if ran {
            assert_eq!(f.state(), State::Running);
            assert_eq!(calls.load(Ordering::SeqCst), 0);
            assert_eq!(w.0.load(Ordering::SeqCst), 0);
            p.set_result(1).unwrap();
            assert_eq!(w.0.load(Ordering::SeqCst), 1);
            assert_eq!(*w.1.lock().unwrap(), Some(Completion::Succeeded));
        } else {
            // The executor noticed the cancellation: complete for waiting, waiter told once.
            assert_eq!(f.completion(), Some(Completion::Cancelled));
            assert_eq!(w.0.load(Ordering::SeqCst), 1);
            assert_eq!(*w.1.lock().unwrap(), Some(Completion::Cancelled));
            drop(p);
            assert_eq!(w.0.load(Ordering::SeqCst), 1);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "callback runs exactly once"
        );
    });
}

#[test]
fn cancel_vs_dropped_promise() {
    // Whoever wins, the promise is gone, so the future must end complete for waiting and
    // an installed waiter must be told exactly once.
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let w = Arc::new(Count::default());
        let dw: Arc<dyn Waiter> = w.clone();
        f.install_waiter(&dw).unwrap();
        let g = f.clone();
        let canceller = thread::spawn(move || g.cancel());
        drop(p);
        let cancelled = canceller.join().unwrap();
        let expect = if cancelled {
            Completion::Cancelled
        } else {
            Completion::Failed
        };
        assert_eq!(f.completion(), Some(expect));
        assert_eq!(w.0.load(Ordering::SeqCst), 1);
        assert_eq!(*w.1.lock().unwrap(), Some(expect));
    });
}

#[test]
fn set_result_vs_add_done_callback() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let calls = counter();
        let seen = Arc::new(Mutex::new(None));
        let (c, s) = (calls.clone(), seen.clone());
        let g = f.clone();
        let registrar = thread::spawn(move || {
            g.add_done_callback(move |f| {
                // Whichever thread runs it sees the value.
                *s.lock().unwrap() = Some(*f.result().unwrap());
                c.fetch_add(1, Ordering::SeqCst);
            });
        });
        p.set_result(5).unwrap();
        registrar.join().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "runs exactly once");
        assert_eq!(*seen.lock().unwrap(), Some(5));
        assert_eq!(*f.result().unwrap(), 5);
    });
}

#[test]
fn install_waiter_vs_set_result() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let w = Arc::new(Count::default());
        let g = f.clone();
        let w2 = w.clone();
        let installer = thread::spawn(move || {
            let dw: Arc<dyn Waiter> = w2;
            g.install_waiter(&dw).is_ok()
        });
        p.set_result(5).unwrap();
        let installed = installer.join().unwrap();
        // Installed: told exactly once. Refused: it saw the completion and is never told.
        assert_eq!(w.0.load(Ordering::SeqCst), usize::from(installed));
    });
}

#[test]
fn install_waiter_vs_cancel_vs_set_running() {
    // Three parties: the user cancels, the executor claims the task (or notices the
    // cancellation), a `wait` installs its waiter. An installed waiter is told exactly once,
    // with the completion the future ends with; a refused one is never told. Three threads:
    // bounded to 3 preemptions so the model stays in seconds (the others are exhaustive).
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let (p, f) = pending::<u32>();
        let w = Arc::new(Count::default());
        let g = f.clone();
        let canceller = thread::spawn(move || g.cancel());
        let executor = thread::spawn(move || {
            if p.set_running_or_notify_cancel() {
                p.set_result(1).unwrap();
            }
        });
        let dw: Arc<dyn Waiter> = w.clone();
        let installed = f.install_waiter(&dw);
        let cancelled = canceller.join().unwrap();
        executor.join().unwrap();
        let end = f.completion().expect("the promise is gone: complete");
        assert_eq!(
            end,
            if cancelled {
                Completion::Cancelled
            } else {
                Completion::Succeeded
            }
        );
        match installed {
            Ok(_) => {
                assert_eq!(w.0.load(Ordering::SeqCst), 1);
                assert_eq!(*w.1.lock().unwrap(), Some(end));
            }
            Err(c) => {
                assert_eq!(c, end);
                assert_eq!(w.0.load(Ordering::SeqCst), 0);
            }
        }
    });
}

#[test]
fn result_waiter_vs_set_result() {
    // A thread blocked in `result()` while another sets the value: no lost wake-up (loom
    // reports a deadlock if the waiter parks and is never unparked), and the value read is
    // the one written.
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let g = f.clone();
        let waiter = thread::spawn(move || *g.result().unwrap());
        p.set_result(42).unwrap();
        assert_eq!(waiter.join().unwrap(), 42);
        assert_eq!(*f.result().unwrap(), 42);
    });
}

#[test]
fn wait_vs_cancel() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let g = f.clone();
        let waiter = thread::spawn(move || {
            g.wait();
            g.cancelled()
        });
        assert!(f.cancel());
        assert!(waiter.join().unwrap());
        drop(p);
    });
}

#[test]
fn result_waiter_vs_dropped_promise() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let waiter = thread::spawn(move || f.result().map(|v| *v).unwrap_err().is_broken());
        drop(p);
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn into_result_vs_set_result_with_callback() {
    // The value becomes visible before the completing thread has run its callbacks and let
    // go of the shared state; `into_result` must wait for it and then move the value out.
    loom::model(|| {
        let (p, f) = pending::<String>();
        f.add_done_callback(|_| {});
        let setter = thread::spawn(move || p.set_result("moved".to_owned()).unwrap());
        assert_eq!(f.into_result().unwrap(), "moved");
        setter.join().unwrap();
    });
}

#[test]
fn remove_inline_and_boxed_waiters_vs_set_result() {
    // Two waiters: the first is kept inline in the future, the second in the listener box.
    // Each removal races the completion: a waiter is told at most once, and either way the
    // future lets go of it (no reference leaks).
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (da, db): (Arc<dyn Waiter>, Arc<dyn Waiter>) = (a.clone(), b.clone());
        let ka = f.install_waiter(&da).unwrap();
        let kb = f.install_waiter(&db).unwrap();
        let g = f.clone();
        let remover = thread::spawn(move || {
            g.remove_waiter(ka);
            g.remove_waiter(kb);
        });
        p.set_result(5).unwrap();
        remover.join().unwrap();
        for w in [&a, &b] {
            assert!(w.0.load(Ordering::SeqCst) <= 1);
            // Held here and in `da` / `db` only.
            assert_eq!(Arc::strong_count(w), 2);
        }
        // A removed key does nothing more, and a new installation on the finished future is
        // refused with its completion.
        f.remove_waiter(ka);
        assert_eq!(f.install_waiter(&da).unwrap_err(), Completion::Succeeded);
    });
}

// ----- the async bridge: waker registration -----------------------------------------------
//
// `loom::future::block_on` parks the model's thread until the waker it polls with is woken:
// a completion that slips between a poll's "not done" and its waker registration (a lost
// wake-up) is a loom deadlock.

/// A waker that does nothing (to poll once with a waker that will be replaced).
fn noop_waker() -> std::task::Waker {
    struct Nobody;
    impl std::task::Wake for Nobody {
        fn wake(self: Arc<Self>) {}
    }
    std::task::Waker::from(Arc::new(Nobody))
}

#[test]
fn await_ref_vs_set_result() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let t = thread::spawn(move || p.set_result(7).unwrap());
        assert_eq!(
            loom::future::block_on((&f).into_future()).copied().ok(),
            Some(7)
        );
        t.join().unwrap();
    });
}

#[test]
fn await_by_value_vs_set_result() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let t = thread::spawn(move || p.set_result(7).unwrap());
        // Moved out if the promise let go first, cloned otherwise: 7 either way.
        assert_eq!(loom::future::block_on(f.into_future()).ok(), Some(7));
        t.join().unwrap();
    });
}

#[test]
fn await_vs_cancel() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let g = f.clone();
        let t = thread::spawn(move || assert!(g.cancel()));
        // Woken by the cancel itself, before the executor notices.
        let r = loom::future::block_on((&f).into_future());
        assert!(r.unwrap_err().is_cancelled());
        t.join().unwrap();
        assert!(!p.set_running_or_notify_cancel());
    });
}

#[test]
fn replaced_waker_vs_set_result() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let mut awaiting = Box::pin((&f).into_future());
        let waker = noop_waker();
        let first = awaiting
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        let t = thread::spawn(move || p.set_result(7).unwrap());
        // `block_on` polls with its own waker: the registration is replaced in place while
        // the completion may be taking it out.
        let r = if first.is_ready() {
            7
        } else {
            *loom::future::block_on(awaiting).unwrap()
        };
        assert_eq!(r, 7);
        t.join().unwrap();
    });
}

#[test]
fn dropped_await_vs_set_result() {
    loom::model(|| {
        let (p, f) = pending::<u32>();
        let mut awaiting = Box::pin((&f).into_future());
        let waker = noop_waker();
        let _ = awaiting
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        let t = thread::spawn(move || p.set_result(7).unwrap());
        drop(awaiting); // removes the waker, racing the completion that takes it out
        t.join().unwrap();
        assert!(!f.cancelled(), "dropping the await does not cancel");
        assert_eq!(f.result().copied().ok(), Some(7));
    });
}

#[test]
fn two_tasks_closing_a_wait_cycle_at_once() {
    // Two threads run one task each; each task waits on the other's future. Whatever the
    // interleaving of their parks (the wait-for graph's lock orders them): exactly one wait
    // fails with `Deadlock`, the other task then completes, and nobody hangs (a lost
    // wake-up or a missed cycle is a loom deadlock).
    loom::model(|| {
        let (pa, fa) = pending::<u32>();
        let (pb, fb) = pending::<u32>();
        let (fa2, fb2) = (fa.clone(), fb.clone());
        let a = thread::spawn(move || {
            pa.run(move || match fb2.result() {
                Ok(v) => *v + 1,
                Err(e) if e.is_deadlock() => 100,
                Err(_) => 200,
            })
        });
        pb.run(move || match fa2.result() {
            Ok(v) => *v + 1,
            Err(e) if e.is_deadlock() => 100,
            Err(_) => 200,
        });
        a.join().unwrap();
        let (va, vb) = (*fa.result().unwrap(), *fb.result().unwrap());
        assert!(
            (va, vb) == (101, 100) || (va, vb) == (100, 101),
            "{va} {vb}"
        );
    });
}
