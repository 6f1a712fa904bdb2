//! Scenario 14: a live per-worker table of a process-pool run, drawn from `pool.events()` (snapshots when stdout is not a terminal), and `pool.stats()`.
//!
//! `cargo run --release -p cfutures-examples --example watch` — the code is in
//! [`cfutures_examples::scenarios::watch`] (`examples/src/scenarios/watch.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    cfutures_examples::scenarios::watch::run(&mut cfutures_examples::report::Out::new())
}
