//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any blocking step of a test may take before the test fails instead of hanging.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// A gate that tasks wait on until the test opens it (never a sleep).
#[derive(Clone, Default)]
pub(crate) struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    pub(crate) fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    /// Waits until opened; panics after [`LIMIT`].
    pub(crate) fn wait(&self) {
        let (m, cv) = &*self.0;
        let (open, timeout) = cv
            .wait_timeout_while(m.lock().unwrap(), LIMIT, |open| !*open)
            .unwrap();
        assert!(*open && !timeout.timed_out(), "gate never opened");
    }
}

/// Polls `cond` until it holds; panics after [`LIMIT`]. For states that become true without
/// any event a test could wait on (a thread retiring, a count settling).
pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < end, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
