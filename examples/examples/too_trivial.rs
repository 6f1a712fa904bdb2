//! Scenario 4: the pitfall "too trivial to parallelise" — primality checks, measured, and when `chunksize` helps (more items, bigger chunks).
//!
//! `cargo run --release -p cfutures-examples --example too_trivial` — the code is in
//! [`cfutures_examples::scenarios::trivial`] (`examples/src/scenarios/trivial.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::trivial::run(&mut cfutures_examples::report::Out::new())
}
