//! Scenario 5: a future's status — `running`, `cancelled`, `done`, `result`, `cancel` on a queued task, `add_done_callback`.
//!
//! `cargo run --release -p cfutures-examples --example future_status` — the code is in
//! [`cfutures_examples::scenarios::status`] (`examples/src/scenarios/status.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::status::run(&mut cfutures_examples::report::Out::new())
}
