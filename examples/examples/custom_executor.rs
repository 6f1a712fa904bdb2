//! Scenario 10: a custom executor in ~35 lines that every combinator accepts.
//!
//! `cargo run --release -p cfutures-examples --example custom_executor` — the code is in
//! [`cfutures_examples::custom`] (`examples/src/custom.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::custom::run(&mut cfutures_examples::report::Out::new())
}
