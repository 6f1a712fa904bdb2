//! Scenario 14 — watching a pool: `pool.events()` drives a live per-worker table of a
//! process-pool run (which task each worker runs, what each finished, which died and why),
//! and `pool.stats()` gives the counts and run-time percentiles at the end. On a terminal the
//! table redraws in place; elsewhere (a pipe, a CI log) a few snapshots are printed. Python:
//! nothing of the kind — you would wrap every function yourself, and a dead worker takes the
//! whole pool down before you can look.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cfutures_core::events::{Event, Stats, WorkerId};
use cfutures_core::{FutureId, WorkerExit};
use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, WorkerOutput};

use crate::report::{BoxError, Out, Secs};

const BOUND: Duration = Duration::from_secs(30);

/// Sleeps `ms` milliseconds (a task of some length, without taking a CPU).
pub fn work(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics (a bug in one task: the worker survives).
pub fn buggy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("index out of bounds")
}

/// Kills its worker with `SIGABRT` the first time it runs (marker absent), then works.
pub fn flaky(marker: PathBuf) -> u64 {
    if std::fs::create_dir(&marker).is_ok() {
        std::process::abort();
    }
    work(15)
}

/// One worker as the table shows it.
#[derive(Clone, Debug, Default)]
pub struct Lane {
    /// Its process id.
    pub pid: u32,
    /// The task it runs now (its number in the run).
    pub running: Option<usize>,
    /// Tasks it finished, and of those, failed.
    pub done: u64,
    /// Of `done`, the failed ones.
    pub failed: u64,
    /// How it died, if it did.
    pub died: Option<WorkerExit>,
    /// The last run time it reported.
    pub last: Option<Duration>,
}

/// What the events said so far: the table's model.
#[derive(Debug, Default)]
pub struct Board {
    /// Each worker, by id.
    pub lanes: BTreeMap<WorkerId, Lane>,
    /// Task numbers, by future id.
    pub names: HashMap<FutureId, usize>,
    /// Events seen, retries and quarantines seen, and whether the pool shut down.
    pub seen: u64,
    /// Retries seen.
    pub retried: u64,
    /// Quarantines seen.
    pub quarantined: u64,
    /// `Shutdown` came.
    pub shut_down: bool,
}

impl Board {
    /// Takes one event into account.
    pub fn apply(&mut self, e: &Event) {
        self.seen += 1;
        match e {
            Event::WorkerStarted { worker, pid, .. } => {
                self.lanes.entry(*worker).or_default().pid = pid.unwrap_or(0);
            }
            Event::Started { task, worker, .. } => {
                self.lanes.entry(*worker).or_default().running = self.names.get(task).copied();
            }
            Event::Finished {
                task,
                worker: Some(w),
                outcome,
                run_time,
                ..
            } => {
                let lane = self.lanes.entry(*w).or_default();
                if lane.running == self.names.get(task).copied() {
                    lane.running = None;
                }
                lane.done += 1;
                lane.failed += u64::from(!outcome.is_ok());
                lane.last = run_time.or(lane.last);
            }
            Event::WorkerDied { worker, exit, .. } => {
                let lane = self.lanes.entry(*worker).or_default();
                lane.died = Some(exit.unwrap_or(WorkerExit::Unknown));
                lane.running = None;
            }
            Event::Retried { .. } => self.retried += 1,
            Event::Quarantined { .. } => self.quarantined += 1,
            Event::Shutdown { .. } => self.shut_down = true,
            _ => {}
        }
    }

    /// The table, one line per worker (and a header).
    pub fn table(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{:<7} {:>7}  {:<28} {:>5} {:>6}  {:>9}",
            "worker", "pid", "now", "done", "failed", "last run"
        )];
        for (id, l) in &self.lanes {
            let now = match (&l.died, l.running) {
                (Some(exit), _) => format!("✝ died ({exit})"),
                (None, Some(t)) => format!("▶ task {t}"),
                (None, None) => "· idle".to_owned(),
            };
            let mut line = String::new();
            let _ = write!(
                line,
                "{:<7} {:>7}  {:<28} {:>5} {:>6}  {:>9}",
                format!("#{id}"),
                l.pid,
                now,
                l.done,
                l.failed,
                l.last.map_or("-".to_owned(), |d| Secs(d).to_string())
            );
            lines.push(line);
        }
        lines
    }
}

/// Runs the scenario.
///
/// # Errors
///
/// If the pool cannot start or a future misbehaves.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(3)
        .quiet_panics(true)
        .worker_output(WorkerOutput::Null)
        .retry(RetryPolicy::new().backoff(Duration::from_millis(5), Duration::from_millis(20)))
        .build()?;
    let events = pool.events();
    let mut board = Board::default();

    // 40 tasks of 5–40 ms; two panic; one kills its worker once (then runs again, fine).
    let marker = std::env::temp_dir().join(format!("cfutures-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir(&marker);
    let mut futures = Vec::new();
    for i in 0..40u64 {
        let ms = 5 + (i * 17) % 36;
        let f = match i {
            11 | 29 => pool.submit_fn(buggy, ms)?,
            20 => pool.submit_fn(flaky, marker.clone())?,
            _ => pool.submit_fn(work, ms)?,
        };
        board.names.insert(f.id(), i as usize);
        futures.push(f);
    }

    let live = out.is_terminal();
    let started = Instant::now();
    let mut drawn = 0usize;
    let mut next_draw = Instant::now();
    let mut snapshots = 0;
    let total = futures.len();
    while futures.iter().any(|f| !f.done()) {
        if started.elapsed() > BOUND {
            return Err("the run did not end in time".into());
        }
        if let Ok(e) = events.recv_timeout(Duration::from_millis(20)) {
            board.apply(&e);
            // Take everything already there before drawing.
            for e in events.drain() {
                board.apply(&e);
            }
        }
        let done = futures.iter().filter(|f| f.done()).count();
        if live && Instant::now() >= next_draw {
            drawn = redraw(&board, drawn, &format!("{done}/{total} done"));
            next_draw = Instant::now() + Duration::from_millis(80);
        } else if !live && done * 3 >= total * (snapshots + 1) && snapshots < 2 {
            // Not a terminal: a snapshot at a third and two thirds of the run.
            snapshots += 1;
            out.say(format!("snapshot at {done}/{total} tasks done:"));
            for line in board.table() {
                out.say(format!("  {line}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&marker);
    let stats = pool.stats();
    // Shut down (the stream ends with `Shutdown`), and take the rest of the events.
    pool.shutdown(true, false);
    let deadline = Instant::now() + BOUND;
    while !board.shut_down {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) => board.apply(&e),
            Err(_) => break,
        }
    }
    if live && drawn > 0 {
        // Clear the live table: the final one follows.
        print!("\x1b[{drawn}A\x1b[J");
        let _ = std::io::stdout().flush();
    }
    out.say("final table (from the events):");
    for line in board.table() {
        out.say(format!("  {line}"));
    }
    out.say(format!(
        "{} events, none lost ({} dropped); shut down: {}",
        board.seen,
        events.dropped(),
        board.shut_down
    ));
    out.say(summary(&stats));
    Ok(())
}

/// The counts of `pool.stats()`, in one line.
pub fn summary(s: &Stats) -> String {
    let p = |d: Option<Duration>| d.map_or("-".to_owned(), |d| Secs(d).to_string());
    format!(
        "stats: {} submitted, {} succeeded, {} failed, {} retried, {} worker deaths; run time \
         p50 {}, p90 {}, p99 {}, max {}",
        s.submitted,
        s.succeeded,
        s.failed,
        s.retried,
        s.worker_deaths,
        p(s.run_times.p50),
        p(s.run_times.p90),
        p(s.run_times.p99),
        p(s.run_times.max)
    )
}

/// Draws the table over the one drawn before (`drawn` lines), with ANSI cursor moves.
fn redraw(board: &Board, drawn: usize, status: &str) -> usize {
    let mut s = String::new();
    if drawn > 0 {
        let _ = write!(s, "\x1b[{drawn}A");
    }
    let mut lines = board.table();
    lines.push(format!(
        "{status}; {} retried, {} quarantined",
        board.retried, board.quarantined
    ));
    for line in &lines {
        let _ = writeln!(s, "\x1b[2K   {line}");
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(s.as_bytes());
    let _ = stdout.flush();
    lines.len()
}
