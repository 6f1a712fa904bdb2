//! The tour: every scenario as a section, run and timed, with a summary table.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::report::{text_table, BoxError, Out, Row, Secs, Speedup};

/// What a section runs.
pub type Run = fn(&mut Out) -> Result<(), BoxError>;

/// One scenario of the tour.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// Its number (1–14, as in the README).
    pub number: u32,
    /// What it shows.
    pub title: &'static str,
    /// The example that runs it alone: `cargo run --example NAME`.
    pub example: &'static str,
    /// The scenario, or `None` while the crate it needs is not ready ("coming soon").
    pub run: Option<Run>,
}

/// Every section, in order.
pub fn sections() -> Vec<Section> {
    let s = |number, title, example, run| Section {
        number,
        title,
        example,
        run,
    };
    vec![
        s(
            1,
            "I/O-bound: fetch 42 URLs (map, then submit + as_completed)",
            "fetch_urls",
            Some(crate::scenarios::fetch::run as Run),
        ),
        s(
            2,
            "Download and save: sequential vs thread pool",
            "download",
            Some(crate::scenarios::download::run),
        ),
        s(
            3,
            "CPU-bound hashing: sequential vs threads vs processes",
            "hashing",
            Some(crate::scenarios::hashing::run),
        ),
        s(
            4,
            "Pitfall: too trivial to parallelise (and chunksize)",
            "too_trivial",
            Some(crate::scenarios::trivial::run),
        ),
        s(
            5,
            "Future status: running, cancelled, done, result, callbacks",
            "future_status",
            Some(crate::scenarios::status::run),
        ),
        s(
            6,
            "wait with each ReturnWhen, and map with a timeout",
            "wait_and_map",
            Some(crate::scenarios::waiting::run),
        ),
        s(
            7,
            "The two deadlocks every tutorial warns about",
            "deadlocks",
            Some(crate::scenarios::deadlocks::run),
        ),
        s(
            8,
            "Faults: a killed worker, a time limit, a panic",
            "faults",
            Some(crate::scenarios::faults::run),
        ),
        s(
            9,
            "A progress bar over as_completed and map",
            "progress",
            Some(crate::scenarios::progress::run),
        ),
        s(
            10,
            "A custom executor in ~35 lines",
            "custom_executor",
            Some(crate::custom::run),
        ),
        s(
            11,
            "async: a tokio program awaits CPU work offloaded to the process pool",
            "async_offload",
            Some(crate::scenarios::offload::run),
        ),
        s(
            12,
            "Big data: hashing 8 × 16 MB buffers in processes (pipes, shared memory, SharedBytes)",
            "big_data",
            Some(crate::scenarios::big_data::run),
        ),
        s(
            13,
            "Poison tasks: retried, quarantined, with their last words",
            "poison",
            Some(crate::scenarios::poison::run),
        ),
        s(
            14,
            "Watching a pool: a live per-worker table from pool.events(), and pool.stats()",
            "watch",
            Some(crate::scenarios::watch::run),
        ),
    ]
}

/// How a section ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// It ran to the end.
    Ok,
    /// Its crate is not ready yet.
    ComingSoon,
    /// It returned an error or panicked.
    Failed(String),
}

/// What a section did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The section.
    pub section: Section,
    /// How it ended.
    pub status: Status,
    /// How long it took.
    pub elapsed: Duration,
    /// Its measurements.
    pub rows: Vec<Row>,
}

/// How long a section may take before the tour gives up on it (reports it as failed and
/// goes on): a hang is a bug to report, not a reason to hang CI.
pub const SECTION_LIMIT: Duration = Duration::from_secs(60);

/// Runs one section on a thread of its own, printing its header and what it does; a panic,
/// an error, or running past [`SECTION_LIMIT`] becomes [`Status::Failed`].
pub fn run_section(section: &Section, out: &mut Out) -> Outcome {
    if !out.is_quiet() {
        println!("\n── {}. {} ──", section.number, section.title);
    }
    let start = Instant::now();
    let status = match section.run {
        None => {
            out.say("coming soon");
            Status::ComingSoon
        }
        Some(run) => {
            let (done, result) = mpsc::channel();
            let quiet = out.is_quiet();
            let mut own = std::mem::replace(out, Out::with_quiet(quiet));
            let spawned = std::thread::Builder::new()
                .name(format!("section-{}", section.number))
                .spawn(move || {
                    let r = panic::catch_unwind(AssertUnwindSafe(|| run(&mut own)));
                    let _ = done.send((r, own));
                });
            match spawned {
                Err(e) => Status::Failed(format!("cannot start a thread: {e}")),
                Ok(_) => match result.recv_timeout(SECTION_LIMIT) {
                    Ok((r, own)) => {
                        *out = own;
                        match r {
                            Ok(Ok(())) => Status::Ok,
                            Ok(Err(e)) => Status::Failed(e.to_string()),
                            Err(p) => Status::Failed(format!(
                                "panicked: {}",
                                cfutures_core::panic_message(&*p)
                            )),
                        }
                    }
                    Err(_) => Status::Failed(format!(
                        "still running after {}: stuck",
                        Secs(SECTION_LIMIT)
                    )),
                },
            }
        }
    };
    let elapsed = start.elapsed();
    if let Status::Failed(why) = &status {
        out.say(format!("FAILED: {why}"));
    }
    out.say(format!("({} in {})", section.example, Secs(elapsed)));
    Outcome {
        section: *section,
        status,
        elapsed,
        rows: out.take_rows(),
    }
}

/// The summary: one line per section, and one per measurement.
pub fn summary(outcomes: &[Outcome]) -> String {
    let mut rows = Vec::new();
    for o in outcomes {
        let status = match &o.status {
            Status::Ok => "ok".to_owned(),
            Status::ComingSoon => "coming soon".to_owned(),
            Status::Failed(_) => "FAILED".to_owned(),
        };
        rows.push(vec![
            format!("{}. {}", o.section.number, o.section.example),
            status,
            String::new(),
            String::new(),
            Secs(o.elapsed).to_string(),
            String::new(),
        ]);
        for r in &o.rows {
            rows.push(vec![
                format!("     {}", r.what),
                String::new(),
                r.sequential
                    .map(|s| Secs(s).to_string())
                    .unwrap_or_default(),
                Secs(r.pooled).to_string(),
                String::new(),
                r.speedup()
                    .map(|x| Speedup(x).to_string())
                    .unwrap_or_default(),
            ]);
        }
    }
    text_table(
        &[
            "section / measurement",
            "status",
            "sequential",
            "pool",
            "section time",
            "speedup",
        ],
        &rows,
    )
}
