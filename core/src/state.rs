//! The future's state word: the states, the listener flag, and one named transition per
//! change. Each transition is a single atomic read-modify-write and says what to do next.
//!
//! # Layout
//!
//! The low three bits hold the state; bit 3 ([`LISTENERS`]) says "someone registered a
//! callback, a parked thread or a waiter: take the lock and tell them". A transition that
//! finds the bit clear needs no lock at all, which keeps the common submit → run → result
//! path lock-free.
//!
//! # Memory ordering
//!
//! * The value is written by the thread that moved the state to [`COMPLETING`] (or, on
//!   the run path, by the thread that moved it to [`RUNNING`]: nobody else can move a
//!   running future), before it stores [`FINISHED`] with `Release`; readers load the state with `Acquire` and read the
//!   value only after seeing `FINISHED`. That pairing is what makes the value visible.
//! * The listener bit is set with a compare-exchange (`AcqRel`) *while holding the listener
//!   lock*, and only if the state is not yet terminal. Every transition is also an `AcqRel`
//!   read-modify-write on the same word, so the two are totally ordered: either the
//!   registration came first (the transition sees the bit, takes the lock and — because the
//!   registrar held that lock from before its compare-exchange until after it pushed —
//!   finds the registration), or the transition came first (the registration's
//!   compare-exchange fails and it sees the terminal state). No wake-up is lost.

use crate::sync::{AtomicU8, Ordering};

/// Created, queued, not started.
pub(crate) const PENDING: u8 = 0;
/// An executor claimed it (`set_running_or_notify_cancel` returned true).
pub(crate) const RUNNING: u8 = 1;
/// Cancelled; the executor has not noticed yet (`wait` / `as_completed` treat it as not done).
pub(crate) const CANCELLED: u8 = 2;
/// Cancelled, and the executor noticed (`set_running_or_notify_cancel` returned false).
pub(crate) const CANCELLED_NOTIFIED: u8 = 3;
/// A result is being written by the one thread that claimed it. Seen as running.
pub(crate) const COMPLETING: u8 = 4;
/// The result (value or failure) is written and visible.
pub(crate) const FINISHED: u8 = 5;

pub(crate) const STATE_MASK: u8 = 0b0111;
pub(crate) const LISTENERS: u8 = 0b1000;

/// The state word.
pub(crate) struct StateCell(AtomicU8);

/// What a transition found, and whether the listeners must be told.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The transition happened; `notify` says whether the listener bit was set.
    Done { notify: bool },
    /// The transition did not apply; this was the state.
    Refused(u8),
}

impl StateCell {
    #[inline]
    pub(crate) fn new() -> Self {
        StateCell(AtomicU8::new(PENDING))
    }

    /// The state bits, `Acquire` so a `FINISHED` makes the value visible.
    #[inline]
    pub(crate) fn load(&self) -> u8 {
        self.0.load(Ordering::Acquire) & STATE_MASK
    }

    /// Moves `from` (any of the states in `allowed`) to `to`, keeping the listener bit.
    #[inline]
    fn transition(&self, allowed: &[u8], to: u8) -> Transition {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let state = cur & STATE_MASK;
            if !allowed.contains(&state) {
                return Transition::Refused(state);
            }
            let new = to | (cur & LISTENERS);
            // AcqRel: Release publishes what the caller wrote before the transition (the
            // value, for FINISHED); Acquire orders us after listener registrations.
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Transition::Done {
                        notify: cur & LISTENERS != 0,
                    }
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// PENDING → RUNNING.
    #[inline]
    pub(crate) fn transition_to_running(&self) -> Transition {
        self.transition(&[PENDING], RUNNING)
    }

    /// PENDING → CANCELLED.
    #[inline]
    pub(crate) fn transition_to_cancelled(&self) -> Transition {
        self.transition(&[PENDING], CANCELLED)
    }

    /// RUNNING → CANCELLED_NOTIFIED: the executor stopped a running task (e.g. killed the
    /// worker process running it) and reports it cancelled.
    #[inline]
    pub(crate) fn transition_running_to_cancelled(&self) -> Transition {
        self.transition(&[RUNNING], CANCELLED_NOTIFIED)
    }

    /// CANCELLED → CANCELLED_NOTIFIED.
    #[inline]
    pub(crate) fn transition_to_notified(&self) -> Transition {
        self.transition(&[CANCELLED], CANCELLED_NOTIFIED)
    }

    /// PENDING | RUNNING → COMPLETING: claims the right to write the value.
    #[inline]
    pub(crate) fn transition_to_completing(&self) -> Transition {
        self.transition(&[PENDING, RUNNING], COMPLETING)
    }

    /// RUNNING → FINISHED in one step, after the value is written: for the thread that
    /// runs the task (it moved the state to RUNNING itself, and from RUNNING only the
    /// promise's holder moves it: a running future cannot be cancelled), so no other
    /// thread can be writing the value and the claim step (COMPLETING) is not needed.
    /// Returns whether the listener bit was set.
    ///
    /// One `fetch_or`, not a compare-exchange loop: `RUNNING | (FINISHED ^ RUNNING)` is
    /// `FINISHED`, and the only concurrent change of the word while RUNNING is a registrar
    /// setting the listener bit, which `fetch_or` keeps. `AcqRel` as every transition:
    /// Release publishes the value, Acquire orders us after listener registrations (see the
    /// module doc).
    #[inline]
    pub(crate) fn transition_running_to_finished(&self) -> bool {
        const _: () = assert!(RUNNING | (FINISHED ^ RUNNING) == FINISHED);
        const _: () = assert!(RUNNING & (FINISHED ^ RUNNING) == 0);
        let prev = self.0.fetch_or(FINISHED ^ RUNNING, Ordering::AcqRel);
        debug_assert_eq!(
            prev & STATE_MASK,
            RUNNING,
            "only the running thread finishes"
        );
        prev & LISTENERS != 0
    }

    /// COMPLETING → FINISHED, after the value is written.
    #[inline]
    pub(crate) fn transition_to_finished(&self) -> Transition {
        self.transition(&[COMPLETING], FINISHED)
    }

    /// Sets the listener bit unless `is_terminal(state)`; returns the state if it refused.
    /// Must be called while holding the listener lock.
    #[inline]
    pub(crate) fn set_listeners_unless(&self, is_terminal: impl Fn(u8) -> bool) -> Result<(), u8> {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let state = cur & STATE_MASK;
            if is_terminal(state) {
                return Err(state);
            }
            if cur & LISTENERS != 0 {
                return Ok(());
            }
            // AcqRel: orders this registration against every transition (see module doc).
            match self.0.compare_exchange_weak(
                cur,
                cur | LISTENERS,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Done for `done()`, `result()` and callbacks: cancelled (notified or not) or finished.
#[inline]
pub(crate) fn is_done(state: u8) -> bool {
    matches!(state, CANCELLED | CANCELLED_NOTIFIED | FINISHED)
}

/// Done for `wait` / `as_completed`: finished, or cancelled *and notified*.
#[inline]
pub(crate) fn is_complete_for_wait(state: u8) -> bool {
    matches!(state, CANCELLED_NOTIFIED | FINISHED)
}
