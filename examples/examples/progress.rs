//! Scenario 9: an indicatif progress bar over `as_completed` and `map`.
//!
//! `cargo run --release -p cfutures-examples --example progress` — the code is in
//! [`cfutures_examples::scenarios::progress`] (`examples/src/scenarios/progress.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::progress::run(&mut cfutures_examples::report::Out::new())
}
