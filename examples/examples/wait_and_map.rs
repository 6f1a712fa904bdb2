//! Scenario 6: `wait` with each `ReturnWhen`, and `map` with a timeout.
//!
//! `cargo run --release -p cfutures-examples --example wait_and_map` — the code is in
//! [`cfutures_examples::scenarios::waiting`] (`examples/src/scenarios/waiting.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::waiting::run(&mut cfutures_examples::report::Out::new())
}
