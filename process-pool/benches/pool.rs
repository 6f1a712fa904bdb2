//! Process-pool benchmarks (written below).

fn main() {}
