//! cfutures-thread-pool (coming soon).
