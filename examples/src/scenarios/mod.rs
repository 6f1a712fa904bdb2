//! The scenarios of the tour, one module each (each also an example program).

pub mod big_data;
pub mod deadlocks;
pub mod download;
pub mod faults;
pub mod fetch;
pub mod hashing;
pub mod offload;
pub mod poison;
pub mod progress;
pub mod status;
pub mod trivial;
pub mod waiting;
pub mod watch;
