//! Scenario 2: download and save 42 pages, sequentially and on a thread pool, with the speedup.
//!
//! `cargo run --release -p cfutures-examples --example download` — the code is in
//! [`cfutures_examples::scenarios::download`] (`examples/src/scenarios/download.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::download::run(&mut cfutures_examples::report::Out::new())
}
