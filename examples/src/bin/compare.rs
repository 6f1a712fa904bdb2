//! `compare`: workloads W1–W8 on cfutures and on Python's `concurrent.futures`, side by side.
//!
//! ```text
//! cargo run --release -p cfutures-examples --bin compare -- [--no-python] [--only W1,W3]
//!     [--w6-mib N] [--markdown PATH] [--svg PATH]
//! ```
//!
//! Prints a table (workload, cfutures, Python, ratio) and writes it as Markdown
//! (default `target/compare.md`) and as an SVG bar chart (default `target/compare.svg`).
//!
//! Each cfutures workload runs in a fresh process of its own (this program, started again
//! with `--run-one W3`), as Python's side runs in a fresh interpreter: no workload inherits
//! another's threads or worker processes, and one that hangs is stopped after
//! [`LIMIT`] and reported, instead of hanging the comparison.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cfutures_examples::compare::{self, Config, Line};

/// How long one cfutures workload may run.
const LIMIT: Duration = Duration::from_secs(90);

/// Runs workload `id` in a child process; its figure, or why there is none.
fn run_isolated(id: &str, config: &Config) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--run-one", id, "--w6-mib", &config.w6_mib.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if start.elapsed() > LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "stopped: still running after {} s",
                    LIMIT.as_secs()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if !status.success() {
        return Err(format!("failed: {status}"));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no figure in {text:?}"))
}

/// The 1-minute load average (Linux), or `?`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn main() {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    let mut args = std::env::args().skip(1);
    let mut config = Config::default();
    let mut python = true;
    let mut only: Option<Vec<String>> = None;
    let mut run_one: Option<String> = None;
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let mut md_path = target.join("compare.md");
    let mut svg_path = target.join("compare.svg");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--no-python" => python = false,
            // In a child: run one workload, print its figure.
            "--run-one" => run_one = args.next(),
            "--only" => {
                only = args
                    .next()
                    .map(|s| s.split(',').map(str::to_owned).collect())
            }
            "--w6-mib" => config.w6_mib = args.next().and_then(|s| s.parse().ok()).unwrap_or(32),
            "--markdown" => md_path = args.next().map(PathBuf::from).unwrap_or(md_path),
            "--svg" => svg_path = args.next().map(PathBuf::from).unwrap_or(svg_path),
            other => {
                eprintln!("compare: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    if let Some(id) = run_one {
        match compare::workloads()
            .into_iter()
            .find(|w| w.id == id)
            .and_then(|w| w.rust)
        {
            Some(run) => println!("RESULT {}", run(&config)),
            None => std::process::exit(3),
        }
        return;
    }
    let workloads: Vec<_> = compare::workloads()
        .into_iter()
        .filter(|w| {
            only.as_ref()
                .map_or(true, |o| o.iter().any(|id| id == w.id))
        })
        .collect();

    let load_start = loadavg();
    println!("cfutures side:");
    let mut notes = Vec::new();
    let mut lines: Vec<Line> = workloads
        .iter()
        .map(|w| {
            let rust = match w.rust {
                None => Err("coming soon".to_owned()),
                Some(_) => run_isolated(w.id, &config),
            };
            match &rust {
                Ok(v) => println!("  {} {}", w.id, compare::figure(Some(*v), w.unit)),
                Err(e) => {
                    println!("  {} {e}", w.id);
                    notes.push(format!("{}: cfutures {e}", w.id));
                }
            }
            Line {
                workload: *w,
                rust: rust.ok(),
                python: None,
            }
        })
        .collect();

    let mut python_version = None;
    if python {
        println!("Python side (python3 examples/python/compare.py):");
        let ids: Vec<&str> = workloads.iter().map(|w| w.id).collect();
        match compare::run_python(&ids, &config, |id, v| println!("  {id} {v:.3}")) {
            Ok(r) => {
                for l in &mut lines {
                    l.python = r.figures.get(l.workload.id).copied();
                }
                python_version = Some(r.version);
            }
            Err(e) => println!("  skipped: {e}"),
        }
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let machine = format!(
        "{cpus} CPUs; Python {}; W6: 8 tasks of {} MiB each, best of 3; load average {} at the start, {} at the end",
        python_version.as_deref().unwrap_or("not run"),
        config.w6_mib,
        load_start,
        loadavg()
    );
    println!("\n{}", compare::text(&lines));
    println!(
        "cfutures advantage: Python ÷ cfutures for times, cfutures ÷ Python for W6's speedup."
    );
    println!("{machine}");
    for n in &notes {
        println!("note — {n}");
    }

    let mut md = format!(
        "{}\n{machine}. Command: `cargo run --release -p cfutures-examples --bin compare`.\n",
        compare::markdown(&lines)
    );
    for n in &notes {
        md.push_str(&format!("\n- {n}"));
    }
    let chart = compare::svg(
        &lines,
        &format!(
            "cfutures vs Python concurrent.futures ({cpus} CPUs, Python {})",
            python_version.as_deref().unwrap_or("not run")
        ),
        &machine,
    );
    for (path, text) in [(&md_path, md), (&svg_path, chart)] {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::write(path, text) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("compare: cannot write {}: {e}", path.display()),
        }
    }
}
