//! Review of `events()` / `stats()` (issue 15 point 4), as a user would hit them.
//!
//! Each test guards a property that matters; those whose doc says "it used to" reproduced a
//! defect the review found (named `defect_*` until it was fixed). Every blocking wait is
//! bounded; no sleep is used as synchronisation.

mod util;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cfutures_core::events::{Event, Stats, TaskOutcome};
use cfutures_core::FutureId;
use cfutures_process_pool::{ProcessPoolExecutor, WorkerOutput};
use util::*;

fn finished_of(all: &[Event], task: FutureId) -> Vec<&Event> {
    all.iter()
        .filter(|e| e.task() == Some(task) && e.outcome().is_some())
        .collect()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn wait_running<T>(f: &cfutures_core::Future<T>) {
    let deadline = Instant::now() + WAIT;
    while !f.running() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A progress display reads `stats()` from each future's done-callback: the task is counted
/// done once, nothing is left running or queued.
#[test]
fn stats_in_a_done_callback_count_the_task_once() {
    let pool = Arc::new(quiet_pool(1));
    let f = pool.submit_fn(sleep_ms, 50).unwrap();
    let (tx, rx) = mpsc::channel::<Stats>();
    let p = Arc::new(Mutex::new(Some(tx)));
    let pool2 = pool.clone();
    f.add_done_callback(move |_| {
        if let Some(tx) = p.lock().unwrap().take() {
            let _ = tx.send(pool2.stats());
        }
    });
    let s = rx.recv_timeout(WAIT).expect("the callback ran");
    assert_eq!(
        (s.submitted, s.done, s.succeeded, s.running, s.queued),
        (1, 1, 1, 0, 0),
        "{s:#?}"
    );
}

/// `shutdown(cancel_futures)`: counts agree with the futures, each cancelled future has one
/// `Finished(Cancelled)` and no `Started`, `Shutdown` is last.
#[test]
fn stats_agree_with_futures_after_shutdown_cancel_futures() {
    let pool = quiet_pool(1);
    let events = pool.events();
    let head = pool.submit_fn(sleep_ms, 200).unwrap();
    wait_running(&head);
    let queued: Vec<_> = (0..20)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    assert!(queued[5].cancel());
    pool.shutdown(true, true);
    assert_eq!(*head.result_timeout(WAIT).unwrap(), 200);
    let cancelled = queued.iter().filter(|f| f.cancelled()).count() as u64;
    let s = pool.stats();
    assert_eq!(s.submitted, 21, "{s:#?}");
    assert_eq!((s.queued, s.running, s.done), (0, 0, 21), "{s:#?}");
    assert_eq!(s.cancelled, cancelled, "{s:#?}");
    assert_eq!(s.succeeded, 21 - cancelled, "{s:#?}");
    let all = collect_events(&events);
    assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
    for f in &queued {
        let fin = finished_of(&all, f.id());
        assert_eq!(fin.len(), 1, "{:?}: {all:#?}", f.id());
        if f.cancelled() {
            assert_eq!(fin[0].outcome(), Some(TaskOutcome::Cancelled));
        }
    }
}

/// A subscriber with a one-event buffer that is never read: the pool is not slowed into a
/// hang, the surplus is counted, `Shutdown` still arrives.
#[test]
fn full_subscriber_never_blocks_and_still_gets_shutdown() {
    let pool = quiet_pool(2);
    let events = pool.events_with_capacity(1);
    let fs: Vec<_> = (0..300)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 + 1);
    }
    pool.shutdown(true, false);
    assert!(events.dropped() >= 300 * 3 - 1, "{}", events.dropped());
    let all = collect_events(&events);
    assert_eq!(
        all.len(),
        2,
        "the one buffered event, then Shutdown: {all:#?}"
    );
    assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
}

/// A time-limit kill: the `WorkerDied` holding the task comes before its `Finished
/// (TimedOut)`, the counts say failed (not running), the worker is replaced.
#[test]
fn time_limit_kill_is_told_in_order_and_counted() {
    let pool = quiet_pool(1);
    let events = pool.events();
    let slow = pool
        .submit_fn_with_timeout(sleep_ms, 10_000, Duration::from_millis(100))
        .unwrap();
    let err = slow.result_timeout(WAIT).unwrap_err();
    assert!(err.task_error().is_some_and(|e| e.is_time_limit()), "{err}");
    let after = pool.submit_fn(add_one, 1).unwrap();
    assert_eq!(*after.result_timeout(WAIT).unwrap(), 2);
    pool.shutdown(true, false);
    let s = pool.stats();
    assert_eq!(
        (s.submitted, s.failed, s.succeeded, s.running, s.queued),
        (2, 1, 1, 0, 0)
    );
    assert_eq!(s.worker_deaths, 1, "{s:#?}");
    let all = collect_events(&events);
    let fin = all
        .iter()
        .position(|e| e.task() == Some(slow.id()) && e.outcome().is_some())
        .unwrap();
    assert_eq!(all[fin].outcome(), Some(TaskOutcome::TimedOut));
    let died = all
        .iter()
        .position(|e| matches!(e, Event::WorkerDied { task: Some(t), .. } if *t == slow.id()))
        .expect("a WorkerDied holding the killed task");
    assert!(died < fin, "WorkerDied after the task's Finished: {all:#?}");
}

/// A pool dropped without `shutdown` ends its stream with `Shutdown`, after every task's
/// `Finished`; a subscriber made after a shutdown is ended at once.
#[test]
fn drop_without_shutdown_ends_the_stream() {
    let pool = quiet_pool(2);
    let events = pool.events();
    let fs: Vec<_> = (0..10)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    // A subscription dropped before the pool: nothing of it is left to block anything.
    drop(pool.events());
    drop(pool);
    for f in &fs {
        f.result_timeout(WAIT).unwrap();
    }
    let all = collect_events(&events);
    assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
    for f in &fs {
        assert_eq!(finished_of(&all, f.id()).len(), 1);
    }
    let late = self::quiet_pool(1);
    late.shutdown(true, false);
    assert!(late.events().recv_timeout(WAIT).unwrap_err().is_closed());
}

/// A task already running when someone subscribes: its `Finished` (an action after
/// `subscribe()` returned) is delivered.
#[test]
fn task_running_at_subscribe_has_its_finished() {
    let pool = quiet_pool(1);
    let f = pool.submit_fn(sleep_ms, 1000).unwrap();
    wait_running(&f);
    let events = pool.events();
    if f.done() {
        // The machine was too slow to subscribe within the task's second: nothing to check.
        return;
    }
    f.result_timeout(WAIT).unwrap();
    pool.shutdown(true, false);
    let all = collect_events(&events);
    assert_eq!(finished_of(&all, f.id()).len(), 1, "{all:#?}");
}

/// Workers retired by `max_tasks_per_child` stop, they do not die: no `WorkerDied`, no
/// death counted, each replacement told by a `WorkerStarted`.
#[test]
fn retired_workers_are_not_deaths() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(1)
        .worker_output(WorkerOutput::Null)
        .build()
        .unwrap();
    let events = pool.events();
    for i in 0..3 {
        assert_eq!(
            *pool
                .submit_fn(add_one, i)
                .unwrap()
                .result_timeout(WAIT)
                .unwrap(),
            i + 1
        );
    }
    pool.shutdown(true, false);
    let all = collect_events(&events);
    assert!(
        !all.iter().any(|e| matches!(e, Event::WorkerDied { .. })),
        "{all:#?}"
    );
    let s = pool.stats();
    assert_eq!(s.worker_deaths, 0, "{s:#?}");
    assert!(s.workers_started >= 3, "{s:#?}");
    assert_eq!(
        all.iter()
            .filter(|e| matches!(e, Event::WorkerStarted { .. }))
            .count() as u64,
        s.workers_started
    );
    assert!(s.workers.iter().all(|w| !w.alive), "{s:#?}");
}

/// `pool.cancel` of a running task kills its worker: `WorkerDied` holding the task, then its
/// `Finished(Cancelled)`; counted cancelled (not failed), nothing left running.
#[test]
fn cancel_of_a_running_task_is_told_in_order_and_counted() {
    let pool = quiet_pool(1);
    let events = pool.events();
    let path = pid_file("events-review-cancel");
    let f = pool
        .submit_fn(report_then_spin, path.to_string_lossy().into_owned())
        .unwrap();
    // Running in its worker for sure (not only at the head of the worker's window).
    wait_for_pid(&path);
    assert!(pool.cancel(&f));
    assert!(f.result_timeout(WAIT).unwrap_err().is_cancelled());
    assert_eq!(
        *pool
            .submit_fn(add_one, 1)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        2
    );
    pool.shutdown(true, false);
    let s = pool.stats();
    assert_eq!(
        (
            s.submitted,
            s.cancelled,
            s.failed,
            s.succeeded,
            s.running,
            s.queued
        ),
        (2, 1, 0, 1, 0, 0),
        "{s:#?}"
    );
    let all = collect_events(&events);
    let fin = all
        .iter()
        .position(|e| e.task() == Some(f.id()) && e.outcome().is_some())
        .unwrap();
    assert_eq!(all[fin].outcome(), Some(TaskOutcome::Cancelled));
    let died = all
        .iter()
        .position(|e| matches!(e, Event::WorkerDied { task: Some(t), .. } if *t == f.id()))
        .unwrap_or_else(|| panic!("a WorkerDied holding the cancelled task: {all:#?}"));
    assert!(died < fin, "{all:#?}");
}
