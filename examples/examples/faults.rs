//! Scenario 8: a worker killed mid-task, a task past its time limit, a panicking task — the process pool carries on.
//!
//! `cargo run --release -p cfutures-examples --example faults` — the code is in
//! [`cfutures_examples::scenarios::faults`] (`examples/src/scenarios/faults.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::faults::run(&mut cfutures_examples::report::Out::new())
}
