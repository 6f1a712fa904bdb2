//! Scenario 1: fetch 42 URLs from a loopback site with a thread pool (`map`, then `submit` + `as_completed`), surviving a failing URL and a per-request timeout.
//!
//! `cargo run --release -p cfutures-examples --example fetch_urls` — the code is in
//! [`cfutures_examples::scenarios::fetch`] (`examples/src/scenarios/fetch.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::fetch::run(&mut cfutures_examples::report::Out::new())
}
