//! The cfutures tour: every scenario from the `concurrent.futures` tutorials, run and timed.
//!
//! `cargo run --release -p cfutures-examples --bin tour [N ...]` runs every section (or
//! only sections N …) and prints what each did, how long it took, sequential vs pool, and
//! a summary table. Exits 1 if a section failed.

use std::time::{Duration, Instant};

use cfutures_examples::report::{quiet_panics, Out, Secs};
use cfutures_examples::tour::{run_section, sections, summary, Status};

/// A tour that has not finished after this long is stuck: fail rather than hang CI.
const WATCHDOG: Duration = Duration::from_secs(300);

fn main() {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    // The MPI executor's (with the `mpi` feature): a spawned MPI worker serves from here.
    #[cfg(feature = "mpi")]
    cfutures_mpi::init();
    let only: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("tour: still running after {}; giving up", Secs(WATCHDOG));
        std::process::exit(2);
    });

    println!("cfutures tour — Python's concurrent.futures scenarios, in Rust");
    println!(
        "{} CPUs available; each section also runs alone: cargo run --release -p cfutures-examples --example NAME",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    quiet_panics();
    let start = Instant::now();
    let mut out = Out::new();
    let outcomes: Vec<_> = sections()
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.number))
        .map(|s| run_section(s, &mut out))
        .collect();

    println!("\n── Summary ──\n");
    print!("{}", summary(&outcomes));
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.status, Status::Failed(_)))
        .count();
    println!(
        "\n{} sections ran in {}; {} failed.",
        outcomes.len(),
        Secs(start.elapsed()),
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
