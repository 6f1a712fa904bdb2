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
//!
//! # Deadlocks
//!
//! A task that waits on a future whose task waits, directly or through other tasks, on the
//! first one's future can never finish: no executor can help (Python hangs for ever). Core
//! reports it instead: the wait that closes the cycle fails at once with
//! [`Error::Deadlock`](crate::Error::Deadlock), naming the cycle — and only that wait:
//! the other tasks of the cycle complete normally as the failing task returns.
//!
//! **How.** Core keeps a wait-for relation, and only on the park path:
//!
//! * *Which futures a thread runs*: [`Promise::run`](crate::Promise::run) / `run_then`
//!   (how every cfutures executor runs a task) marks the thread as running the future, in
//!   a thread-local, for as long as the task runs (not while its done-callbacks run). That
//!   is a thread-local write per task; nothing shared.
//! * *Which future a blocked thread waits on*: [`block_on`] is told ([`WaitFor`]): one
//!   future ([`Future::result`](crate::Future::result), `exception`, `wait`, and the
//!   combinators' `wait(ALL_COMPLETED)` and `map` one future at a time), all of a set, or
//!   any of a set (`as_completed`, `map_unordered`, `wait(FIRST_COMPLETED)` /
//!   `FIRST_EXCEPTION`; a set is listed only if a cycle search reaches it).
//!
//! Just before a thread that runs a future really parks (after its spin and yields: a wait
//! that ends while spinning costs nothing more), it registers in one process-wide graph,
//! under one lock, and looks for a cycle through itself: a wait on one or all futures is
//! stuck if one of them is run by a stuck parked thread, a wait on any of a set if all of
//! them are. Found: the registration is refused and the wait returns the cycle. A cycle can
//! only close when one of its threads parks, and parks take the lock one at a time, so of
//! two threads closing a cycle at the same moment exactly one sees it.
//!
//! **What is detected:** cycles among threads that run a cfutures future's task and park on
//! another future through core — in one pool, across pools, and through the caller's own
//! thread when it runs a task itself ([`InlineExecutor`](crate::InlineExecutor), or a task
//! run inline inside another, which is a cycle through one thread). Waits with a timeout
//! count too: the cycle is reported at once instead of after the timeout. A task waiting
//! on its own future is a cycle of one.
//!
//! **What is not:** a thread that runs no future (the main thread waiting on a task) can
//! never be part of a cycle, and is never told `Deadlock`; a task that blocks by other
//! means (a channel, a mutex, `sleep`, a pool's `shutdown`) on something another parked
//! task would provide; waits that do not say what they wait on ([`block_until`]); a custom
//! executor that runs tasks without `Promise::run`, and futures
//! completed by hand (a [`Promise`](crate::Promise) kept by a task and set later is not
//! "run" by it); process-pool tasks, which run in other processes and cannot wait on
//! futures. Not a cycle, and not
//! reported: a task waiting on a task queued behind it (the pool compensates, above).
//! One race is accepted: a thread whose timed wait has just expired, but which has not yet
//! woken, still counts as waiting, so a cycle through it is reported although it was about
//! to time out.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::deadlock;
pub use crate::deadlock::WaitSet;
use crate::error::Deadlock;
use crate::sync;
use crate::waiter::FutureId;

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

    /// How many spin steps (of 2^step `spin_loop` hints each, 0 to `SPIN_STEPS`) a backoff
    /// makes before it yields, when spinning can help; for callers that spin the same way
    /// without a `Backoff`.
    pub const SPIN_STEPS: u32 = Self::SPIN_LIMIT;

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

/// What a blocking wait waits on, so that core can tell a wait that would never end (see
/// "Deadlocks" in the module doc). Given to [`block_on`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum WaitFor<'a> {
    /// Something core cannot see (a pool's shutdown, a queue): never part of a cycle.
    Unknown,
    /// One future.
    One(FutureId),
    /// Every one of a set of futures: the wait ends only when all of them complete
    /// (`wait(ALL_COMPLETED)`).
    All(&'a dyn WaitSet),
    /// Any one of a set of futures (`as_completed`, `wait(FIRST_COMPLETED)`).
    Any(&'a dyn WaitSet),
}

impl fmt::Debug for WaitFor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitFor::Unknown => f.write_str("Unknown"),
            WaitFor::One(id) => write!(f, "One({id})"),
            WaitFor::All(_) => f.write_str("All(..)"),
            WaitFor::Any(_) => f.write_str("Any(..)"),
        }
    }
}

/// Blocks until `ready()` is true or `deadline` passes; returns the last `ready()`.
///
/// [`block_on`] for a wait on something that is not a future ([`WaitFor::Unknown`]).
pub fn block_until(
    deadline: Option<Instant>,
    ready: impl FnMut() -> bool,
    before_park: impl FnOnce() -> bool,
    after_park: impl FnOnce(),
) -> bool {
    match block_on(deadline, WaitFor::Unknown, ready, before_park, after_park) {
        Ok(done) => done,
        Err(_) => unreachable!("an unknown wait is never a cycle"),
    }
}

/// Blocks until `ready()` is true or `deadline` passes; returns the last `ready()`, or
/// [`Deadlock`] if the wait, on `wait_for`, would never end.
///
/// Spins, yields, then parks. Whoever makes `ready()` true must then `unpark` this thread
/// (its [`Thread`](std::thread::Thread) handle): register it before calling, or in
/// `before_park`, which runs once just before the first park and may return `false` to say
/// "already ready, do not park". `after_park` runs once after parking (or after a refusal
/// with [`Deadlock`]), whatever the outcome. The thread's [`BlockingHook`] is told around
/// the park.
///
/// Just before parking, if this thread runs a future's task, the wait is checked for a
/// cycle (see "Deadlocks" in the module doc): one lock, on the slow path only. A wait that
/// never parks (ready while spinning) costs nothing more.
///
/// # Errors
///
/// [`Deadlock`] if this wait closes a wait cycle; nothing was parked on.
pub fn block_on(
    deadline: Option<Instant>,
    wait_for: WaitFor<'_>,
    mut ready: impl FnMut() -> bool,
    before_park: impl FnOnce() -> bool,
    after_park: impl FnOnce(),
) -> Result<bool, Deadlock> {
    if ready() {
        return Ok(true);
    }
    if let Some(d) = deadline {
        if Instant::now() >= d {
            return Ok(false);
        }
    }
    let mut backoff = Backoff::new();
    while !backoff.is_completed() {
        backoff.snooze();
        if ready() {
            return Ok(true);
        }
    }
    if let Some(d) = deadline {
        if Instant::now() >= d {
            return Ok(ready());
        }
    }
    if !before_park() {
        after_park();
        return Ok(true);
    }
    // Registered in the wait-for graph until parking ends (the guard removes the node, on
    // unwinding too), unless that would close a cycle.
    let wait = match wait_for {
        WaitFor::Unknown => None,
        WaitFor::One(id) => Some(deadlock::Wait::One(id)),
        WaitFor::All(set) => Some(deadlock::Wait::All(set)),
        WaitFor::Any(set) => Some(deadlock::Wait::Any(set)),
    };
    let _node = match wait.map(deadlock::register).transpose() {
        Ok(node) => node.flatten(),
        Err(cycle) => {
            after_park();
            return Err(cycle);
        }
    };
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
    drop(_node);
    after_park();
    Ok(done)
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
