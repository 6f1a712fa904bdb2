//! The tour's scenarios run to the end and say what they should. (The CPU-heavy ones, 3 and
//! 4, run in the tour in release mode; here they would take minutes unoptimized.)

use cfutures_examples::report::Out;
use cfutures_examples::{custom, scenarios};

fn run(f: fn(&mut Out) -> Result<(), cfutures_examples::report::BoxError>) -> Vec<String> {
    let mut out = Out::quiet();
    if let Err(e) = f(&mut out) {
        panic!("scenario failed: {e}\n{}", out.lines().join("\n"));
    }
    out.lines().to_vec()
}

fn has(lines: &[String], text: &str) {
    assert!(
        lines.iter().any(|l| l.contains(text)),
        "no line contains {text:?}:\n{}",
        lines.join("\n")
    );
}

#[test]
fn fetch_keeps_every_result_but_the_failing_and_the_slow_page() {
    let lines = run(scenarios::fetch::run);
    has(&lines, "map: page 7 failed: the server answered 503");
    has(
        &lines,
        "map: page 13 failed: no answer within the 800 ms timeout",
    );
    has(&lines, "map: 40 of 42 pages fetched");
    has(&lines, "as_completed: 40 pages fetched");
}

#[test]
fn download_writes_the_same_bytes_both_ways() {
    let lines = run(scenarios::download::run);
    has(&lines, "(42 files); both runs wrote the same");
    has(&lines, "bytes: true");
}

#[test]
fn future_status_goes_through_every_state() {
    let lines = run(scenarios::status::run);
    has(&lines, "first (running): state Running");
    has(&lines, "second.cancel() → true");
    has(&lines, "second: state Cancelled");
    has(&lines, "first.result() → 42");
    has(&lines, "callback: the future finished with Ok(42)");
    has(&lines, "second.result() → Err(Cancelled)");
    has(
        &lines,
        "result_timeout(20 ms) on an unfinished future → Err(Timeout)",
    );
}

#[test]
fn wait_and_map_follow_python() {
    let lines = run(scenarios::waiting::run);
    has(&lines, "wait(AllCompleted) returned");
    has(&lines, "4 done, 0 not done");
    // The 600 ms item cannot beat the 300 ms timeout; the first 50 ms one does.
    has(
        &lines,
        "map(sleep, [50, 100, 600, 50], timeout 300 ms) → [50 ms ok, ",
    );
    has(&lines, "error: timed out waiting for the future] after");
    has(&lines, "[10, 20, Err(");
    has(&lines, "item 3 is bad), 40, 50]");
}

#[test]
fn deadlocks_become_errors_or_do_not_happen() {
    let lines = run(scenarios::deadlocks::run);
    has(&lines, "failed at once: task failed: deadlock: future #");
    has(&lines, "(task 'wait_on_a')");
    has(&lines, "saw the other fail and returned");
    has(&lines, "the pool is free again");
    has(&lines, "waits → 25");
}

#[test]
fn faults_fail_only_their_own_future() {
    let lines = run(scenarios::faults::run);
    has(&lines, "signal 9");
    has(&lines, "5 of 5 other tasks submitted with it: ok");
    has(&lines, "exceeded its time limit");
    has(
        &lines,
        "even_only(7): failed: task failed: task panicked: 7 is odd",
    );
    has(&lines, "even_only(8): ok: 4");
    has(&lines, "add_one(41): ok: 42");
}

#[test]
fn poison_tasks_are_retried_then_quarantined() {
    let lines = run(scenarios::poison::run);
    has(
        &lines,
        "flaky(): its first worker died (SIGSEGV); run again → \"done\"",
    );
    has(
        &lines,
        "parse_record(13): quarantined after 3 worker deaths (pid ",
    );
    has(&lines, "signal 11 (SIGSEGV)");
    has(
        &lines,
        "its last words: \"parsing record 13: calling the native parser\"",
    );
    has(
        &lines,
        "map(double_but_13, 0..20, chunksize 5): 19 of 20 ok; item 13: quarantined",
    );
    has(
        &lines,
        "double_but_13(21) → 42 (the pool is not broken: true)",
    );
}

#[test]
fn progress_reaches_every_task() {
    let lines = run(scenarios::progress::run);
    has(&lines, "progress 400/400 (100%)");
}

#[test]
fn the_custom_executor_works_with_every_combinator() {
    let lines = run(custom::run);
    has(&lines, "[1, 4, 9, 16, 25]");
    has(&lines, "map(|x| x * 2, 1..=5) → [2, 4, 6, 8, 10]");
    has(&lines, "wait(AllCompleted) → 5 done, 0 not done");
    has(&lines, "as_completed → 5 futures");
}

#[test]
fn async_offload_awaits_the_process_pool_from_tokio() {
    let lines = run(scenarios::offload::run);
    has(&lines, "primes, inline and offloaded alike");
    has(&lines, "while it was awaited on the process pool");
    has(&lines, "a task that panics in its worker → Err: task panicked at examples/src/scenarios/offload.rs:");
    has(&lines, ": 7 is odd");
}

#[test]
fn big_data_gets_the_same_digests_every_way() {
    // Buffers of 300 kB (above the shared-memory threshold; the tour uses 16 MB).
    let mut out = Out::quiet();
    if let Err(e) = scenarios::big_data::run_sized(&mut out, 300_000) {
        panic!("scenario failed: {e}\n{}", out.lines().join("\n"));
    }
    let lines = out.lines();
    has(lines, "8 × 300 kB sha256, through the pipes");
    has(lines, "8 × 300 kB sha256, through shared memory");
    has(lines, "8 × 300 kB sha256, views of one SharedBytes");
    has(lines, "sending the 2 MB alone");
}

#[test]
fn watch_draws_the_workers_from_the_events() {
    let lines = run(scenarios::watch::run);
    has(&lines, "snapshot at ");
    has(&lines, "final table (from the events):");
    has(&lines, "✝ died (signal 6");
    has(&lines, "none lost (0 dropped); shut down: true");
    has(
        &lines,
        "stats: 40 submitted, 38 succeeded, 2 failed, 1 retried, 1 worker deaths",
    );
}

#[test]
fn timeline_svg_has_a_lane_per_worker_a_bar_per_task_and_the_deaths() {
    use cfutures_core::events::{Event, TaskOutcome};
    use cfutures_core::WorkerExit;
    use std::time::Duration;
    let (_p1, a) = cfutures_core::pending::<()>();
    let (_p2, b) = cfutures_core::pending::<()>();
    let events = vec![
        Event::worker_started(1, Some(100)),
        Event::worker_started(2, Some(200)),
        Event::submitted(a.id(), None),
        Event::submitted(b.id(), None),
        Event::started(a.id(), 1, Some(100)),
        Event::started(b.id(), 2, Some(200)),
        Event::worker_died(2, Some(200), Some(WorkerExit::Signal(6)), Some(b.id())),
        Event::finished(
            a.id(),
            Some(1),
            TaskOutcome::Ok,
            Some(Duration::from_nanos(1)),
        ),
        Event::finished(b.id(), Some(2), TaskOutcome::Lost, None),
        Event::shutdown(),
    ];
    let (lanes, bars, _) = cfutures_examples::timeline::layout(&events);
    assert_eq!(lanes.len(), 2);
    let outcomes: Vec<TaskOutcome> = bars.iter().map(|b| b.outcome).collect();
    assert_eq!(outcomes, [TaskOutcome::Lost, TaskOutcome::Ok]);
    let svg = cfutures_examples::timeline::svg(&events, "test <run>");
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("test &lt;run&gt;"));
    assert!(svg.contains("worker #2 (pid 200)"));
    assert!(svg.contains("died: signal 6 (SIGABRT)"));
    assert!(svg.contains("task 0 on worker #1: ok"));
    assert!(svg.contains("task 1 on worker #2: lost"));
}
