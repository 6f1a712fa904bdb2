//! cfutures-combinators (coming soon).
