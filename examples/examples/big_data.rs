//! Scenario 12: big data — sha256 of 8 × 16 MB buffers in worker processes, through the pipes, through shared memory, and as views of one `SharedBytes`.
//!
//! `cargo run --release -p cfutures-examples --example big_data` — the code is in
//! [`cfutures_examples::scenarios::big_data`] (`examples/src/scenarios/big_data.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    cfutures_examples::scenarios::big_data::run(&mut cfutures_examples::report::Out::new())
}
