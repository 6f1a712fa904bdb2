//! Scenario 7: the two deadlocks every tutorial warns about, and what cfutures does instead.
//!
//! `cargo run --release -p cfutures-examples --example deadlocks` — the code is in
//! [`cfutures_examples::scenarios::deadlocks`] (`examples/src/scenarios/deadlocks.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::deadlocks::run(&mut cfutures_examples::report::Out::new())
}
