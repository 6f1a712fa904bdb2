//! `compare`: the performance workloads W1–W8 of the pool issues, on cfutures and on
//! Python's `concurrent.futures`, in one run.
//!
//! The Python side is `examples/python/compare.py` (embedded in the binary, written to a
//! temporary file and run with `python3`). Both sides measure the same thing the same way:
//! same sizes, same worker counts, pools started before the clock starts unless creating the
//! pool is the workload.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use cfutures_combinators::{as_completed, ExecutorExt};
use cfutures_core::Future;
use cfutures_process_pool::ProcessPoolExecutor;
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{markdown_table, text_table};
use crate::work;

/// The Python script, embedded.
pub const PYTHON_SCRIPT: &str = include_str!("../python/compare.py");

/// Settings shared by both sides.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// MiB hashed by each of W6's 8 tasks. The pool issue's task takes ~0.25 s; the default,
    /// 32 MiB, takes ~0.1 s on the 2-vCPU machine, to keep compare's runtime short.
    pub w6_mib: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { w6_mib: 32 }
    }
}

/// One workload.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// `W1` … `W8`.
    pub id: &'static str,
    /// What it does.
    pub what: &'static str,
    /// The unit of its figure.
    pub unit: &'static str,
    /// True when a bigger figure is better (a speedup); else it is a time.
    pub higher_is_better: bool,
    /// The cfutures side, or `None` while its crate is not ready.
    pub rust: Option<fn(&Config) -> f64>,
}

/// Every workload, in order.
pub fn workloads() -> Vec<Workload> {
    let w = |id, what, unit, higher_is_better, rust| Workload {
        id,
        what,
        unit,
        higher_is_better,
        rust,
    };
    vec![
        w(
            "W1",
            "submit 100,000 no-op tasks to 2 threads, collect all",
            "µs/task",
            false,
            Some(w1 as Run),
        ),
        w(
            "W2",
            "one task submitted and waited for (median of 10,000)",
            "µs",
            false,
            Some(w2),
        ),
        w(
            "W3",
            "process-pool map of x*2 over 1,000,000 items, chunksize 1000",
            "ms",
            false,
            Some(w3),
        ),
        w(
            "W4",
            "as_completed over 100,000 finished futures",
            "ms",
            false,
            Some(w4),
        ),
        w(
            "W5",
            "process pool, 10,000 tiny tasks (x + 1) on 2 workers",
            "µs/task",
            false,
            Some(w5),
        ),
        w(
            "W6",
            "8 sha256 tasks on 2 threads: speedup over sequential",
            "×",
            true,
            Some(w6),
        ),
        w(
            "W7",
            "42 tasks sleeping 100 ms on 20 threads (ideal 300 ms)",
            "ms",
            false,
            Some(w7),
        ),
        w(
            "W8",
            "create a process pool of 2, run one task, shut down",
            "ms",
            false,
            Some(w8),
        ),
    ]
}

type Run = fn(&Config) -> f64;

/// A no-op task.
pub fn noop() {}

/// `x * 2` (W3).
pub fn double(x: u64) -> u64 {
    x * 2
}

/// `x + 1` (W5, W8).
pub fn inc(x: u64) -> u64 {
    x + 1
}

fn threads(n: usize) -> ThreadPoolExecutor {
    ThreadPoolExecutor::new(n).expect("a thread pool")
}

fn processes(n: usize) -> ProcessPoolExecutor {
    let pool = ProcessPoolExecutor::new(n).expect("a process pool");
    // Start the workers before the clock starts, as the Python side does.
    pool.submit_fn(inc, 0)
        .expect("submit")
        .result()
        .expect("a worker");
    pool
}

/// W1: submit 100,000 no-op tasks to 2 threads and collect every result; µs per task.
pub fn w1(_: &Config) -> f64 {
    const N: usize = 100_000;
    let pool = threads(2);
    pool.submit(noop).expect("submit").result().expect("ok");
    let start = Instant::now();
    let futures: Vec<_> = (0..N).map(|_| pool.submit(noop).expect("submit")).collect();
    for f in &futures {
        f.result().expect("ok");
    }
    start.elapsed().as_secs_f64() / N as f64 * 1e6
}

/// W2: one task submitted and waited for, 10,000 times; the median, in µs.
pub fn w2(_: &Config) -> f64 {
    let pool = threads(2);
    pool.submit(noop).expect("submit").result().expect("ok");
    let mut samples: Vec<f64> = (0..10_000)
        .map(|_| {
            let start = Instant::now();
            pool.submit(noop).expect("submit").result().expect("ok");
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(&mut samples)
}

/// W3: process-pool `map` of `x * 2` over 1,000,000 items with chunksize 1000; ms.
pub fn w3(_: &Config) -> f64 {
    let pool = processes(2);
    let start = Instant::now();
    let out: Vec<u64> = pool
        .map_builder()
        .chunksize(1000)
        .map(double, 0..1_000_000u64)
        .expect("map")
        .collect::<Result<_, _>>()
        .expect("every item");
    let t = start.elapsed();
    assert_eq!(out[999_999], 1_999_998);
    t.as_secs_f64() * 1e3
}

/// W4: `as_completed` over 100,000 already-finished futures; ms.
pub fn w4(_: &Config) -> f64 {
    let futures: Vec<Future<u64>> = (0..100_000).map(Future::ready).collect();
    let start = Instant::now();
    let n = as_completed(futures, None).count();
    let t = start.elapsed();
    assert_eq!(n, 100_000);
    t.as_secs_f64() * 1e3
}

/// W5: 10,000 tiny tasks (`x + 1`) on a process pool of 2; µs per task.
pub fn w5(_: &Config) -> f64 {
    const N: u64 = 10_000;
    let pool = processes(2);
    let start = Instant::now();
    let futures: Vec<_> = (0..N)
        .map(|i| pool.submit_fn(inc, i).expect("submit"))
        .collect();
    let total: u64 = futures.iter().map(|f| *f.result().expect("ok")).sum();
    let t = start.elapsed();
    assert_eq!(total, N * (N + 1) / 2);
    t.as_secs_f64() / N as f64 * 1e6
}

/// W6: 8 CPU-bound sha256 tasks on 2 threads vs sequentially; the speedup. Each side is
/// timed three times, alternately, and the best of each is kept (the machine is shared).
pub fn w6(config: &Config) -> f64 {
    let mib = config.w6_mib;
    let pool = threads(2);
    pool.submit(noop).expect("submit").result().expect("ok");
    let (mut seq, mut par) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let start = Instant::now();
        let sequential: Vec<String> = (0..8).map(|_| work::sha256_mib(mib)).collect();
        seq = seq.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let pooled: Vec<String> = pool
            .map(work::sha256_mib, vec![mib; 8])
            .expect("map")
            .collect::<Result<_, _>>()
            .expect("every task");
        par = par.min(start.elapsed().as_secs_f64());
        assert_eq!(sequential, pooled);
    }
    seq / par
}

/// W7: 42 tasks sleeping 100 ms on 20 threads; ms (ideal: 300).
pub fn w7(_: &Config) -> f64 {
    let pool = threads(20);
    let start = Instant::now();
    let futures: Vec<_> = (0..42)
        .map(|_| {
            pool.submit(|| std::thread::sleep(Duration::from_millis(100)))
                .expect("submit")
        })
        .collect();
    for f in &futures {
        f.result().expect("ok");
    }
    start.elapsed().as_secs_f64() * 1e3
}

/// W8: create a process pool of 2, run one task, shut down; the median of 5, in ms.
pub fn w8(_: &Config) -> f64 {
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let pool = ProcessPoolExecutor::new(2).expect("a process pool");
            pool.submit_fn(inc, 1)
                .expect("submit")
                .result()
                .expect("ok");
            pool.shutdown(true, false);
            drop(pool);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&mut samples)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What the Python side measured.
#[derive(Clone, Debug, Default)]
pub struct PythonResults {
    /// `python3 --version`, as the script reports it.
    pub version: String,
    /// Figures by workload id.
    pub figures: HashMap<String, f64>,
}

/// Runs the Python side for `ids`, calling `progress` with each figure as it arrives.
///
/// # Errors
///
/// If `python3` cannot be started, or the script fails.
pub fn run_python(
    ids: &[&str],
    config: &Config,
    mut progress: impl FnMut(&str, f64),
) -> Result<PythonResults, String> {
    let dir = std::env::temp_dir().join(format!("cfutures-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = dir.join("compare.py");
    std::fs::write(&script, PYTHON_SCRIPT).map_err(|e| e.to_string())?;
    let result = (|| {
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--only")
            .arg(ids.join(","))
            .arg("--w6-mib")
            .arg(config.w6_mib.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let mut out = PythonResults::default();
        let stdout = child.stdout.take().expect("piped stdout");
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| e.to_string())?;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["VERSION", v] => out.version = (*v).to_owned(),
                ["RESULT", id, value, _unit] => {
                    let v: f64 = value.parse().map_err(|_| format!("bad figure: {line}"))?;
                    progress(id, v);
                    out.figures.insert((*id).to_owned(), v);
                }
                _ => {}
            }
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("python3 compare.py failed: {status}"));
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One row of the comparison.
#[derive(Clone, Debug)]
pub struct Line {
    /// The workload.
    pub workload: Workload,
    /// The cfutures figure.
    pub rust: Option<f64>,
    /// The Python figure.
    pub python: Option<f64>,
}

impl Line {
    /// How many times better cfutures is (above 1: cfutures is better): Python ÷ cfutures
    /// for times, cfutures ÷ Python for speedups.
    pub fn advantage(&self) -> Option<f64> {
        let (r, p) = (self.rust?, self.python?);
        if r <= 0.0 || p <= 0.0 {
            return None;
        }
        Some(if self.workload.higher_is_better {
            r / p
        } else {
            p / r
        })
    }
}

/// A figure with its unit and a sensible number of digits.
pub fn figure(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0} {unit}"),
        Some(v) if v >= 10.0 => format!("{v:.1} {unit}"),
        Some(v) => format!("{v:.2} {unit}"),
    }
}

fn advantage_text(a: Option<f64>) -> String {
    match a {
        None => "—".to_owned(),
        Some(a) if a >= 10.0 => format!("{a:.0}×"),
        Some(a) => format!("{a:.2}×"),
    }
}

fn rows(lines: &[Line]) -> Vec<Vec<String>> {
    lines
        .iter()
        .map(|l| {
            vec![
                format!("{} {}", l.workload.id, l.workload.what),
                figure(l.rust, l.workload.unit),
                figure(l.python, l.workload.unit),
                advantage_text(l.advantage()),
            ]
        })
        .collect()
}

const HEADER: [&str; 4] = ["workload", "cfutures", "Python", "cfutures advantage"];

/// The comparison as a text table.
pub fn text(lines: &[Line]) -> String {
    text_table(&HEADER, &rows(lines))
}

/// The comparison as a Markdown table.
pub fn markdown(lines: &[Line]) -> String {
    markdown_table(&HEADER, &rows(lines))
}

/// The comparison as an SVG bar chart: per workload, a bar for each side, scaled to the
/// larger of the two, labelled with its figure.
pub fn svg(lines: &[Line], title: &str, footnote: &str) -> String {
    let (w, label_w, bar_w, row_h) = (1000.0, 430.0, 420.0, 46.0);
    let h = 76.0 + row_h * lines.len() as f64 + 36.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">{}</text>
<rect x="{label_w}" y="32" width="12" height="10" fill="#d9480f"/><text x="{}" y="41">cfutures</text>
<rect x="{}" y="32" width="12" height="10" fill="#3572a5"/><text x="{}" y="41">Python concurrent.futures</text>
<text x="10" y="62" fill="#555">Bars are scaled per workload. Shorter is better, except W6 (a speedup). Advantage = how many times better cfutures is.</text>
"##,
        escape(title),
        label_w + 16.0,
        label_w + 90.0,
        label_w + 106.0,
    );
    for (i, l) in lines.iter().enumerate() {
        let y = 76.0 + row_h * i as f64;
        let max = l
            .rust
            .unwrap_or(0.0)
            .max(l.python.unwrap_or(0.0))
            .max(1e-12);
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}" font-weight="bold">{}</text><text x="40" y="{}">{}</text>"##,
            y + 14.0,
            l.workload.id,
            y + 14.0,
            escape(&truncate(l.workload.what, 62)),
        );
        let _ = writeln!(
            s,
            r##"<text x="40" y="{}" fill="#555">cfutures advantage: {}</text>"##,
            y + 30.0,
            advantage_text(l.advantage())
        );
        for (j, (v, color)) in [(l.rust, "#d9480f"), (l.python, "#3572a5")]
            .iter()
            .enumerate()
        {
            let by = y + 2.0 + 17.0 * j as f64;
            let len = v.map_or(0.0, |v| (v / max * bar_w).max(1.0));
            let _ = writeln!(
                s,
                r##"<rect x="{label_w}" y="{by}" width="{len:.1}" height="14" fill="{color}"/><text x="{:.1}" y="{}">{}</text>"##,
                label_w + len + 6.0,
                by + 11.0,
                escape(&figure(*v, l.workload.unit)),
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="10" y="{}" font-size="11" fill="#555">{}</text>"##,
        h - 12.0,
        escape(footnote)
    );
    s.push_str("</svg>\n");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &'static str, higher: bool, r: Option<f64>, p: Option<f64>) -> Line {
        let mut workload = workloads()[0];
        workload.id = id;
        workload.higher_is_better = higher;
        Line {
            workload,
            rust: r,
            python: p,
        }
    }

    #[test]
    fn advantage_is_python_over_rust_for_times_and_rust_over_python_for_speedups() {
        assert_eq!(
            line("W1", false, Some(2.0), Some(50.0)).advantage(),
            Some(25.0)
        );
        assert_eq!(
            line("W6", true, Some(1.9), Some(0.95)).advantage(),
            Some(2.0)
        );
        assert_eq!(line("W3", false, None, Some(1.0)).advantage(), None);
    }

    #[test]
    fn tables_and_chart_have_a_row_per_workload() {
        let lines: Vec<Line> = workloads()
            .into_iter()
            .map(|workload| Line {
                workload,
                rust: Some(1.0),
                python: Some(3.0),
            })
            .collect();
        let md = markdown(&lines);
        for id in ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"] {
            assert!(md.contains(&format!("| {id} ")), "{md}");
        }
        let chart = svg(&lines, "t", "f");
        assert_eq!(chart.matches("<rect x=\"430\"").count(), 16 + 1);
        assert!(chart.ends_with("</svg>\n"));
    }

    #[test]
    fn the_python_script_runs_when_python_is_present() {
        if Command::new("python3").arg("--version").output().is_err() {
            return;
        }
        let r = run_python(&["W4"], &Config::default(), |_, _| {}).unwrap();
        assert!(r.figures["W4"] > 0.0);
        assert!(r.version.starts_with('3'));
    }
}
