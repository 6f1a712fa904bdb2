//! Runnable examples of cfutures.
