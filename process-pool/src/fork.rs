//! Fork detection: a pool copied into a forked child (which has the pool's memory but not its
//! I/O thread, and shares its pipes) must refuse work rather than hang, and must not wait for
//! or kill the parent's workers when it is dropped there.
//!
//! A `pthread_atfork` child handler counts forks; each pool remembers the count at its birth.
//! The handler only increments an atomic, which is async-signal-safe (a forked child of a
//! multi-threaded process may call nothing else).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn child() {
    // Relaxed: the child is single-threaded when this runs; later reads in it are ordered
    // after it by program order.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Installs the handler (once per process).
pub(crate) fn watch() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic increment; it stays valid
        // for the whole life of the process (a static function).
        unsafe { libc::pthread_atfork(None, None, Some(child)) };
    });
}

/// How many forks this process is removed from the one that installed the handler.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
