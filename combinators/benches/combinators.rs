//! Benchmarks (coming).
fn main() {}
