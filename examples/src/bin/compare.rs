//! `compare`: workloads W1–W8 on cfutures and on Python's `concurrent.futures`, side by side.
//!
//! ```text
//! cargo run --release -p cfutures-examples --bin compare -- [--no-python] [--only W1,W3]
//!     [--w6-mib N] [--markdown PATH] [--svg PATH]
//! ```
//!
//! Prints a table (workload, cfutures, Python, ratio) and writes it as Markdown
//! (default `target/compare.md`) and as an SVG bar chart (default `target/compare.svg`).

use std::path::PathBuf;

use cfutures_examples::compare::{self, Config, Line};

fn main() {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    let mut args = std::env::args().skip(1);
    let mut config = Config::default();
    let mut python = true;
    let mut only: Option<Vec<String>> = None;
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let mut md_path = target.join("compare.md");
    let mut svg_path = target.join("compare.svg");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--no-python" => python = false,
            "--only" => {
                only = args
                    .next()
                    .map(|s| s.split(',').map(str::to_owned).collect())
            }
            "--w6-mib" => config.w6_mib = args.next().and_then(|s| s.parse().ok()).unwrap_or(64),
            "--markdown" => md_path = args.next().map(PathBuf::from).unwrap_or(md_path),
            "--svg" => svg_path = args.next().map(PathBuf::from).unwrap_or(svg_path),
            other => {
                eprintln!("compare: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let workloads: Vec<_> = compare::workloads()
        .into_iter()
        .filter(|w| {
            only.as_ref()
                .map_or(true, |o| o.iter().any(|id| id == w.id))
        })
        .collect();

    println!("cfutures side:");
    let mut lines: Vec<Line> = workloads
        .iter()
        .map(|w| {
            let rust = w.rust.map(|f| f(&config));
            println!(
                "  {} {}",
                w.id,
                compare::figure(
                    rust,
                    if rust.is_some() {
                        w.unit
                    } else {
                        "(coming soon)"
                    }
                )
            );
            Line {
                workload: *w,
                rust,
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
        "{cpus} CPUs; Python {}; W6 tasks hash {} MiB each",
        python_version.as_deref().unwrap_or("not run"),
        config.w6_mib
    );
    println!("\n{}", compare::text(&lines));
    println!(
        "cfutures advantage: Python ÷ cfutures for times, cfutures ÷ Python for W6's speedup."
    );
    println!("{machine}");

    let md = format!(
        "{}\n{machine}. Command: `cargo run --release -p cfutures-examples --bin compare`.\n",
        compare::markdown(&lines)
    );
    let chart = compare::svg(
        &lines,
        &format!("cfutures vs Python concurrent.futures ({machine})"),
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
