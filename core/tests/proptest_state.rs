//! Property tests of the `Future` / `Promise` state machine.
//!
//! 1. `sequential`: random sequences of operations applied to the real future and to a
//!    simple model (SEMANTICS.md §2 written as a plain `enum` and a few counters), compared
//!    after every step: state, queries, `completion()`, the outcome of `result_timeout(0)`,
//!    how many times each callback ran and which notifications each waiter got.
//! 2. `concurrent`: the same operations from several threads at once, checking the
//!    invariants no interleaving may break: exactly one of cancel / run wins, every callback
//!    runs exactly once, every waiter is notified at most once (exactly once unless removed),
//!    and the final state is consistent with who won.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use cfutures_core::{
    pending, Completion, Future, FutureId, Promise, State, TaskError, Waitable, Waiter, WaiterKey,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// The model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Pending,
    Running,
    Cancelled,
    CancelledNotified,
    Value(u32),
    Failed,
    Broken,
}

impl M {
    fn done(self) -> bool {
        !matches!(self, M::Pending | M::Running)
    }
    fn completion(self) -> Option<Completion> {
        match self {
            M::CancelledNotified => Some(Completion::Cancelled),
            M::Value(_) => Some(Completion::Succeeded),
            M::Failed | M::Broken => Some(Completion::Failed),
            _ => None,
        }
    }
    fn state(self) -> State {
        match self {
            M::Pending => State::Pending,
            M::Running => State::Running,
            M::Cancelled | M::CancelledNotified => State::Cancelled,
            _ => State::Finished,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Cancel,
    SetRunning,
    SetResult(u32),
    SetException,
    SetBroken,
    /// The executor stops the running task (`Promise::set_cancelled`).
    SetCancelled,
    DropPromise,
    AddCallback,
    InstallWaiter,
    /// Removes the installation with this index (modulo the number installed).
    RemoveWaiter(usize),
    ResultZero,
    ExceptionZero,
    Query,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Cancel),
        3 => Just(Op::SetRunning),
        2 => any::<u32>().prop_map(Op::SetResult),
        1 => Just(Op::SetException),
        1 => Just(Op::SetBroken),
        1 => Just(Op::SetCancelled),
        1 => Just(Op::DropPromise),
        3 => Just(Op::AddCallback),
        3 => Just(Op::InstallWaiter),
        2 => any::<usize>().prop_map(Op::RemoveWaiter),
        1 => Just(Op::ResultZero),
        1 => Just(Op::ExceptionZero),
        1 => Just(Op::Query),
    ]
}

#[derive(Default)]
struct Log(Mutex<Vec<(FutureId, Completion)>>);
impl Waiter for Log {
    fn notify(&self, id: FutureId, c: Completion) {
        self.0.lock().unwrap().push((id, c));
    }
}

struct Installed {
    log: Arc<Log>,
    key: Option<WaiterKey>,
    /// The model's notifications for this installation.
    expected: Vec<Completion>,
    live: bool,
}

struct Real {
    promise: Option<Promise<u32>>,
    future: Future<u32>,
    callbacks: Vec<Arc<AtomicUsize>>,
    waiters: Vec<Installed>,
}

struct Model {
    m: M,
    promise_alive: bool,
    /// Expected run count per callback.
    callbacks: Vec<usize>,
}

impl Model {
    /// Moves to `to`; runs the pending callbacks if it becomes done and notifies the live
    /// waiters if it becomes complete for waiting.
    fn go(&mut self, to: M, real: &mut Real) {
        let was_done = self.m.done();
        let was_complete = self.m.completion().is_some();
        self.m = to;
        if !was_done && to.done() {
            for c in &mut self.callbacks {
                *c = 1;
            }
        }
        if !was_complete {
            if let Some(c) = to.completion() {
                for w in real.waiters.iter_mut().filter(|w| w.live) {
                    w.expected.push(c);
                    w.live = false;
                }
            }
        }
    }

    /// The promise goes away (dropped or consumed by a refused set).
    fn promise_gone(&mut self, real: &mut Real) {
        self.promise_alive = false;
        match self.m {
            M::Pending | M::Running => self.go(M::Broken, real),
            M::Cancelled => self.go(M::CancelledNotified, real),
            _ => {}
        }
    }
}

fn apply(op: &Op, model: &mut Model, real: &mut Real) {
    let f = real.future.clone();
    match op {
        Op::Cancel => {
            let expect = match model.m {
                M::Pending => {
                    model.go(M::Cancelled, real);
                    true
                }
                M::Cancelled | M::CancelledNotified => true,
                _ => false,
            };
            assert_eq!(f.cancel(), expect, "cancel");
        }
        Op::SetRunning => {
            if real.promise.is_none() {
                return;
            }
            let expect = match model.m {
                M::Pending => {
                    model.go(M::Running, real);
                    true
                }
                M::Cancelled => {
                    model.go(M::CancelledNotified, real);
                    false
                }
                _ => false,
            };
            let p = real.promise.as_ref().expect("checked above");
            assert_eq!(p.set_running_or_notify_cancel(), expect, "set_running");
        }
        Op::SetResult(_) | Op::SetException | Op::SetBroken => {
            let Some(p) = real.promise.take() else { return };
            let (ok, to) = match (model.m, op) {
                (M::Pending | M::Running, Op::SetResult(v)) => (true, M::Value(*v)),
                (M::Pending | M::Running, Op::SetException) => (true, M::Failed),
                (M::Pending | M::Running, _) => (true, M::Broken),
                (m, _) => (false, m),
            };
            let got = match op {
                Op::SetResult(v) => p.set_result(*v),
                Op::SetException => p.set_exception(TaskError::msg("exc")),
                _ => p.set_broken(cfutures_core::Broken::new("broken")),
            };
            assert_eq!(got.is_ok(), ok, "set: {got:?}");
            if ok {
                model.go(to, real);
            }
            model.promise_gone(real);
        }
        Op::SetCancelled => {
            let Some(p) = real.promise.take() else { return };
            let ok = model.m == M::Running;
            assert_eq!(p.set_cancelled().is_ok(), ok, "set_cancelled");
            if ok {
                model.go(M::CancelledNotified, real);
            }
            model.promise_gone(real);
        }
        Op::DropPromise => {
            if real.promise.take().is_some() {
                model.promise_gone(real);
            }
        }
        Op::AddCallback => {
            let c = Arc::new(AtomicUsize::new(0));
            let c2 = c.clone();
            f.add_done_callback(move |f| {
                assert!(f.done());
                c2.fetch_add(1, Ordering::SeqCst);
            });
            real.callbacks.push(c);
            model.callbacks.push(usize::from(model.m.done()));
        }
        Op::InstallWaiter => {
            let log = Arc::new(Log::default());
            let w: Arc<dyn Waiter> = log.clone();
            let got = f.install_waiter(&w);
            match model.m.completion() {
                Some(c) => {
                    assert_eq!(got.unwrap_err(), c, "install on complete");
                    real.waiters.push(Installed {
                        log,
                        key: None,
                        expected: vec![],
                        live: false,
                    });
                }
                None => real.waiters.push(Installed {
                    log,
                    key: Some(got.expect("install on incomplete")),
                    expected: vec![],
                    live: true,
                }),
            }
        }
        Op::RemoveWaiter(i) => {
            if real.waiters.is_empty() {
                return;
            }
            let n = real.waiters.len();
            let w = &mut real.waiters[i % n];
            if let Some(k) = w.key {
                f.remove_waiter(k);
                w.live = false;
            }
        }
        Op::ResultZero => {
            let r = f.result_timeout(Duration::ZERO);
            match model.m {
                M::Pending | M::Running => assert!(r.unwrap_err().is_timeout()),
                M::Cancelled | M::CancelledNotified => assert!(r.unwrap_err().is_cancelled()),
                M::Value(v) => assert_eq!(*r.unwrap(), v),
                M::Failed => assert!(r.unwrap_err().is_failed()),
                M::Broken => assert!(r.unwrap_err().is_broken()),
            }
        }
        Op::ExceptionZero => {
            let r = f.exception_timeout(Duration::ZERO);
            match model.m {
                M::Pending | M::Running => assert!(r.unwrap_err().is_timeout()),
                M::Cancelled | M::CancelledNotified => assert!(r.unwrap_err().is_cancelled()),
                M::Value(_) => assert!(r.unwrap().is_none()),
                M::Failed => assert!(r.unwrap().is_some()),
                M::Broken => assert!(r.unwrap_err().is_broken()),
            }
        }
        Op::Query => {}
    }
}

fn compare(model: &Model, real: &Real) {
    let f = &real.future;
    assert_eq!(f.state(), model.m.state());
    assert_eq!(f.done(), model.m.done());
    assert_eq!(f.cancelled(), model.m.state() == State::Cancelled);
    assert_eq!(f.running(), model.m == M::Running);
    assert_eq!(f.completion(), model.m.completion());
    assert_eq!(f.wait_timeout(Duration::ZERO), model.m.done());
    if let Some(p) = &real.promise {
        assert_eq!(p.state(), model.m.state());
        assert_eq!(p.is_cancelled(), model.m.state() == State::Cancelled);
    }
    assert_eq!(real.promise.is_some(), model.promise_alive);
    for (i, (c, want)) in real.callbacks.iter().zip(&model.callbacks).enumerate() {
        assert_eq!(c.load(Ordering::SeqCst), *want, "callback {i}");
    }
    for (i, w) in real.waiters.iter().enumerate() {
        let got: Vec<Completion> = w
            .log
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|&(id, c)| {
                assert_eq!(id, f.id());
                c
            })
            .collect();
        assert_eq!(got, w.expected, "waiter {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sequential(ops in prop::collection::vec(op(), 1..40)) {
        let (p, f) = pending::<u32>();
        let mut real = Real { promise: Some(p), future: f, callbacks: vec![], waiters: vec![] };
        let mut model = Model { m: M::Pending, promise_alive: true, callbacks: vec![] };
        for op in &ops {
            apply(op, &mut model, &mut real);
            compare(&model, &real);
        }
        // Dropping the promise at the end always leaves the future complete for waiting.
        if real.promise.take().is_some() {
            model.promise_gone(&mut real);
        }
        compare(&model, &real);
        prop_assert!(real.future.completion().is_some());
        prop_assert!(real.future.done());
    }
}

// ---------------------------------------------------------------------------------------
// Concurrent operations: invariants

/// What the executor thread does.
#[derive(Clone, Copy, Debug)]
enum Exec {
    /// `set_running_or_notify_cancel`, then set the result if it said run.
    RunThenSet,
    /// Set the result straight from pending.
    SetDirect,
    /// Drop the promise without a result.
    Drop,
}

/// What each of the other threads does, in order.
#[derive(Clone, Copy, Debug)]
enum Other {
    Cancel,
    AddCallback,
    /// Install a waiter, and remove it at once if `true`.
    Waiter(bool),
    ResultZero,
}

fn other() -> impl Strategy<Value = Other> {
    prop_oneof![
        Just(Other::Cancel),
        Just(Other::AddCallback),
        any::<bool>().prop_map(Other::Waiter),
        Just(Other::ResultZero),
    ]
}

fn exec() -> impl Strategy<Value = Exec> {
    prop_oneof![
        Just(Exec::RunThenSet),
        Just(Exec::SetDirect),
        Just(Exec::Drop)
    ]
}

/// Counts notifications.
#[derive(Default)]
struct Count(AtomicUsize, Mutex<Option<Completion>>);
impl Waiter for Count {
    fn notify(&self, _: FutureId, c: Completion) {
        self.0.fetch_add(1, Ordering::SeqCst);
        *self.1.lock().unwrap() = Some(c);
    }
}

struct ThreadResult {
    /// How many `cancel()` calls returned true.
    cancels_true: usize,
    callbacks: Vec<Arc<AtomicUsize>>,
    /// (counter, installed, removed)
    waiters: Vec<(Arc<Count>, bool, bool)>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn concurrent(
        exec in exec(),
        others in prop::collection::vec(prop::collection::vec(other(), 1..6), 1..4),
        pre_callbacks in 0usize..3,
    ) {
        let (p, f) = pending::<u32>();
        let pre: Vec<Arc<AtomicUsize>> = (0..pre_callbacks)
            .map(|_| {
                let c = Arc::new(AtomicUsize::new(0));
                let c2 = c.clone();
                f.add_done_callback(move |_| { c2.fetch_add(1, Ordering::SeqCst); });
                c
            })
            .collect();
        let barrier = Arc::new(Barrier::new(others.len() + 1));
        let b = barrier.clone();
        let executor = thread::spawn(move || {
            b.wait();
            match exec {
                Exec::RunThenSet => {
                    if p.set_running_or_notify_cancel() {
                        p.set_result(7).unwrap();
                        (true, true)
                    } else {
                        (false, false)
                    }
                }
                Exec::SetDirect => {
                    let ok = p.set_result(7).is_ok();
                    (ok, ok)
                }
                Exec::Drop => {
                    drop(p);
                    (false, false)
                }
            }
        });
        let workers: Vec<_> = others
            .into_iter()
            .map(|ops| {
                let f = f.clone();
                let b = barrier.clone();
                thread::spawn(move || {
                    b.wait();
                    let mut r = ThreadResult { cancels_true: 0, callbacks: vec![], waiters: vec![] };
                    for op in ops {
                        match op {
                            Other::Cancel => {
                                // Whatever it returns must agree with the final state.
                                if f.cancel() {
                                    r.cancels_true += 1;
                                }
                            }
                            Other::AddCallback => {
                                let c = Arc::new(AtomicUsize::new(0));
                                let c2 = c.clone();
                                f.add_done_callback(move |_| { c2.fetch_add(1, Ordering::SeqCst); });
                                r.callbacks.push(c);
                            }
                            Other::Waiter(remove) => {
                                let c = Arc::new(Count::default());
                                let w: Arc<dyn Waiter> = c.clone();
                                match f.install_waiter(&w) {
                                    Ok(k) => {
                                        if remove { f.remove_waiter(k); }
                                        r.waiters.push((c, true, remove));
                                    }
                                    Err(_) => r.waiters.push((c, false, remove)),
                                }
                            }
                            Other::ResultZero => {
                                if let Ok(v) = f.result_timeout(Duration::ZERO) {
                                    assert_eq!(*v, 7);
                                }
                            }
                        }
                    }
                    r
                })
            })
            .collect();
        let (ran, set) = executor.join().unwrap();
        let results: Vec<ThreadResult> = workers.into_iter().map(|w| w.join().unwrap()).collect();

        // The promise is gone: the future is complete for waiting, whoever won.
        prop_assert!(f.done());
        let completion = f.completion();
        prop_assert!(completion.is_some());
        let cancelled = f.cancelled();
        match exec {
            // Exactly one of cancel and run wins.
            Exec::RunThenSet | Exec::SetDirect => prop_assert!(set != cancelled, "set={set} cancelled={cancelled}"),
            Exec::Drop => {}
        }
        prop_assert_eq!(ran, set);
        if set {
            prop_assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), 7);
            prop_assert_eq!(completion, Some(Completion::Succeeded));
        } else if cancelled {
            prop_assert_eq!(completion, Some(Completion::Cancelled));
            prop_assert!(f.result_timeout(Duration::ZERO).unwrap_err().is_cancelled());
        } else {
            prop_assert!(f.result_timeout(Duration::ZERO).unwrap_err().is_broken());
        }
        // A cancel that returned true means the future is cancelled for good.
        if results.iter().any(|r| r.cancels_true > 0) {
            prop_assert!(cancelled);
        }
        // Every callback ran exactly once.
        for c in pre.iter().chain(results.iter().flat_map(|r| r.callbacks.iter())) {
            prop_assert_eq!(c.load(Ordering::SeqCst), 1);
        }
        // Every waiter: at most once; exactly once if installed and not removed; the
        // completion it was told is the future's.
        for r in &results {
            for (c, installed, removed) in &r.waiters {
                let n = c.0.load(Ordering::SeqCst);
                prop_assert!(n <= 1);
                if *installed && !*removed { prop_assert_eq!(n, 1); }
                if !*installed { prop_assert_eq!(n, 0); }
                if n == 1 { prop_assert_eq!(*c.1.lock().unwrap(), completion); }
            }
        }
    }
}
