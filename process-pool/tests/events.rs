//! `events()` and `stats()`: the stream of a run matches a model of the run (proptest over
//! random workloads with faults: values, errors, panics, workers killed by `abort` or by
//! `SIGKILL` of themselves, time limits, cancellations), and retries, quarantines and a broken pool are
//! told. Every wait is bounded.

mod util;

use std::collections::HashMap;
use std::time::Duration;

use cfutures_core::events::{Event, TaskOutcome};
use cfutures_core::{Future, FutureId, Submit, TaskError, WorkerExit};
use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, WorkerDeathPolicy, WorkerOutput};
use proptest::prelude::*;
use util::*;

fn value(x: u64) -> u64 {
    x * 2
}

fn panic(x: u64) -> u64 {
    panic!("task {x} panics")
}

fn abort(_: u64) -> u64 {
    std::process::abort()
}

fn sigkill_self(_: u64) -> u64 {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    loop {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Value,
    Error,
    Panic,
    Abort,
    SigKill,
    Cancel,
    /// Runs past its time limit (its worker is killed).
    TimeLimit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Value),
        1 => Just(Op::Error),
        1 => Just(Op::Panic),
        1 => Just(Op::Abort),
        1 => Just(Op::SigKill),
        1 => Just(Op::Cancel),
        1 => Just(Op::TimeLimit),
    ]
}

/// What the future says about how its task ended.
fn outcome_of<T>(f: &Future<T>) -> TaskOutcome {
    if f.cancelled() {
        return TaskOutcome::Cancelled;
    }
    match f.exception_timeout(WAIT).expect("done in time") {
        None => TaskOutcome::Ok,
        Some(e) => TaskOutcome::of_error(&e),
    }
}

/// The model's rules over one run's events; `tasks`: each task's id and final outcome.
fn check_stream(all: &[Event], tasks: &[(FutureId, TaskOutcome)]) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(all.last(), Some(Event::Shutdown { .. })),
        "Shutdown last"
    );
    prop_assert_eq!(
        all.iter()
            .filter(|e| matches!(e, Event::Shutdown { .. }))
            .count(),
        1
    );
    let mut t = all[0].at();
    for e in all {
        prop_assert!(e.at() >= t, "times never go back: {:?}", e);
        t = e.at();
    }
    let mut workers_started: Vec<u64> = Vec::new();
    for (i, e) in all.iter().enumerate() {
        match e {
            Event::WorkerStarted { worker, pid, .. } => {
                prop_assert!(pid.is_some());
                workers_started.push(*worker);
            }
            Event::Started { worker, pid, .. } => {
                prop_assert!(
                    workers_started.contains(worker),
                    "{e:?} on a started worker"
                );
                prop_assert!(pid.is_some());
            }
            Event::WorkerDied {
                worker, exit, task, ..
            } => {
                prop_assert!(workers_started.contains(worker));
                prop_assert!(exit.is_some());
                if let Some(t) = task {
                    // The task it held ends lost or cancelled (killed by `cancel`), after.
                    let (_, out) = tasks
                        .iter()
                        .find(|(id, _)| id == t)
                        .expect("a task of this run");
                    prop_assert!(
                        matches!(
                            out,
                            TaskOutcome::Lost | TaskOutcome::Cancelled | TaskOutcome::TimedOut
                        ),
                        "{e:?}, the task ended {out:?}"
                    );
                    let fin = all
                        .iter()
                        .position(|f| f.task() == Some(*t) && f.outcome().is_some())
                        .unwrap();
                    prop_assert!(fin > i, "the death before its task's Finished");
                }
            }
            _ => {}
        }
    }
    for &(id, out) in tasks {
        let mine: Vec<(usize, &Event)> = all
            .iter()
            .enumerate()
            .filter(|(_, e)| e.task() == Some(id) && !matches!(e, Event::WorkerDied { .. }))
            .collect();
        let submitted: Vec<usize> = mine
            .iter()
            .filter(|(_, e)| matches!(e, Event::Submitted { .. }))
            .map(|(i, _)| *i)
            .collect();
        let finished: Vec<(usize, &Event)> = mine
            .iter()
            .filter(|(_, e)| e.outcome().is_some())
            .copied()
            .collect();
        prop_assert_eq!(submitted.len(), 1, "one Submitted for {}", id);
        prop_assert_eq!(finished.len(), 1, "one Finished for {}: {:#?}", id, mine);
        prop_assert_eq!(mine[0].0, submitted[0], "Submitted first");
        let (fi, fe) = finished[0];
        prop_assert_eq!(mine.last().unwrap().0, fi, "Finished last");
        prop_assert_eq!(fe.outcome(), Some(out), "the future agrees: {:?}", fe);
        let started = mine
            .iter()
            .any(|(i, e)| matches!(e, Event::Started { .. }) && *i < fi);
        if matches!(
            out,
            TaskOutcome::Ok
                | TaskOutcome::Err
                | TaskOutcome::Panicked
                | TaskOutcome::Lost
                | TaskOutcome::TimedOut
        ) {
            prop_assert!(started, "{} ran: a Started before its Finished", id);
            let Event::Finished {
                worker, run_time, ..
            } = fe
            else {
                unreachable!()
            };
            prop_assert!(worker.is_some());
            // A result comes with the run time its worker measured.
            if matches!(
                out,
                TaskOutcome::Ok | TaskOutcome::Err | TaskOutcome::Panicked
            ) {
                prop_assert!(run_time.is_some());
            }
        }
        if matches!(out, TaskOutcome::Lost | TaskOutcome::TimedOut) {
            prop_assert!(
                all[..fi]
                    .iter()
                    .any(|e| matches!(e, Event::WorkerDied { task: Some(t), .. } if *t == id)),
                "a WorkerDied holding {} before it is lost",
                id
            );
        }
    }
    Ok(())
}

fn run_workload(ops: &[Op], workers: usize) -> Result<(), TestCaseError> {
    let pool = quiet_pool(workers);
    let events = pool.events();
    /// How a task ended, once it did (asked after every task was submitted).
    type Ask = Box<dyn Fn() -> TaskOutcome>;
    let mut tasks: Vec<(Op, FutureId, Ask)> = Vec::new();
    fn keep<T: 'static>(f: Future<T>) -> (FutureId, Ask) {
        (f.id(), Box::new(move || outcome_of(&f)))
    }
    for (i, &op) in ops.iter().enumerate() {
        let x = i as u64;
        let (id, out) = match op {
            Op::Value => keep(pool.submit_fn(value, x).unwrap()),
            Op::Error => keep(pool.submit(Refuse(x)).unwrap()),
            Op::Panic => keep(pool.submit_fn(panic, x).unwrap()),
            Op::Abort => keep(pool.submit_fn(abort, x).unwrap()),
            Op::SigKill => keep(pool.submit_fn(sigkill_self, x).unwrap()),
            Op::Cancel => {
                let f = pool.submit_fn(sleep_ms, 30).unwrap();
                pool.cancel(&f);
                keep(f)
            }
            Op::TimeLimit => keep(
                pool.submit_fn_with_timeout(sleep_ms, 5_000, Duration::from_millis(20))
                    .unwrap(),
            ),
        };
        tasks.push((op, id, out));
    }
    let outcomes: Vec<(FutureId, TaskOutcome)> =
        tasks.iter().map(|(_, id, out)| (*id, out())).collect();
    // Shut down (bounded: nothing here runs long), then read the stream to its end. The
    // counts are read once the pool is shut down: a future cancelled while queued is done at
    // once, but counted (and told) when the pool notices, as `wait` counts it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pool.shutdown(true, false);
        let _ = tx.send(pool.stats());
    });
    let stats = rx.recv_timeout(WAIT).expect("the pool shut down in time");
    let all = collect_events(&events);
    prop_assert_eq!(events.dropped(), 0);
    // The model's expectations from the ops: a task that kills its worker is lost, one past
    // its time limit timed out (its worker killed); the others end as they say, except that a `cancel` that kills a worker just as its task's result
    // was on its way takes the next task of that worker with it (lost, as without retries).
    let cancels = ops.iter().any(|o| matches!(o, Op::Cancel));
    for ((op, id, _), (_, out)) in tasks.iter().zip(&outcomes) {
        let want = match op {
            Op::Value => TaskOutcome::Ok,
            Op::Error => TaskOutcome::Err,
            Op::Panic => TaskOutcome::Panicked,
            Op::Abort | Op::SigKill => TaskOutcome::Lost,
            Op::TimeLimit => TaskOutcome::TimedOut,
            Op::Cancel => {
                prop_assert!(matches!(
                    out,
                    TaskOutcome::Cancelled | TaskOutcome::Ok | TaskOutcome::Lost
                ));
                continue;
            }
        };
        prop_assert!(
            *out == want || (cancels && *out == TaskOutcome::Lost),
            "{:?} ({}) ended {:?}",
            op,
            id,
            out
        );
    }
    check_stream(&all, &outcomes)?;
    // The counts agree with the stream.
    let n = ops.len() as u64;
    let count = |k: TaskOutcome| outcomes.iter().filter(|(_, o)| *o == k).count() as u64;
    prop_assert_eq!(stats.submitted, n);
    prop_assert_eq!((stats.queued, stats.running, stats.done), (0, 0, n));
    prop_assert_eq!(stats.succeeded, count(TaskOutcome::Ok));
    prop_assert_eq!(stats.cancelled, count(TaskOutcome::Cancelled));
    prop_assert_eq!(stats.failed, n - stats.succeeded - stats.cancelled);
    let deaths = all
        .iter()
        .filter(|e| matches!(e, Event::WorkerDied { .. }))
        .count() as u64;
    prop_assert_eq!(stats.worker_deaths, deaths);
    let ran = outcomes
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                TaskOutcome::Ok | TaskOutcome::Err | TaskOutcome::Panicked
            )
        })
        .count() as u64;
    prop_assert_eq!(stats.run_times.count, ran);
    Ok(())
}

/// A task that returns an error.
#[derive(serde::Serialize, serde::Deserialize)]
struct Refuse(u64);

impl cfutures_core::Task for Refuse {
    type Output = u64;
    fn run(self) -> Result<u64, TaskError> {
        Err(TaskError::new(std::io::Error::other(format!(
            "task {} says no",
            self.0
        ))))
    }
}
impl cfutures_process_pool::RemoteTask for Refuse {}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    })]

    #[test]
    fn event_streams_match_the_model(ops in prop::collection::vec(op(), 1..14), workers in 1usize..=2) {
        run_workload(&ops, workers)?;
    }
}

#[test]
fn nothing_but_values() {
    run_workload(&[Op::Value; 20], 2).unwrap();
}

/// Kills its worker every time.
fn always_abort(_: u64) -> u64 {
    std::process::abort()
}

#[test]
fn retried_then_quarantined() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .worker_output(WorkerOutput::Null)
        .retry(
            RetryPolicy::new()
                .attempts(5)
                .poison_after(2)
                .backoff(Duration::from_millis(1), Duration::from_millis(1)),
        )
        .build()
        .unwrap();
    let events = pool.events();
    let f = pool.submit_fn(always_abort, 0).unwrap();
    let e = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(e.is_quarantined());
    let s = pool.stats();
    assert_eq!((s.retried, s.quarantined, s.worker_deaths), (1, 1, 2));
    assert_eq!((s.failed, s.queued, s.running), (1, 0, 0));
    bounded_drop(pool);
    let mine: Vec<&'static str> = collect_events(&events)
        .iter()
        .filter(|e| e.task() == Some(f.id()))
        .map(|e| e.kind())
        .collect();
    assert_eq!(
        mine,
        [
            "submitted",
            "started",
            "worker died",
            "retried",
            "started",
            "worker died",
            "quarantined",
            "finished"
        ]
    );
}

#[test]
fn worker_died_names_pid_exit_and_task() {
    let pool = quiet_pool(1);
    let events = pool.events();
    let f = pool.submit_fn(abort, 0).unwrap();
    assert!(f.exception_timeout(WAIT).unwrap().unwrap().is_worker_died());
    bounded_drop(pool);
    let all = collect_events(&events);
    let pids: HashMap<u64, u32> = all
        .iter()
        .filter_map(|e| match e {
            Event::WorkerStarted { worker, pid, .. } => Some((*worker, pid.unwrap())),
            _ => None,
        })
        .collect();
    let died = all
        .iter()
        .find_map(|e| match e {
            Event::WorkerDied {
                worker,
                pid,
                exit,
                task,
                ..
            } => Some((*worker, *pid, *exit, *task)),
            _ => None,
        })
        .expect("a WorkerDied");
    assert_eq!(died.1, Some(pids[&died.0]));
    assert_eq!(died.2, Some(WorkerExit::Signal(6)));
    assert_eq!(died.3, Some(f.id()));
}

#[test]
fn a_broken_pool_says_so_then_shuts_down() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .worker_output(WorkerOutput::Null)
        .on_worker_death(WorkerDeathPolicy::BreakPool)
        .build()
        .unwrap();
    let events = pool.events();
    let a = pool.submit_fn(abort, 0).unwrap();
    let b = pool.submit_fn(sleep_ms, 1).unwrap();
    assert!(a.result_timeout(WAIT).unwrap_err().is_broken());
    assert!(b.result_timeout(WAIT).unwrap_err().is_broken());
    bounded_drop(pool);
    let all = collect_events(&events);
    let kinds: Vec<&str> = all.iter().map(|e| e.kind()).collect();
    let broken = kinds.iter().position(|k| *k == "broken").expect("Broken");
    assert_eq!(kinds.last(), Some(&"shut down"));
    let fa = all
        .iter()
        .position(|e| e.task() == Some(a.id()) && e.outcome().is_some())
        .unwrap();
    assert!(broken < fa);
    assert_eq!(all[fa].outcome(), Some(TaskOutcome::Broken));
}

#[test]
fn a_subscriber_that_never_reads_loses_events_not_time() {
    let pool = quiet_pool(2);
    let stuck = pool.events_with_capacity(8);
    let fs: Vec<_> = (0..200)
        .map(|i| pool.submit_fn(value, i).unwrap())
        .collect();
    for f in &fs {
        f.result_timeout(WAIT).unwrap();
    }
    assert!(stuck.dropped() > 0);
    assert_eq!(stuck.drain().len(), 8);
    assert_eq!(pool.stats().succeeded, 200);
    bounded_drop(pool);
    // The final event is never lost, even by a full buffer.
    let rest = collect_events(&stuck);
    assert!(
        matches!(rest.last(), Some(Event::Shutdown { .. })),
        "{rest:?}"
    );
}

#[test]
fn nobody_listening_costs_no_events_and_stats_still_count() {
    let pool = quiet_pool(2);
    let fs: Vec<_> = (0..50).map(|i| pool.submit_fn(value, i).unwrap()).collect();
    for f in &fs {
        f.result_timeout(WAIT).unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.submitted, s.succeeded, s.done), (50, 50, 50));
    assert_eq!(s.workers.iter().map(|w| w.finished).sum::<u64>(), 50);
    assert!(s.run_times.p50.unwrap() <= s.run_times.max.unwrap());
    // A subscriber after the fact sees only what comes next.
    let late = pool.events();
    assert!(late.try_recv().is_none());
    bounded_drop(pool);
    let rest = collect_events(&late);
    assert_eq!(rest.len(), 1, "{rest:?}");
}

/// Drops the pool on a thread of its own, within the bound.
fn bounded_drop(pool: ProcessPoolExecutor) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pool);
        let _ = tx.send(());
    });
    rx.recv_timeout(WAIT).expect("the pool shut down in time");
}

/// In a forked child of the process that made the pool, `events()` is a stream that has
/// already ended (the pool's I/O thread is the parent's: nothing would ever end it).
#[test]
fn events_in_a_forked_child_end_at_once() {
    run_isolated(
        "events_in_a_forked_child_end_at_once_alone",
        Duration::from_secs(60),
    );
}

#[test]
#[ignore = "run by events_in_a_forked_child_end_at_once, in a process of its own"]
fn events_in_a_forked_child_end_at_once_alone() {
    if !isolated() {
        return;
    }
    let pool = quiet_pool(1);
    let events = pool.events();
    pool.submit_fn(value, 1)
        .unwrap()
        .result_timeout(WAIT)
        .unwrap();
    // SAFETY: the child only subscribes, reads with a bound and `_exit`s (glibc keeps
    // malloc usable in the child of a multi-threaded fork).
    let child = unsafe { libc::fork() };
    if child == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.events()
                .recv_timeout(Duration::from_secs(2))
                .is_err_and(|e| e.is_closed())
        }))
        .unwrap_or(false);
        // SAFETY: ends the child without running destructors (the pool is the parent's).
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    assert!(child > 0);
    let mut status = 0;
    // SAFETY: waiting for our own child, with a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's stream did not end: {status:#x}"
    );
    bounded_drop(pool);
    assert!(matches!(
        collect_events(&events).last(),
        Some(Event::Shutdown { .. })
    ));
}
