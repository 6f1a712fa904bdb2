//! Review of `events()` / `stats()` (issue 15 point 4), as a user would hit them.
//!
//! Each test guards a property that matters; those whose doc says "it used to" reproduced a
//! defect the review found (named `defect_*` until it was fixed). Every blocking wait is
//! bounded ([`LIMIT`]); no sleep is used as synchronisation.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cfutures_core::events::{Event, Events, Stats, TaskOutcome};
use cfutures_thread_pool::ThreadPoolExecutor;
use util::{Gate, LIMIT};

/// Reads the stream to its end, within [`LIMIT`].
fn collect(events: &Events) -> Vec<Event> {
    let deadline = Instant::now() + LIMIT;
    let mut all = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) => all.push(e),
            Err(e) if e.is_closed() => return all,
            Err(_) => panic!(
                "the stream did not end within {LIMIT:?} ({} events)",
                all.len()
            ),
        }
    }
}

fn finished_of(all: &[Event], task: cfutures_core::FutureId) -> Vec<&Event> {
    all.iter()
        .filter(|e| e.task() == Some(task) && e.outcome().is_some())
        .collect()
}

/// `shutdown(cancel_futures = true)` pops each queued job and cancels its future (which runs
/// its done-callbacks in the shutting-down thread). Meanwhile the last worker can see the
/// queue empty and exit: it must not close the stream with `Shutdown` before the drained
/// task's `Finished` is sent (it used to: the `Finished` sent after that was lost). A
/// done-callback makes the window deterministic: it lets the running task end and waits
/// until the worker is gone and the stream closed (or, the stream staying open as it must,
/// a while longer).
#[test]
fn cancelled_finished_not_lost_behind_shutdown() {
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let p = pool.clone();
    let events = pool.events();
    let watcher = pool.events();
    let gate = Gate::new();
    let g = gate.clone();
    let running = pool.submit(move || g.wait()).unwrap();
    // Wait until the one worker runs the gate task (bounded).
    let deadline = Instant::now() + LIMIT;
    while !running.running() {
        assert!(Instant::now() < deadline, "the gate task never started");
        std::thread::yield_now();
    }
    let queued = pool.submit(|| 1).unwrap();
    let saw_shutdown = Arc::new(AtomicBool::new(false));
    let seen = saw_shutdown.clone();
    queued.add_done_callback(move |_| {
        // Runs in the thread that cancels it (the shutdown's), before its `Finished`.
        gate.open();
        let deadline = Instant::now() + LIMIT;
        // Once the worker is gone, give it a moment to (wrongly) close the stream.
        let mut gone_at = None;
        while Instant::now() < deadline {
            if p.live_threads() == 0 {
                let at = *gone_at.get_or_insert_with(Instant::now);
                if at.elapsed() > Duration::from_millis(300) {
                    return;
                }
            }
            match watcher.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Shutdown { .. }) => {
                    seen.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) if e.is_closed() => return,
                _ => {}
            }
        }
    });
    pool.shutdown(true, true);
    assert!(queued.cancelled());
    let all = collect(&events);
    assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
    assert_eq!(
        finished_of(&all, queued.id()).len(),
        1,
        "the cancelled task has its Finished (Shutdown came first: {}): {all:#?}",
        saw_shutdown.load(Ordering::SeqCst)
    );
}

/// A progress display reads `stats()` from each future's done-callback. The thread pool's
/// snapshot derives `submitted` as `succeeded + failed + running + …`; while callbacks run
/// the worker has already counted the task as succeeded, so its slot must no longer say
/// RUNNING (it used to: the one task was counted twice, `submitted` 2, `running` 1).
#[test]
fn stats_in_a_done_callback_count_the_task_once() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let f = pool.submit(move || g.wait()).unwrap();
    let (tx, rx) = mpsc::channel::<Stats>();
    let p = Arc::new(Mutex::new(Some(tx)));
    // The pool is shared with the callback through a channel of snapshots: the callback
    // needs the pool, so it gets a clone of what `stats()` reads through a second handle.
    let pool = Arc::new(pool);
    let pool2 = pool.clone();
    f.add_done_callback(move |_| {
        if let Some(tx) = p.lock().unwrap().take() {
            let _ = tx.send(pool2.stats());
        }
    });
    gate.open();
    let s = rx.recv_timeout(LIMIT).expect("the callback ran");
    assert_eq!(
        (s.submitted, s.done, s.running, s.queued),
        (1, 1, 0, 0),
        "one task, done, seen from its own done-callback: {s:#?}"
    );
    assert!(s.done + s.running + s.queued <= s.submitted);
}

/// With nobody subscribed, a worker times one task in 32, starting with its first: a short
/// run (here 8 tasks, each longer than a millisecond) has a run time in `stats()` (it used
/// to start with the 32nd, and such a run had none).
#[test]
fn stats_run_times_of_a_short_unwatched_run() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let fs: Vec<_> = (0..8)
        .map(|_| {
            pool.submit(|| {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(1) {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
        })
        .collect();
    for f in &fs {
        f.result_timeout(LIMIT).unwrap();
    }
    pool.shutdown(true, false);
    let s = pool.stats();
    assert_eq!(s.succeeded, 8);
    assert!(
        s.run_times.count >= 1 && s.run_times.p50.is_some(),
        "8 tasks of >1 ms ran and stats has no run time: {:?}",
        s.run_times
    );
}

/// A subscription must not allocate its whole buffer up front (it used to: 16384 slots of an
/// `Event`, crossbeam's array channel, ~1 MiB each): a dashboard that opens a subscription
/// per view, or a library that subscribes per pool, pays nothing before events flow.
#[test]
fn subscriptions_cost_little_up_front() {
    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let before = rss_kib();
    let subs: Vec<Events> = (0..64).map(|_| pool.events()).collect();
    let grown = rss_kib().saturating_sub(before);
    drop(subs);
    assert!(
        grown < 16 * 1024,
        "64 idle subscriptions took {grown} KiB of resident memory"
    );
}

/// A subscriber that never reads never slows or blocks the pool: its buffer fills, the
/// surplus is counted as dropped, and the final `Shutdown` still arrives (kept beside the
/// full buffer).
#[test]
fn full_subscriber_never_blocks_and_still_gets_shutdown() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let events = pool.events();
    // 3 events per task: 7000 tasks overflow the default 16384-event buffer.
    let fs: Vec<_> = (0..7000u32)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    for f in &fs {
        f.result_timeout(LIMIT).unwrap();
    }
    pool.shutdown(true, false);
    assert!(events.dropped() > 0);
    let all = collect(&events);
    assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
    assert!(all.len() as u64 + events.dropped() > 7000 * 3);
}

/// Dropping a subscription while tasks run unsubscribes it and nothing else: the pool goes
/// on, the other subscriber sees every task.
#[test]
fn subscriber_dropped_mid_run() {
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let keep = pool.events();
    let gone = Arc::new(Mutex::new(Some(pool.events())));
    let fs: Vec<_> = (0..200u32)
        .map(|i| {
            let gone = gone.clone();
            pool.submit(move || {
                if i == 50 {
                    drop(gone.lock().unwrap().take());
                }
                i
            })
            .unwrap()
        })
        .collect();
    for f in &fs {
        f.result_timeout(LIMIT).unwrap();
    }
    pool.shutdown(true, false);
    let all = collect(&keep);
    for f in &fs {
        let fin = finished_of(&all, f.id());
        assert_eq!(fin.len(), 1);
        assert_eq!(fin[0].outcome(), Some(TaskOutcome::Ok));
    }
    assert_eq!(keep.dropped(), 0);
}

/// A pool dropped without `shutdown` ends its stream with `Shutdown`; a subscription made
/// after the shutdown is ended at once (no iterator that blocks forever).
#[test]
fn drop_without_shutdown_ends_stream_and_late_subscriber_is_ended() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let events = pool.events();
    let f = pool.submit(|| 1).unwrap();
    f.result_timeout(LIMIT).unwrap();
    let late_pool = ThreadPoolExecutor::new(1).unwrap();
    late_pool.shutdown(true, false);
    let late = late_pool.events();
    assert!(late.recv_timeout(LIMIT).unwrap_err().is_closed());
    drop(pool);
    let all = collect(&events);
    assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
    assert_eq!(finished_of(&all, f.id()).len(), 1);
}

/// `shutdown(cancel_futures)`: the counts agree with the futures (no task both queued and
/// cancelled, none running, nothing negative), and each cancelled future has one
/// `Finished(Cancelled)` without a `Started`.
#[test]
fn stats_agree_with_futures_after_shutdown_cancel_futures() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let events = pool.events();
    let gate = Gate::new();
    let g = gate.clone();
    let head = pool.submit(move || g.wait()).unwrap();
    let deadline = Instant::now() + LIMIT;
    while !head.running() {
        assert!(Instant::now() < deadline, "the gate task never started");
        std::thread::yield_now();
    }
    let queued: Vec<_> = (0..20u32)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    // One cancelled by the user before the shutdown drains the rest.
    assert!(queued[3].cancel());
    let opener = std::thread::spawn(move || gate.open());
    pool.shutdown(true, true);
    opener.join().unwrap();
    head.result_timeout(LIMIT).unwrap();
    let cancelled = queued.iter().filter(|f| f.cancelled()).count() as u64;
    let ran = queued.len() as u64 - cancelled;
    let s = pool.stats();
    assert_eq!(s.submitted, 21, "{s:#?}");
    assert_eq!((s.queued, s.running), (0, 0), "{s:#?}");
    assert_eq!(s.cancelled, cancelled, "{s:#?}");
    assert_eq!(s.succeeded, 1 + ran, "{s:#?}");
    assert_eq!(s.done, 21);
    let all = collect(&events);
    for f in queued.iter().filter(|f| f.cancelled()) {
        let fin = finished_of(&all, f.id());
        assert_eq!(fin.len(), 1, "{:?}", f.id());
        assert_eq!(fin[0].outcome(), Some(TaskOutcome::Cancelled));
        assert!(!all
            .iter()
            .any(|e| e.task() == Some(f.id()) && matches!(e, Event::Started { .. })));
    }
}

/// For every task: Submitted, then Started, then Finished, in the subscriber's order, even
/// with many submitting threads and nested submits (the submitter and the worker emit from
/// different threads).
#[test]
fn per_task_order_with_concurrent_submitters() {
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let events = pool.events();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                for i in 0..300u32 {
                    let f = pool.submit(move || i).unwrap();
                    ids.lock().unwrap().push(f.id());
                    f.result_timeout(LIMIT).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    pool.shutdown(true, false);
    let all = collect(&events);
    assert_eq!(events.dropped(), 0);
    let mut pos: std::collections::HashMap<_, (usize, usize, usize)> = Default::default();
    for (i, e) in all.iter().enumerate() {
        let Some(t) = e.task() else { continue };
        let p = pos.entry(t).or_insert((usize::MAX, usize::MAX, usize::MAX));
        match e {
            Event::Submitted { .. } => p.0 = i,
            Event::Started { .. } => p.1 = i,
            Event::Finished { .. } => p.2 = i,
            _ => {}
        }
    }
    for id in ids.lock().unwrap().iter() {
        let (s, r, f) = pos[id];
        assert!(
            s < r && r < f,
            "{id:?}: submitted {s}, started {r}, finished {f}"
        );
    }
}

/// The bus promises "every event of an action that happens after `subscribe()` returned is
/// delivered". A worker decides whether to report a task's `Started` when it takes it (one
/// load of `is_active`), and asks again as the task ends: a task that was already running
/// when a dashboard subscribed has its `Finished` (it used to end without one).
#[test]
fn task_running_at_subscribe_has_its_finished() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let f = pool.submit(move || g.wait()).unwrap();
    let deadline = Instant::now() + LIMIT;
    while !f.running() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::yield_now();
    }
    let events = pool.events();
    gate.open();
    f.result_timeout(LIMIT).unwrap();
    pool.shutdown(true, false);
    let all = collect(&events);
    assert_eq!(
        finished_of(&all, f.id()).len(),
        1,
        "the task ended after subscribe() returned: {all:#?}"
    );
}

/// Percentiles at the edges, through the recorder every executor uses: none for no task;
/// for one task every percentile is that task's run time. They are the midpoint of their
/// histogram bucket, clamped to the exact min and max (it used to be the max only: one task
/// of 1000 ns reported a median of 991 ns and a max of 1000 ns).
#[test]
fn percentiles_of_a_single_task_are_its_run_time() {
    use cfutures_core::events::StatsRecorder;
    let rec = StatsRecorder::new();
    let none = rec.snapshot().run_times;
    assert_eq!(
        (none.count, none.p50, none.max, none.mean),
        (0, None, None, None)
    );
    rec.submitted();
    rec.started();
    rec.finished(
        None,
        TaskOutcome::Ok,
        true,
        Some(Duration::from_nanos(1000)),
    );
    let one = rec.snapshot().run_times;
    assert_eq!(one.count, 1);
    assert_eq!(one.max, Some(Duration::from_nanos(1000)));
    assert_eq!(
        (one.p50, one.p90, one.p99),
        (one.max, one.max, one.max),
        "one task: {one:?}"
    );
}

fn no_database() {
    panic!("no database")
}

/// A failing initializer breaks the pool: `Broken` first, then one `Finished(Broken)` per
/// queued task (no `Started`), `Shutdown` last; the counts agree with the futures.
#[test]
fn broken_by_initializer_is_told_and_counted() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(no_database)
        .quiet_panics(true)
        .build()
        .unwrap();
    let events = pool.events();
    let fs: Vec<_> = (0..5u32).map(|i| pool.submit(move || i).unwrap()).collect();
    for f in &fs {
        assert!(f.result_timeout(LIMIT).unwrap_err().is_broken());
    }
    pool.shutdown(true, false);
    let all = collect(&events);
    assert!(matches!(all.last(), Some(Event::Shutdown { .. })));
    let broken = all
        .iter()
        .position(|e| matches!(e, Event::Broken { .. }))
        .expect("a Broken event");
    for f in &fs {
        let fin: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, e)| e.task() == Some(f.id()) && e.outcome().is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(fin.len(), 1, "{all:#?}");
        assert!(fin[0] > broken);
        assert_eq!(all[fin[0]].outcome(), Some(TaskOutcome::Broken));
    }
    let s = pool.stats();
    assert_eq!(
        (s.submitted, s.failed, s.queued, s.running, s.done),
        (5, 5, 0, 0, 5),
        "{s:#?}"
    );
}
