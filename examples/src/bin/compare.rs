//! Runs the performance workloads on cfutures and on Python's `concurrent.futures`.
fn main() {}
