//! cfutures-process-pool (coming soon).
