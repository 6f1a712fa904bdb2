//! A run's events as a timeline SVG: each worker a lane, each task a bar (coloured by its
//! outcome), each worker death marked. Hand-written SVG, no dependency.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cfutures_core::events::{Event, TaskOutcome, WorkerId};
use cfutures_core::{FutureId, WorkerExit};

const LANE_H: f64 = 30.0;
const BAR_H: f64 = 20.0;
const LEFT: f64 = 170.0;
const TOP: f64 = 50.0;
const WIDTH: f64 = 1100.0;

/// One bar of the timeline.
#[derive(Clone, Debug)]
pub struct Bar {
    /// The task's number in `names` (or `None` if it had none).
    pub task: Option<usize>,
    /// The worker it ran on.
    pub worker: WorkerId,
    /// When it started and ended.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// How it ended (`Lost` for the attempt its worker died under).
    pub outcome: TaskOutcome,
}

/// A lane: one worker's life.
#[derive(Clone, Debug)]
pub struct Lane {
    /// The worker.
    pub worker: WorkerId,
    /// Its pid.
    pub pid: Option<u32>,
    /// When it started.
    pub start: Instant,
    /// When it died, and how.
    pub died: Option<(Instant, Option<WorkerExit>)>,
}

/// The lanes and bars of a run, from its events.
///
/// A bar ends at its `Finished` (or at the death of the worker it ran on), and starts its
/// run time before that end when the worker measured it, else at its `Started`.
pub fn layout(events: &[Event]) -> (Vec<Lane>, Vec<Bar>, HashMap<FutureId, usize>) {
    let mut lanes: Vec<Lane> = Vec::new();
    let mut bars = Vec::new();
    let mut names: HashMap<FutureId, usize> = HashMap::new();
    // The running attempt of each task: its worker and start.
    let mut running: HashMap<FutureId, (WorkerId, Instant)> = HashMap::new();
    for e in events {
        match e {
            Event::Submitted { task, .. } => {
                let n = names.len();
                names.entry(*task).or_insert(n);
            }
            Event::WorkerStarted {
                worker, pid, at, ..
            } => lanes.push(Lane {
                worker: *worker,
                pid: *pid,
                start: *at,
                died: None,
            }),
            Event::Started {
                task, worker, at, ..
            } => {
                running.insert(*task, (*worker, *at));
            }
            Event::WorkerDied {
                worker,
                exit,
                task,
                at,
                ..
            } => {
                if let Some(l) = lanes.iter_mut().find(|l| l.worker == *worker) {
                    l.died = Some((*at, *exit));
                }
                if let Some(t) = task {
                    if let Some((w, start)) = running.remove(t) {
                        bars.push(Bar {
                            task: names.get(t).copied(),
                            worker: w,
                            start,
                            end: *at,
                            outcome: TaskOutcome::Lost,
                        });
                    }
                }
            }
            Event::Finished {
                task,
                worker,
                outcome,
                run_time,
                at,
                ..
            } => {
                let Some(w) = worker else { continue };
                let started = running.remove(task).map(|(_, s)| s);
                if started.is_none() && run_time.is_none() {
                    // Drawn already (its worker died under it), or it never ran.
                    continue;
                }
                let start = match run_time {
                    Some(d) => at.checked_sub(*d).unwrap_or(*at),
                    None => started.unwrap_or(*at),
                };
                bars.push(Bar {
                    task: names.get(task).copied(),
                    worker: *w,
                    start,
                    end: *at,
                    outcome: *outcome,
                });
            }
            _ => {}
        }
    }
    (lanes, bars, names)
}

fn colour(o: TaskOutcome) -> &'static str {
    match o {
        TaskOutcome::Ok => "#4caf50",
        TaskOutcome::Err => "#ff9800",
        TaskOutcome::Panicked => "#9c27b0",
        TaskOutcome::Lost => "#e53935",
        TaskOutcome::Cancelled => "#9e9e9e",
        TaskOutcome::TimedOut => "#795548",
        TaskOutcome::Quarantined => "#b71c1c",
        _ => "#607d8b",
    }
}

/// A tick step of 1, 2 or 5 times a power of ten, for about 10 ticks over `span`.
fn tick_step(span: Duration) -> Duration {
    let target = span.as_secs_f64() / 10.0;
    let mut step = 1e-6;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if step * m >= target {
                return Duration::from_secs_f64(step * m);
            }
        }
        step *= 10.0;
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG of a run's events, titled `title`.
pub fn svg(events: &[Event], title: &str) -> String {
    let (lanes, bars, _) = layout(events);
    let t0 = events.first().map(|e| e.at()).unwrap_or_else(Instant::now);
    let t1 = events.iter().map(|e| e.at()).max().unwrap_or(t0);
    let span = (t1 - t0).max(Duration::from_millis(1));
    let plot = WIDTH - LEFT - 20.0;
    let x = |t: Instant| {
        LEFT + plot * (t.saturating_duration_since(t0).as_secs_f64() / span.as_secs_f64())
    };
    let row: HashMap<WorkerId, usize> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.worker, i))
        .collect();
    let height = TOP + LANE_H * lanes.len() as f64 + 70.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Time axis.
    let axis_y = TOP + LANE_H * lanes.len() as f64 + 8.0;
    let step = tick_step(span);
    let mut t = Duration::ZERO;
    while t <= span {
        let px = LEFT + plot * (t.as_secs_f64() / span.as_secs_f64());
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{axis_y}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="#555">{:.0} ms</text>"##,
            axis_y + 14.0,
            t.as_secs_f64() * 1e3
        );
        t += step;
    }
    // Lanes.
    for (i, l) in lanes.iter().enumerate() {
        let y = TOP + LANE_H * i as f64;
        let label = match l.pid {
            Some(p) => format!("worker #{} (pid {p})", l.worker),
            None => format!("worker #{}", l.worker),
        };
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + LANE_H / 2.0 + 4.0,
            escape(&label)
        );
        let end = l.died.map_or(t1, |(at, _)| at);
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="3,3"/>"##,
            x(l.start),
            y + LANE_H / 2.0,
            x(end),
            y + LANE_H / 2.0
        );
    }
    // Bars.
    for b in &bars {
        let Some(&i) = row.get(&b.worker) else {
            continue;
        };
        let y = TOP + LANE_H * i as f64 + (LANE_H - BAR_H) / 2.0;
        let x0 = x(b.start);
        let w = (x(b.end) - x0).max(1.0);
        let name = b.task.map_or("?".to_owned(), |n| format!("task {n}"));
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{}" stroke="#333" stroke-width="0.5"><title>{} on worker #{}: {} ({:.1} ms)</title></rect>"##,
            colour(b.outcome),
            escape(&name),
            b.worker,
            b.outcome,
            (b.end - b.start).as_secs_f64() * 1e3
        );
        if w > 34.0 {
            if let Some(n) = b.task {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="white">#{n}</text>"#,
                    x0 + 3.0,
                    y + BAR_H / 2.0 + 4.0
                );
            }
        }
    }
    // Deaths.
    for (i, l) in lanes.iter().enumerate() {
        let Some((at, exit)) = l.died else { continue };
        let (px, y) = (x(at), TOP + LANE_H * i as f64);
        let _ = writeln!(
            s,
            r##"<path d="M{:.1},{:.1} l10,10 m0,-10 l-10,10" stroke="#b71c1c" stroke-width="2.5"/><text x="{:.1}" y="{:.1}" fill="#b71c1c" font-weight="bold">died: {}</text>"##,
            px - 5.0,
            y + 10.0,
            px + 8.0,
            y + 12.0,
            escape(&exit.map_or("?".to_owned(), |e| e.to_string()))
        );
    }
    // Legend.
    let ly = axis_y + 36.0;
    let mut lx = LEFT;
    for o in [
        TaskOutcome::Ok,
        TaskOutcome::Err,
        TaskOutcome::Panicked,
        TaskOutcome::Lost,
        TaskOutcome::Cancelled,
        TaskOutcome::TimedOut,
    ] {
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 10.0,
            colour(o),
            lx + 18.0,
            o
        );
        lx += 110.0;
    }
    s.push_str("</svg>\n");
    s
}
