//! Scenario 12: a task that crashes its worker once is run again; one that crashes every worker is quarantined, with its last words; a map chunk loses only its poison item.
//!
//! `cargo run --release -p cfutures-examples --example poison` — the code is in
//! [`cfutures_examples::scenarios::poison`] (`examples/src/scenarios/poison.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    cfutures_examples::scenarios::poison::run(&mut cfutures_examples::report::Out::new())
}
