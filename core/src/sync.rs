//! The synchronisation primitives core uses, in one place so that `cfg(loom)` can swap them
//! for loom's model-checked versions.
//!
//! Under loom: atomics, `Mutex`, `UnsafeCell`, thread
//! handles, `park` / `yield_now` and thread-locals are loom's; spinning is replaced by a loom
//! yield; time does not exist (a timed park is a plain park, so models never use deadlines).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::{current, park, yield_now, Thread};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread::{current, park, yield_now, Thread};

/// `thread_local!`, loom's under `cfg(loom)` (loom runs its threads on one OS thread, so a
/// std thread-local would be shared by all of a model's threads).
#[cfg(loom)]
macro_rules! thread_local_ {
    // loom's macro does not take `const { .. }` initialisers.
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr };) => {
        loom::thread_local!($(#[$attr])* $vis static $name: $t = $init);
    };
}
#[cfg(not(loom))]
macro_rules! thread_local_ {
    ($($t:tt)*) => { std::thread_local!($($t)*); };
}
pub(crate) use thread_local_ as thread_local;

/// One step of a busy-wait. Under loom, a yield: loom must be told that this thread waits
/// for another, or a model that spins never ends.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Parks with a timeout. Loom has no time, so there a timed park is a plain park (loom
/// models only ever wait without deadlines).
#[cfg(not(loom))]
pub(crate) fn park_timeout(d: std::time::Duration) {
    std::thread::park_timeout(d)
}
#[cfg(loom)]
pub(crate) fn park_timeout(_d: std::time::Duration) {
    loom::thread::park()
}

/// Locks, ignoring poisoning: core never panics while holding a lock (user callbacks run
/// outside every lock), so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `UnsafeCell` with loom's closure-based API, so the same code checks under loom.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(not(loom))] std::cell::UnsafeCell<T>,
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub(crate) fn new(v: T) -> Self {
        #[cfg(not(loom))]
        {
            UnsafeCell(std::cell::UnsafeCell::new(v))
        }
        #[cfg(loom)]
        {
            UnsafeCell(loom::cell::UnsafeCell::new(v))
        }
    }
    /// Runs `f` with a shared pointer to the contents (loom checks the access).
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(loom))]
        {
            f(self.0.get())
        }
        #[cfg(loom)]
        {
            self.0.with(f)
        }
    }
    /// Runs `f` with a mutable pointer to the contents (loom checks the access).
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        {
            f(self.0.get())
        }
        #[cfg(loom)]
        {
            self.0.with_mut(f)
        }
    }
    /// The contents, through exclusive access.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        {
            self.0.get_mut()
        }
        #[cfg(loom)]
        {
            // SAFETY: `&mut self` is exclusive, so no other access to the cell can exist
            // while the returned reference lives; loom checks the access itself.
            self.0.with_mut(|p| unsafe { &mut *p })
        }
    }
}
