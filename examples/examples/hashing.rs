//! Scenario 3: CPU-bound sha256 hashing — sequential vs threads vs processes with `chunksize`, and a digest task list collected with `as_completed`.
//!
//! `cargo run --release -p cfutures-examples --example hashing` — the code is in
//! [`cfutures_examples::scenarios::hashing`] (`examples/src/scenarios/hashing.rs`), shared with the tour.

fn main() -> Result<(), cfutures_examples::report::BoxError> {
    // The process pool's setup line: serves as a worker if this process was started as one.
    // (On Linux and macOS it already ran before `main`; this line is for other platforms.)
    cfutures_process_pool::init();
    // The MPI executor's (with the `mpi` feature): a spawned MPI worker serves from here.
    #[cfg(feature = "mpi")]
    cfutures_mpi::init();
    cfutures_examples::report::quiet_panics(); // the scenario panics on purpose; it reports each one
    cfutures_examples::scenarios::hashing::run(&mut cfutures_examples::report::Out::new())
}
