//! Scenario 11: a tokio program that offloads CPU work to the process pool and awaits it.
//!
//! `cargo run --release -p cfutures-examples --example async_offload` — the code is in
//! [`cfutures_examples::scenarios::offload`] (`examples/src/scenarios/offload.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::offload::run(&mut cfutures_examples::report::Out::new())
}
