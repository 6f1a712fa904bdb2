//! How cfutures blocks a thread: spin briefly, then yield, then park.
//!
//! On the small virtual machines this project runs on, waking a parked thread on another
//! CPU costs tens of microseconds, so a waiter that parks at once makes every hand-off slow.
//! A waiter that spins for long is just as bad when the thread it waits for needs its CPU.
//! [`block_until`] does both well: a short spin (skipped when the process may use only one
//! CPU), a few `yield_now`s, then a real park.
//!
//! # Tuning
//!
//! The spin is short on purpose: 127 `spin_loop` hints in growing bursts (about 0.6 µs on
//! the project's 2-vCPU virtual machines, where a hint costs ~5 ns), then four `yield_now`s
//! (~1.3 µs each there), then a park. Spinning for longer (5 to 50 µs, bounded by time) was
//! measured with `core/benches/handoff.rs`: it wins only while both CPUs are otherwise idle,
//! and loses several-fold (hand-offs of 7–45 µs instead of 2–4 µs) as soon as another
//! process keeps one CPU busy, which is the normal state of a shared machine — the spinning
//! waiter then holds the very CPU the thread it waits for needs. See `BENCHMARKS.md`.
//!
//! # Blocking hooks
//!
//! An executor can tell core that the current thread is one of its workers, with
//! [`set_thread_hook`]. Core then calls [`BlockingHook::before_park`] just before the thread
//! really parks on a future (after spinning and yielding), and
//! [`BlockingHook::after_park`] when it wakes. A thread pool uses this to start a
//! compensating thread, so that a worker waiting on a task queued behind it in the same
//! pool cannot deadlock the pool.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use crate::sync;

/// Told when a worker thread is about to park on a future, and when it wakes.
///
/// Installed per thread with [`set_thread_hook`].
pub trait BlockingHook: Send + Sync {
    /// The current thread is about to park until some future completes.
    fn before_park(&self);
    /// The current thread woke and stopped waiting.
    fn after_park(&self);
}

sync::thread_local! {
    static HOOK: RefCell<Option<Arc<dyn BlockingHook>>> = const { RefCell::new(None) };
}

/// Installs (or, with `None`, removes) the current thread's blocking hook; returns the
/// previous one.
pub fn set_thread_hook(hook: Option<Arc<dyn BlockingHook>>) -> Option<Arc<dyn BlockingHook>> {
    HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), hook))
}

fn current_hook() -> Option<Arc<dyn BlockingHook>> {
    HOOK.try_with(|h| h.borrow().clone()).ok().flatten()
}

/// How many CPUs this process may use (`available_parallelism`, 1 if unknown), read once:
/// the call reads cgroup files, tens of microseconds on a small VM.
pub fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether spinning can help: false when this process may run on one CPU only (then the
/// thread we wait for needs our CPU, and spinning only delays it).
#[cfg(not(loom))]
pub fn may_spin() -> bool {
    cpus() > 1
}
/// Under loom every wait step is a loom yield.
#[cfg(loom)]
pub fn may_spin() -> bool {
    false
}

/// Spin-then-yield backoff, crossbeam's `Backoff` shape.
#[derive(Debug, Default)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    #[cfg(not(loom))]
    const SPIN_LIMIT: u32 = 6;
    #[cfg(not(loom))]
    const YIELD_LIMIT: u32 = 10;
    // Under loom: one yield, then park, to keep models small.
    #[cfg(loom)]
    const SPIN_LIMIT: u32 = 0;
    #[cfg(loom)]
    const YIELD_LIMIT: u32 = 0;

    /// A fresh backoff.
    pub fn new() -> Self {
        Backoff { step: 0 }
    }

    /// Waits a little: spins (2^step pauses) while spinning can help, else yields.
    pub fn snooze(&mut self) {
        if self.step <= Self::SPIN_LIMIT && may_spin() {
            for _ in 0..(1u32 << self.step) {
                sync::spin_loop();
            }
        } else {
            sync::yield_now();
        }
        if self.step <= Self::YIELD_LIMIT {
            self.step += 1;
        }
    }

    /// True once spinning and yielding are done and the caller should park.
    pub fn is_completed(&self) -> bool {
        self.step > Self::YIELD_LIMIT
    }
}

/// Blocks until `ready()` is true or `deadline` passes; returns the last `ready()`.
///
/// Spins, yields, then parks. Whoever makes `ready()` true must then `unpark` this thread
/// (its [`Thread`](std::thread::Thread) handle): register it before calling, or in
/// `before_park`, which runs once just before the first park and may return `false` to say
/// "already ready, do not park". `after_park` runs once after parking, whatever the outcome.
/// The thread's [`BlockingHook`] is told around the park.
pub fn block_until(
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
    before_park: impl FnOnce() -> bool,
    after_park: impl FnOnce(),
) -> bool {
    if ready() {
        return true;
    }
    if let Some(d) = deadline {
        if Instant::now() >= d {
            return false;
        }
    }
    let mut backoff = Backoff::new();
    while !backoff.is_completed() {
        backoff.snooze();
        if ready() {
            return true;
        }
    }
    if let Some(d) = deadline {
        if Instant::now() >= d {
            return ready();
        }
    }
    if !before_park() {
        after_park();
        return true;
    }
    // The hook hears `after_park` even if `ready` unwinds: a pool must not count a thread
    // blocked for ever.
    let _hook = HookGuard::enter();
    let done = loop {
        if ready() {
            break true;
        }
        match deadline {
            None => sync::park(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    break ready();
                }
                sync::park_timeout(d - now);
            }
        }
    };
    drop(_hook);
    after_park();
    done
}

/// Tells the thread's hook `before_park` when made and `after_park` when dropped.
struct HookGuard(Option<Arc<dyn BlockingHook>>);

impl HookGuard {
    fn enter() -> Self {
        let hook = current_hook();
        if let Some(h) = &hook {
            h.before_park();
        }
        HookGuard(hook)
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.after_park();
        }
    }
}

/// A deadline `d` from now; `None` (wait forever) if that overflows `Instant`.
pub fn deadline_after(d: std::time::Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}
