//! `events()` and `stats()`: the event stream of random workloads (values, errors, panics,
//! cancellations while queued, nested submits that wait on their children) against a
//! model of what each task must report, and the statistics against the same model.

mod util;

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc};

use cfutures_core::events::{Event, Events, TaskOutcome};
use cfutures_core::{fallible, Future, FutureId};
use cfutures_thread_pool::ThreadPoolExecutor;
use proptest::prelude::*;
use util::{Gate, LIMIT};

/// What a workload task does.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ok,
    Err,
    Panic,
    /// Cancelled while queued: never runs.
    Cancel,
    /// Submits this many children to the same pool and waits for each.
    Nested(u8),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Ok),
        2 => Just(Kind::Err),
        2 => Just(Kind::Panic),
        2 => Just(Kind::Cancel),
        2 => (1u8..4).prop_map(Kind::Nested),
    ]
}

type Children = Vec<Future<u64>>;

/// Reads events until `Shutdown` (which must come), each within [`LIMIT`].
fn until_shutdown(events: &Events) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = events
            .recv_timeout(LIMIT)
            .expect("the stream ends with Shutdown, in time");
        let last = matches!(e, Event::Shutdown { .. });
        seen.push(e);
        if last {
            break;
        }
    }
    seen
}

/// The model: each task's expected outcome (`Cancelled`: no `Started`), checked against the
/// stream; returns the number of workers the stream reports started.
fn check_stream(seen: &[Event], expected: &HashMap<FutureId, TaskOutcome>) -> usize {
    // Shutdown once, last.
    let shutdowns = seen
        .iter()
        .filter(|e| matches!(e, Event::Shutdown { .. }))
        .count();
    assert_eq!(shutdowns, 1);
    assert!(matches!(seen.last(), Some(Event::Shutdown { .. })));

    let mut workers = HashSet::new();
    let mut submitted = HashSet::new();
    let mut started = HashMap::new();
    let mut finished = HashMap::new();
    for e in seen {
        match e {
            Event::WorkerStarted { worker, .. } => assert!(workers.insert(*worker)),
            Event::Submitted { task, .. } => {
                assert!(submitted.insert(*task), "one Submitted per task");
            }
            Event::Started { task, worker, .. } => {
                assert!(submitted.contains(task), "Submitted before Started");
                assert!(workers.contains(worker), "its worker started before");
                assert!(!finished.contains_key(task), "Started before Finished");
                assert!(started.insert(*task, *worker).is_none(), "one Started");
            }
            Event::Finished {
                task,
                worker,
                outcome,
                run_time,
                ..
            } => {
                assert!(submitted.contains(task), "Submitted before Finished");
                assert!(finished.insert(*task, *outcome).is_none(), "one Finished");
                // A task that ran names its worker and has a run time; one cancelled while
                // queued has neither.
                assert_eq!(worker.as_ref(), started.get(task));
                assert_eq!(run_time.is_some(), started.contains_key(task));
            }
            Event::Shutdown { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(submitted.len(), expected.len());
    for (task, want) in expected {
        assert!(submitted.contains(task));
        assert_eq!(finished.get(task), Some(want), "outcome of {task}");
        assert_eq!(
            started.contains_key(task),
            *want != TaskOutcome::Cancelled,
            "Started iff it ran: {task}"
        );
    }
    workers.len()
}

fn run_workload(workers: usize, kinds: &[Kind]) {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(workers)
            .quiet_panics(true)
            .build()
            .unwrap(),
    );
    let events = pool.events();
    let mut expected: HashMap<FutureId, TaskOutcome> = HashMap::new();

    // Occupy every worker, so that the workload queues (and can be cancelled).
    let gate = Gate::new();
    let (ready, ready_rx) = mpsc::channel();
    let blockers: Vec<Future<()>> = (0..workers)
        .map(|_| {
            let (g, ready) = (gate.clone(), ready.clone());
            pool.submit(move || {
                ready.send(()).unwrap();
                g.wait();
            })
            .unwrap()
        })
        .collect();
    for _ in 0..workers {
        ready_rx.recv_timeout(LIMIT).unwrap();
    }
    for b in &blockers {
        expected.insert(b.id(), TaskOutcome::Ok);
    }

    let mut tasks: Vec<(Kind, Future<Children>)> = Vec::new();
    for &k in kinds {
        let f = match k {
            Kind::Ok | Kind::Cancel => pool.submit(Children::new).unwrap(),
            Kind::Err => pool
                .submit(fallible(|| -> Result<Children, &str> { Err("no") }))
                .unwrap(),
            Kind::Panic => pool.submit(|| -> Children { panic!("boom") }).unwrap(),
            Kind::Nested(n) => {
                let p = pool.clone();
                pool.submit(move || {
                    let children: Children = (0..u64::from(n))
                        .map(|i| p.submit(move || i).unwrap())
                        .collect();
                    for (i, c) in children.iter().enumerate() {
                        assert_eq!(*c.result_timeout(LIMIT).unwrap(), i as u64);
                    }
                    children
                })
                .unwrap()
            }
        };
        if let Kind::Cancel = k {
            assert!(f.cancel(), "queued behind the blockers: cancellable");
        }
        tasks.push((k, f));
    }
    gate.open();

    for (k, f) in &tasks {
        let want = match k {
            Kind::Ok => TaskOutcome::Ok,
            Kind::Err => TaskOutcome::Err,
            Kind::Panic => TaskOutcome::Panicked,
            Kind::Cancel => TaskOutcome::Cancelled,
            Kind::Nested(_) => TaskOutcome::Ok,
        };
        expected.insert(f.id(), want);
        match k {
            Kind::Cancel => assert!(f.result_timeout(LIMIT).unwrap_err().is_cancelled()),
            Kind::Ok | Kind::Nested(_) => {
                for c in f.result_timeout(LIMIT).unwrap() {
                    expected.insert(c.id(), TaskOutcome::Ok);
                }
            }
            Kind::Err | Kind::Panic => {
                assert!(f.exception_timeout(LIMIT).unwrap().is_some());
            }
        }
    }
    for b in &blockers {
        b.result_timeout(LIMIT).unwrap();
    }
    // Every future above is alive until here, so no two tasks share an id.
    pool.shutdown(true, false);
    let seen = until_shutdown(&events);
    assert_eq!(events.dropped(), 0);
    let started_workers = check_stream(&seen, &expected);

    // The statistics agree with the model.
    let s = pool.stats();
    let count = |o: TaskOutcome| expected.values().filter(|&&v| v == o).count() as u64;
    let total = expected.len() as u64;
    let failed = count(TaskOutcome::Err) + count(TaskOutcome::Panicked);
    assert_eq!(s.submitted, total);
    assert_eq!(s.succeeded, count(TaskOutcome::Ok));
    assert_eq!(s.failed, failed);
    assert_eq!(s.cancelled, count(TaskOutcome::Cancelled));
    assert_eq!((s.done, s.queued, s.running), (total, 0, 0));
    assert_eq!(s.workers_started, started_workers as u64);
    assert_eq!(s.workers_started, pool.started_threads() as u64);
    let ran: u64 = s.workers.iter().map(|w| w.finished).sum();
    assert_eq!(ran, total - count(TaskOutcome::Cancelled));
    assert_eq!(s.workers.iter().map(|w| w.failed).sum::<u64>(), failed);
    assert!(s.workers.iter().all(|w| !w.alive));
    assert!(s.run_times.count <= ran);
    // With a subscriber every task that ran is timed.
    assert_eq!(s.run_times.count, ran);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn event_streams_match_the_model(workers in 1usize..4, kinds in prop::collection::vec(kind(), 0..24)) {
        run_workload(workers, &kinds);
    }
}

#[test]
fn without_a_subscriber_stats_are_kept_and_run_times_sampled() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let fs: Vec<_> = (0..1000u64)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    for f in &fs {
        f.result_timeout(LIMIT).unwrap();
    }
    pool.shutdown(true, false);
    let s = pool.stats();
    assert_eq!((s.submitted, s.succeeded, s.done), (1000, 1000, 1000));
    // One task in 32 per worker is timed.
    assert!(s.run_times.count <= 1000 / 32 + 2, "{}", s.run_times.count);
    assert!(s.run_times.count >= 1000 / 32 - 2, "{}", s.run_times.count);
    assert!(s.run_times.p50.is_some());
}

#[test]
fn a_subscriber_after_shutdown_gets_an_ended_stream() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    pool.submit(|| ()).unwrap().result_timeout(LIMIT).unwrap();
    pool.shutdown(true, false);
    let events = pool.events();
    assert!(events.recv_timeout(LIMIT).unwrap_err().is_closed());
}

#[test]
fn shutdown_cancelling_queued_tasks_reports_them_cancelled_without_started() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let events = pool.events();
    let gate = Gate::new();
    let (ready, ready_rx) = mpsc::channel();
    let g = gate.clone();
    let blocker = pool
        .submit(move || {
            ready.send(()).unwrap();
            g.wait();
        })
        .unwrap();
    ready_rx.recv_timeout(LIMIT).unwrap();
    let queued: Vec<_> = (0..3).map(|_| pool.submit(|| ()).unwrap()).collect();
    pool.shutdown(false, true);
    gate.open();
    blocker.result_timeout(LIMIT).unwrap();
    let seen = until_shutdown(&events);
    for q in &queued {
        assert!(q.cancelled());
        let mine: Vec<&Event> = seen.iter().filter(|e| e.task() == Some(q.id())).collect();
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert!(matches!(mine[0], Event::Submitted { .. }));
        assert_eq!(mine[1].outcome(), Some(TaskOutcome::Cancelled));
    }
    let s = pool.stats();
    assert_eq!((s.submitted, s.succeeded, s.cancelled), (4, 1, 3));
}

#[test]
fn a_failing_initializer_reports_broken_then_shutdown() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .initializer(|| Err::<(), _>("no database"))
        .build()
        .unwrap();
    let events = pool.events();
    let f = pool.submit(|| 1).unwrap();
    assert!(f.result_timeout(LIMIT).unwrap_err().is_broken());
    let seen = until_shutdown(&events);
    let kinds: Vec<&str> = seen.iter().map(Event::kind).collect();
    assert!(kinds.contains(&"broken"), "{kinds:?}");
    let mine = seen
        .iter()
        .find(|e| e.task() == Some(f.id()) && e.outcome().is_some());
    assert_eq!(mine.and_then(Event::outcome), Some(TaskOutcome::Broken));
    assert_eq!(pool.stats().failed, 1);
}

#[test]
fn worker_names_match_the_threads() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .thread_name_prefix("ev")
        .build()
        .unwrap();
    let events = pool.events();
    let name = pool
        .submit(|| std::thread::current().name().unwrap().to_owned())
        .unwrap();
    let name = name.result_timeout(LIMIT).unwrap().clone();
    pool.shutdown(true, false);
    let seen = until_shutdown(&events);
    let worker = seen
        .iter()
        .find_map(|e| match e {
            Event::Started { worker, .. } => Some(*worker),
            _ => None,
        })
        .unwrap();
    assert_eq!(pool.worker_name(worker), name);
}
