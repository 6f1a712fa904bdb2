//! Wait cycles are reported at once (issue 15, point 1): the wait that closes a cycle fails
//! with `Error::Deadlock` naming it; the other waits in the cycle then complete normally.
//! Every test runs under a watchdog: a hang is a failure.

mod util;

use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::Duration;

use cfutures_combinators::{as_completed, wait, ReturnWhen};
use cfutures_core::{fallible, named, pending, Error, Future, FutureId, InlineExecutor, Submit};
use cfutures_thread_pool::ThreadPoolExecutor;
use proptest::prelude::*;
use util::{Gate, LIMIT};

/// Runs `body` on its own thread; fails the test if it takes longer than `3 * LIMIT`.
fn bounded<T: Send + 'static>(what: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)));
    });
    match rx.recv_timeout(3 * LIMIT) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: hung"),
    }
}

/// How one task's wait ended.
#[derive(Clone, Debug)]
enum Waited {
    /// The other task's value.
    Value,
    /// The other task failed (it was the one whose wait closed the cycle).
    OtherFailed,
    /// This wait closed a cycle.
    Deadlock(cfutures_core::Deadlock),
}

impl Waited {
    fn of(r: Result<&u32, Error>) -> Self {
        match r {
            Ok(_) => Waited::Value,
            Err(Error::Deadlock(d)) => Waited::Deadlock(d),
            Err(e) if e.is_failed() => Waited::OtherFailed,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    fn deadlock(&self) -> Option<&cfutures_core::Deadlock> {
        match self {
            Waited::Deadlock(d) => Some(d),
            _ => None,
        }
    }
}

/// A task of a cycle: waits for the handle of the next task's future, waits on it with
/// `how`, and fails (with the cycle) if that wait closed the cycle.
fn cycle_task(
    next: mpsc::Receiver<Future<u32>>,
    how: How,
    report: mpsc::Sender<Waited>,
) -> impl FnOnce() -> Result<u32, Error> + Send + 'static {
    move || {
        let next = next.recv_timeout(LIMIT).expect("the next future");
        let r = how(&next);
        let w = Waited::of(r.as_ref().map_err(Clone::clone));
        report.send(w).unwrap();
        match r {
            Ok(v) => Ok(v + 1),
            // This wait closed the cycle: fail with it.
            Err(e @ Error::Deadlock(_)) => Err(e),
            // The task we waited on failed that way: carry on.
            Err(_) => Ok(100),
        }
    }
}

fn by_result(f: &Future<u32>) -> Result<u32, Error> {
    f.result().copied()
}
fn by_result_timeout(f: &Future<u32>) -> Result<u32, Error> {
    f.result_timeout(LIMIT).copied()
}
fn by_exception(f: &Future<u32>) -> Result<u32, Error> {
    match f.exception()? {
        None => f.result().copied(),
        Some(e) => Err(Error::Failed(e)),
    }
}
fn by_wait_all(f: &Future<u32>) -> Result<u32, Error> {
    let r = wait([f.clone()], None, ReturnWhen::AllCompleted);
    if let Some(d) = r.deadlock {
        return Err(Error::Deadlock(d));
    }
    f.result().copied()
}
fn by_wait_first(f: &Future<u32>) -> Result<u32, Error> {
    let r = wait([f.clone()], None, ReturnWhen::FirstCompleted);
    if let Some(d) = r.deadlock {
        return Err(Error::Deadlock(d));
    }
    f.result().copied()
}
fn by_as_completed(f: &Future<u32>) -> Result<u32, Error> {
    match as_completed([f.clone()], None).next().expect("one future") {
        Ok(f) => f.result().copied(),
        Err(e) => Err(e.into()),
    }
}

/// One way to wait on a future.
type How = fn(&Future<u32>) -> Result<u32, Error>;

const HOWS: [(&str, How); 6] = [
    ("result", by_result),
    ("result_timeout", by_result_timeout),
    ("exception", by_exception),
    ("wait(ALL_COMPLETED)", by_wait_all),
    ("wait(FIRST_COMPLETED)", by_wait_first),
    ("as_completed", by_as_completed),
];

/// Runs a cycle of `pools.len()` named tasks (task `i` on `pools[i]`, waiting with
/// `hows[i]`) and checks: every task ends, exactly one wait fails with `Deadlock`, it names
/// the whole cycle in order, and the others end normally.
fn run_cycle(pools: &[Arc<ThreadPoolExecutor>], hows: &[How]) {
    let n = pools.len();
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let (report, reports) = mpsc::channel();
    let mut senders = Vec::new();
    let mut futures = Vec::new();
    for i in 0..n {
        let (tx, rx) = mpsc::channel();
        senders.push(tx);
        let task = cycle_task(rx, hows[i], report.clone());
        futures.push(
            pools[i]
                .submit(named(names[i].as_str(), fallible(task)))
                .unwrap(),
        );
    }
    for i in 0..n {
        senders[i].send(futures[(i + 1) % n].clone()).unwrap();
    }
    let waited: Vec<Waited> = (0..n)
        .map(|_| reports.recv_timeout(LIMIT).expect("every wait ends"))
        .collect();
    let deadlocks: Vec<_> = waited.iter().filter_map(Waited::deadlock).collect();
    assert_eq!(deadlocks.len(), 1, "exactly one wait fails: {waited:?}");
    let cycle = deadlocks[0].cycle();
    assert_eq!(cycle.len(), n, "{}", deadlocks[0]);
    // In order: each one's task waits on the next.
    let first = futures
        .iter()
        .position(|f| f.id() == cycle[0].future())
        .expect("a future of the cycle");
    for (k, link) in cycle.iter().enumerate() {
        let i = (first + k) % n;
        assert_eq!(link.future(), futures[i].id());
        assert_eq!(link.task_name(), Some(names[i].as_str()));
    }
    let text = deadlocks[0].to_string();
    assert!(text.starts_with("deadlock: future #"), "{text}");
    assert!(
        text.contains("(task 't0')") && text.contains("which waits on #"),
        "{text}"
    );
    // The failing task fails with the cycle; the others complete: the one waiting on it
    // sees its failure (100), the one waiting on that one gets 101, and so on around.
    for (k, f) in (0..n).map(|k| (k, &futures[(first + n - k) % n])) {
        let r = f.result_timeout(LIMIT);
        if k == 0 {
            let e = r.unwrap_err();
            assert!(e.is_failed(), "{e}");
            assert!(e.to_string().contains("deadlock"), "{e}");
        } else {
            assert_eq!(*r.unwrap(), 99 + k as u32);
        }
    }
}

fn pool(n: usize) -> Arc<ThreadPoolExecutor> {
    Arc::new(ThreadPoolExecutor::new(n).unwrap())
}

#[test]
fn two_tasks_waiting_on_each_other() {
    for (name, how) in HOWS {
        bounded(name, move || {
            let p = pool(2);
            run_cycle(&[p.clone(), p], &[how, how]);
        });
    }
}

#[test]
fn three_tasks_in_a_ring() {
    for (name, how) in HOWS {
        bounded(name, move || {
            let p = pool(3);
            run_cycle(&[p.clone(), p.clone(), p], &[how, how, by_result]);
        });
    }
}

#[test]
fn a_cycle_across_two_pools() {
    bounded("two pools", || {
        let (a, b) = (pool(1), pool(1));
        run_cycle(&[a.clone(), b.clone()], &[by_result, by_wait_all]);
        run_cycle(
            &[a.clone(), b.clone(), a],
            &[by_as_completed, by_result, by_exception],
        );
    });
}

#[test]
fn the_same_cycle_many_times_never_fails_both_waits() {
    // Both sides park at about the same moment: one lock orders them, the second sees the
    // cycle, the first does not.
    bounded("many races", || {
        let p = pool(2);
        for _ in 0..200 {
            run_cycle(&[p.clone(), p.clone()], &[by_result, by_result]);
        }
    });
}

#[test]
fn a_cycle_that_forms_after_one_side_already_waits() {
    bounded("late cycle", || {
        let a_pool = pool(1);
        let b_pool = pool(1);
        // b's pool is busy (on a gate, which no pool can see), so b stays queued while a
        // parks on it: no cycle yet.
        let gate = Gate::new();
        let g = gate.clone();
        let busy = b_pool.submit(move || g.wait()).unwrap();
        let (give_a, a_slot) = mpsc::channel::<Future<u32>>();
        let b = b_pool
            .submit(named(
                "b",
                fallible(move || -> Result<u32, Error> {
                    let a = a_slot.recv_timeout(LIMIT).unwrap();
                    Ok(*a.result()? + 1)
                }),
            ))
            .unwrap();
        let b2 = b.clone();
        let a = a_pool
            .submit(named(
                "a",
                fallible(move || -> Result<u32, Error> { Ok(b2.result().map_or(7, |v| *v)) }),
            ))
            .unwrap();
        util::eventually("a parks on b", || a_pool.blocked_threads() == 1);
        assert!(!a.done() && !b.running());
        // Now b starts and waits on a: b's wait closes the cycle, so b fails, and a, which
        // was waiting first, completes with b's failure.
        give_a.send(a.clone()).unwrap();
        gate.open();
        busy.result_timeout(LIMIT).unwrap();
        let err = b.result_timeout(LIMIT).unwrap_err();
        let cycle = err.task_error().unwrap().to_string();
        assert!(
            cycle.starts_with("deadlock: future #")
                && cycle.contains("(task 'b') waits on #")
                && cycle.contains("(task 'a'), which waits on #"),
            "{cycle}"
        );
        assert_eq!(*a.result_timeout(LIMIT).unwrap(), 7);
    });
}

#[test]
fn as_completed_is_stuck_only_when_every_future_it_waits_on_is() {
    // a iterates as_completed([b, c]); b waits on a; c waits on a gate (which no pool sees,
    // so c can still complete). While c can, a's wait is not stuck and nothing is reported;
    // once c is done, a waits on b alone, and that closes the cycle.
    bounded("any-wait", || {
        let p = pool(3);
        let gate = Gate::new();
        let g = gate.clone();
        let c = p.submit(named("c", move || g.wait())).unwrap();
        let (give_a, get_a) = mpsc::channel::<Future<String>>();
        let b = p
            .submit(named("b", move || {
                let a = get_a.recv_timeout(LIMIT).unwrap();
                a.result().cloned().map_err(|e| e.to_string())
            }))
            .unwrap();
        let (b2, c2) = (b.clone().erase(), c.clone().erase());
        let a = p
            .submit(named("a", move || {
                let mut seen = Vec::new();
                for r in as_completed([b2, c2.clone()], None) {
                    match r {
                        Ok(f) if f == c2 => seen.push("c".to_owned()),
                        Ok(_) => seen.push("b".to_owned()),
                        Err(e) => seen.push(e.to_string()),
                    }
                }
                seen.join(" | ")
            }))
            .unwrap();
        give_a.send(a.clone()).unwrap();
        util::eventually("a and b park", || p.blocked_threads() == 2);
        assert!(!a.done() && !b.done());
        gate.open();
        let said = a.result_timeout(LIMIT).unwrap();
        let (first, rest) = said.split_once(" | ").expect("two items");
        assert_eq!(first, "c");
        assert!(
            rest.starts_with("deadlock: future #") && rest.contains("(task 'a') waits on #"),
            "{rest}"
        );
        assert!(rest.ends_with("(1 (of 2) futures unfinished)"), "{rest}");
        // b then saw a complete with what it said.
        assert_eq!(
            b.result_timeout(LIMIT).unwrap().as_deref(),
            Ok(said.as_str())
        );
    });
}

#[test]
fn as_completed_over_many_reports_the_cycle_once_the_rest_are_in() {
    // a iterates as_completed over 40 tasks that finish once a gate opens, and over b,
    // which waits on a: a yields the 40, then its wait on b alone closes the cycle.
    bounded("as_completed over many", || {
        let (p, q) = (pool(2), pool(2));
        let gate = Gate::new();
        let others: Vec<_> = (0..40u32)
            .map(|i| {
                let g = gate.clone();
                q.submit(move || {
                    g.wait();
                    i
                })
                .unwrap()
                .erase()
            })
            .collect();
        let (give_a, get_a) = mpsc::channel::<Future<String>>();
        let b = p
            .submit(named("b", move || {
                let a = get_a.recv_timeout(LIMIT).unwrap();
                a.result().is_ok()
            }))
            .unwrap();
        let mut all = others.clone();
        all.push(b.clone().erase());
        let a = p
            .submit(named("a", move || {
                let mut yielded = 0;
                for r in as_completed(all, None) {
                    match r {
                        Ok(_) => yielded += 1,
                        Err(e) => return format!("{yielded} then {e}"),
                    }
                }
                format!("{yielded}")
            }))
            .unwrap();
        give_a.send(a.clone()).unwrap();
        util::eventually("a and b park", || p.blocked_threads() == 2);
        gate.open();
        let said = a.result_timeout(LIMIT).unwrap();
        assert!(said.starts_with("40 then deadlock: future #"), "{said}");
        assert!(said.ends_with("(1 (of 41) futures unfinished)"), "{said}");
        assert!(*b.result_timeout(LIMIT).unwrap());
    });
}

#[test]
fn a_task_whose_map_items_wait_on_it() {
    // a maps over items on its own pool; each item waits on a: a cycle through map's chunk
    // tasks. Whichever wait closes it says so: a's map yields the deadlock, or the item
    // returns it; either way a completes.
    for unordered in [false, true] {
        bounded("map", move || {
            let p = pool(2);
            let me: Arc<OnceLock<Future<String>>> = Arc::default();
            let (p2, me2) = (p.clone(), me.clone());
            // a starts its map only once its own future is published (without this the
            // item could run before the caller sets `me`).
            let published = Gate::new();
            let published2 = published.clone();
            let a = p
                .submit(named("a", move || {
                    published2.wait();
                    let f = move |_: u32| -> Result<(), String> {
                        let a = me2.get().expect("set before the item runs");
                        a.result().map(|_| ()).map_err(|e| e.to_string())
                    };
                    let items: Vec<Result<Result<(), String>, Error>> = if unordered {
                        cfutures_combinators::map_unordered(&*p2, f, [1])
                            .unwrap()
                            .collect()
                    } else {
                        cfutures_combinators::map(&*p2, f, [1]).unwrap().collect()
                    };
                    let said: Vec<String> = items
                        .into_iter()
                        .map(|r| match r {
                            Ok(Ok(())) => "ok".to_owned(),
                            Ok(Err(item_said)) => item_said,
                            Err(map_said) => map_said.to_string(),
                        })
                        .collect();
                    said.join(", ")
                }))
                .unwrap();
            me.set(a.clone()).unwrap();
            published.open();
            let said = a.result_timeout(LIMIT).unwrap();
            assert!(said.contains("deadlock: future #"), "{said}");
        });
    }
}

#[test]
fn a_task_waiting_on_its_own_future() {
    bounded("self wait", || {
        let p = pool(1);
        let (give, own) = mpsc::channel::<Future<String>>();
        let f = p
            .submit(named("me", move || {
                let me = own.recv_timeout(LIMIT).unwrap();
                let e = me.result().unwrap_err();
                assert!(e.is_deadlock());
                e.to_string()
            }))
            .unwrap();
        give.send(f.clone()).unwrap();
        let text = f.result_timeout(LIMIT).unwrap();
        assert!(text.ends_with("(task 'me') waits on itself"), "{text}");
    });
}

#[test]
fn a_pool_task_and_the_callers_own_thread() {
    // The caller runs a future's task on its own thread (what `InlineExecutor` does): its
    // task submits to a pool a task that waits on the caller's future, then waits on it.
    bounded("caller and pool", || {
        let p = pool(1);
        let (promise, mine) = pending::<u32>();
        let mine2 = mine.clone();
        let p2 = p.clone();
        let inner_out: Arc<OnceLock<Future<u32>>> = Arc::default();
        let slot = inner_out.clone();
        promise.run(named(
            "caller",
            fallible(move || -> Result<u32, Error> {
                let inner = p2
                    .submit(named(
                        "pooled",
                        fallible(move || -> Result<u32, Error> { Ok(*mine2.result()? * 2) }),
                    ))
                    .unwrap();
                slot.set(inner.clone()).unwrap();
                Ok(*inner.result()? + 1)
            }),
        ));
        // Whichever parked second failed; the other completed.
        let inner = inner_out.get().unwrap();
        let (outer_r, inner_r) = (mine.result_timeout(LIMIT), inner.result_timeout(LIMIT));
        match (outer_r, inner_r) {
            (Err(e), Ok(v)) => {
                assert!(e.to_string().contains("deadlock"), "{e}");
                assert!(e.to_string().contains("(task 'caller')"), "{e}");
                panic!("the inner task cannot have a value when the outer failed: {v}")
            }
            (Err(e), Err(i)) => {
                // The outer's wait closed the cycle; the inner then saw the outer fail.
                assert!(e.to_string().contains("deadlock"), "{e}");
                assert!(i.is_failed(), "{i}");
            }
            (Ok(v), Err(i)) => {
                panic!("the outer cannot have a value when the inner failed: {v}, {i}")
            }
            (Ok(_), Ok(_)) => panic!("a cycle cannot complete"),
        }
    });
}

#[test]
fn inline_executor_inside_a_task_waiting_on_the_outer_task() {
    // One thread runs the outer task and, inline, the inner one; the inner one waits on the
    // outer future: a cycle through one thread.
    bounded("inline", || {
        let p = pool(1);
        let (give, outer_slot) = mpsc::channel::<Future<String>>();
        let outer = p
            .submit(named("outer", move || {
                let outer = outer_slot.recv_timeout(LIMIT).unwrap();
                let inner = InlineExecutor::new()
                    .submit(named("inner", move || {
                        outer.result().map(|v| v.len()).map_err(|e| e.to_string())
                    }))
                    .unwrap();
                inner.result().unwrap().clone().unwrap_err()
            }))
            .unwrap();
        give.send(outer.clone()).unwrap();
        let text = outer.result_timeout(LIMIT).unwrap();
        assert!(text.contains("(task 'outer')"), "{text}");
        assert!(text.ends_with("waits on itself"), "{text}");
    });
}

#[test]
fn nested_submit_in_a_pool_of_one_is_not_a_cycle() {
    bounded("nested submits", || {
        let p = pool(1);
        let p2 = p.clone();
        let f = p
            .submit(named("outer", move || {
                let inner: Vec<_> = (0..20u32)
                    .map(|i| {
                        let p3 = p2.clone();
                        p2.submit(named("inner", move || {
                            let leaf = p3.submit(move || i * 2).unwrap();
                            *leaf.result().unwrap()
                        }))
                        .unwrap()
                    })
                    .collect();
                let all = wait(inner.clone(), None, ReturnWhen::AllCompleted);
                assert!(all.deadlock.is_none());
                let mut n = 0;
                for f in as_completed(inner.clone(), None) {
                    n += *f.unwrap().result().unwrap();
                }
                n
            }))
            .unwrap();
        assert_eq!(
            *f.result_timeout(LIMIT).unwrap(),
            (0..20).map(|i| i * 2).sum()
        );
    });
}

#[test]
fn a_thread_that_runs_no_future_is_never_told_deadlock() {
    // The caller waits on a task that waits on a future nobody will set until the caller
    // does: not a cycle core can see (the caller runs no task), and not reported.
    bounded("plain waits", || {
        let p = pool(1);
        let (promise, f) = pending::<u32>();
        let t = p.submit(move || *f.result().unwrap() + 1).unwrap();
        assert!(!t.wait_timeout(Duration::from_millis(50)));
        promise.set_result(1).unwrap();
        assert_eq!(*t.result_timeout(LIMIT).unwrap(), 2);
    });
}

// ----- random wait graphs against a model ------------------------------------------------

/// Task `i` of a random graph: once every future exists, waits on each of `targets[i]` in
/// turn with the given method; stops at the first wait that reports a deadlock.
type Outcome = Result<(), cfutures_core::Deadlock>;

fn graph_task(
    me: usize,
    targets: Vec<(usize, usize)>,
    all: Arc<OnceLock<Vec<Future<Outcome>>>>,
    ready: Gate,
) -> impl FnOnce() -> Outcome + Send + 'static {
    move || {
        ready.wait();
        let fs = all.get().expect("set before the gate opens");
        for (j, how) in targets {
            let f = &fs[j];
            let r: Result<(), Error> = match how {
                0 => f.result().map(|_| ()),
                1 => f.exception().map(|_| ()),
                2 => match wait([f.clone()], None, ReturnWhen::AllCompleted).deadlock {
                    Some(d) => Err(Error::Deadlock(d)),
                    None => Ok(()),
                },
                3 => match wait([f.clone()], None, ReturnWhen::FirstCompleted).deadlock {
                    Some(d) => Err(Error::Deadlock(d)),
                    None => Ok(()),
                },
                _ => match as_completed([f.clone()], None).next().unwrap() {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.into()),
                },
            };
            if let Err(Error::Deadlock(d)) = r {
                return Err(d);
            }
            // A value, or a failure of the other task: both mean it completed.
            assert!(f.done(), "task {me}: the wait on {j} ended early: {r:?}");
        }
        Ok(())
    }
}

/// The elementary cycle `c` (task indices, each waiting on the next) as a canonical
/// rotation, so that two reports of one cycle compare equal.
fn canonical(c: &[usize]) -> Vec<usize> {
    let k = (0..c.len()).min_by_key(|&i| c[i]).unwrap_or(0);
    c[k..].iter().chain(&c[..k]).copied().collect()
}

/// Whether the graph (edges i -> each target of i) has a cycle.
fn has_cycle(targets: &[Vec<(usize, usize)>]) -> bool {
    // Depth-first search with colours.
    fn visit(i: usize, t: &[Vec<(usize, usize)>], colour: &mut [u8]) -> bool {
        colour[i] = 1;
        for &(j, _) in &t[i] {
            if colour[j] == 1 || (colour[j] == 0 && visit(j, t, colour)) {
                return true;
            }
        }
        colour[i] = 2;
        false
    }
    let mut colour = vec![0; targets.len()];
    (0..targets.len()).any(|i| colour[i] == 0 && visit(i, targets, &mut colour))
}

/// A random wait graph (task `i` waits on each `(j, how)` of `graph[i]` in turn) and the
/// number of pool threads (at most the number of tasks: the pool compensates for the
/// rest).
fn graphs() -> impl Strategy<Value = (Vec<Vec<(usize, usize)>>, usize)> {
    (2usize..=6, any::<bool>()).prop_flat_map(|(n, acyclic)| {
        // Each task waits on up to 3 tasks (itself included, sometimes), each with one of
        // the five ways to wait; half the graphs keep only edges to later tasks (acyclic),
        // so that waits that must not fail are as common as cycles.
        let graph = prop::collection::vec(prop::collection::vec((0..n, 0usize..5), 0..=3), n)
            .prop_map(move |mut g| {
                for (i, v) in g.iter_mut().enumerate() {
                    let mut seen = Vec::new();
                    v.retain(|(j, _)| {
                        let keep = !seen.contains(j) && (!acyclic || *j > i);
                        seen.push(*j);
                        keep
                    });
                }
                g
            });
        (graph, 1..=n)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every task ends; a task's wait fails with `Deadlock` only on a real cycle of the
    /// graph that runs through that task (each reported once); an acyclic graph reports
    /// nothing; and every cycle of the graph has a member whose wait failed (else the cycle
    /// would hang).
    #[test]
    fn random_wait_graphs_match_the_model((targets, threads) in graphs()) {
        let n = targets.len();
        let t2 = targets.clone();
        let outcomes = bounded("random wait graph", move || {
            let targets = t2;
            let p = pool(threads);
            let all: Arc<OnceLock<Vec<Future<Outcome>>>> = Arc::default();
            let ready = Gate::new();
            let fs: Vec<_> = (0..n)
                .map(|i| {
                    let task = graph_task(i, targets[i].clone(), all.clone(), ready.clone());
                    p.submit(named(format!("t{i}"), task)).unwrap()
                })
                .collect();
            all.set(fs.clone()).unwrap();
            ready.open();
            let ids: Vec<FutureId> = fs.iter().map(|f| f.id()).collect();
            let outcomes: Vec<Result<(), Vec<usize>>> = fs
                .iter()
                .map(|f| {
                    f.result_timeout(LIMIT)
                        .expect("every task ends")
                        .clone()
                        .map_err(|d| {
                            d.cycle()
                                .iter()
                                .map(|l| ids.iter().position(|&id| id == l.future()).unwrap())
                                .collect()
                        })
                })
                .collect();
            outcomes
        });
        let mut reported: Vec<Vec<usize>> = Vec::new();
        for (i, o) in outcomes.iter().enumerate() {
            if let Err(cycle) = o {
                prop_assert_eq!(cycle[0], i, "the failing task's own future comes first");
                for (k, &a) in cycle.iter().enumerate() {
                    let b = cycle[(k + 1) % cycle.len()];
                    prop_assert!(
                        targets[a].iter().any(|&(j, _)| j == b),
                        "{} does not wait on {}: {:?}", a, b, cycle
                    );
                }
                let c = canonical(cycle);
                prop_assert!(!reported.contains(&c), "cycle {:?} reported twice", c);
                reported.push(c);
            }
        }
        if !has_cycle(&targets) {
            prop_assert!(reported.is_empty());
        } else {
            // Remove the tasks that failed: what is left must be acyclic (every cycle had a
            // member whose wait failed).
            let survivors: Vec<Vec<(usize, usize)>> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| if outcomes[i].is_err() { Vec::new() } else { t.clone() })
                .collect();
            prop_assert!(!has_cycle(&survivors), "a cycle hung: {:?}", outcomes);
        }
    }
}
