//! What the event and statistics hooks cost a task when nobody subscribes: the calls an
//! executor makes for one task that runs (submitted, started, its worker's count, finished
//! with a run time; three `is_active` checks), in a loop on one thread, against the same loop
//! without them. `cargo bench -p cfutures-core --bench events`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cfutures_core::events::{Event, EventBus, StatsRecorder, TaskOutcome};

fn main() {
    let n: u64 = if std::env::args().any(|a| a == "--bench") {
        20_000_000
    } else {
        100_000
    };
    let bus = EventBus::new();
    let stats = StatsRecorder::new();
    let w = stats.worker_started(1, Some(1));
    let (_p, f) = cfutures_core::pending::<()>();
    let id = f.id();
    let mut best = [Duration::MAX; 2];
    for _ in 0..5 {
        let t0 = Instant::now();
        for i in 0..n {
            black_box(i);
        }
        best[0] = best[0].min(t0.elapsed());
        let t0 = Instant::now();
        for i in 0..n {
            stats.submitted();
            bus.emit(|| Event::submitted(id, None));
            stats.started();
            bus.emit(|| Event::started(id, 1, None));
            w.finished(TaskOutcome::Ok);
            stats.finished(
                None,
                TaskOutcome::Ok,
                true,
                Some(Duration::from_nanos(black_box(i) % 4096 + 500)),
            );
            bus.emit(|| Event::finished(id, Some(1), TaskOutcome::Ok, None));
        }
        best[1] = best[1].min(t0.elapsed());
    }
    let per = |d: Duration| d.as_secs_f64() * 1e9 / n as f64;
    println!(
        "events hooks, no subscriber: {:.1} ns per task (empty loop {:.1} ns); {} tasks counted",
        per(best[1]) - per(best[0]),
        per(best[0]),
        stats.snapshot().succeeded
    );
}
