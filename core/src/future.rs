//! [`Future`] (the read side) and [`Promise`] (the write side) of one result.
//!
//! # Who touches what
//!
//! * `state` — everyone, only through the named transitions in [`crate::state`].
//! * `value` — written once, by the one thread whose `transition_to_completing` succeeded
//!   (or, on the run path, the one that moved the future to RUNNING: nobody else can move a
//!   running future), before the transition to FINISHED; read by anyone who has seen `FINISHED`; taken out only
//!   through `&mut` (sole owner: [`Future::into_result`], or drop).
//! * `listeners` — under its mutex; see the memory-ordering notes in [`crate::state`].
//! * `handles` — the number of live [`Future`] handles (not counting the promise), so that
//!   `into_result` can tell "shared with another handle" from "the promise is still
//!   finishing up".

use std::cell::{Cell, RefCell};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::mem;
use std::num::NonZeroU32;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::blocking::{self, Backoff};
use crate::deadlock::Frame;
use crate::error::{log_caught_panic, Broken, Deadlock, Error, InvalidState, TaskError};
use crate::state::{self, StateCell, Transition};
use crate::state_arc::StateArc;
use crate::sync::{self, AtomicU16, AtomicU32, Mutex, Ordering, Thread, UnsafeCell};

/// The shared state's reference-counted pointer, with memory from per-thread slabs
/// (loom's `Arc` under `cfg(loom)`, so `into_result`'s `get_mut` is modelled); waiters stay
/// in std `Arc`s (they are `dyn`).
type Shared<T> = StateArc<Inner<T>>;
use crate::task::Task;
use crate::waiter::{Completion, FutureId, Waitable, Waiter, WaiterKey};

/// The state of a future, as Python's `Future` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Created or queued; not started. Can be cancelled.
    Pending,
    /// An executor is running it. Cannot be cancelled (in the thread pool).
    Running,
    /// Cancelled before it started.
    Cancelled,
    /// Finished: it has a value or a failure.
    Finished,
}

type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send + 'static>;

enum Slot {
    Free,
    Thread {
        token: u64,
        thread: Thread,
    },
    Waiter {
        token: u64,
        waiter: Arc<dyn Waiter>,
    },
    /// An `async` task awaiting the future (see `crate::async_bridge`): woken when the
    /// future is done, exactly like a parked thread.
    Waker {
        token: u64,
        waker: Waker,
    },
}

/// Done-callbacks (kept in registration order) and a slab of parked threads and waiters
/// (O(1) insert and remove by key). The first slot is inline: the usual case (one parked
/// thread, or one `wait` / `as_completed` waiter) costs one allocation, this box.
struct Listeners<T> {
    callbacks: Vec<Callback<T>>,
    /// Slot 0.
    first: Slot,
    /// Slots 1.. (slot `i` at `rest[i - 1]`).
    rest: Vec<Slot>,
    /// Slots handed out so far (free or not).
    used: u32,
    free: Vec<u32>,
    next_token: u64,
}

impl<T> Listeners<T> {
    const fn new() -> Self {
        Listeners {
            callbacks: Vec::new(),
            first: Slot::Free,
            rest: Vec::new(),
            used: 0,
            free: Vec::new(),
            next_token: 0,
        }
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot> {
        match index {
            0 if self.used > 0 => Some(&mut self.first),
            0 => None,
            i => self.rest.get_mut(i as usize - 1),
        }
    }

    fn insert(&mut self, make: impl FnOnce(u64) -> Slot) -> WaiterKey {
        let token = self.next_token;
        self.next_token += 1;
        let slot = make(token);
        let index = match self.free.pop() {
            Some(i) => {
                *self.slot_mut(i).expect("a freed slot exists") = slot;
                i
            }
            None if self.used == 0 => {
                self.first = slot;
                self.used = 1;
                0
            }
            None => {
                self.rest.push(slot);
                self.used += 1;
                self.used - 1
            }
        };
        WaiterKey {
            index: NonZeroU32::new(index + 1)
                .filter(|&i| i != INLINE)
                .expect("fewer than 2^32 - 2 listeners on one future"),
            token,
        }
    }

    fn remove(&mut self, key: WaiterKey) -> bool {
        let index = key.index.get() - 1;
        let Some(slot) = self.slot_mut(index) else {
            return false;
        };
        let matches = match slot {
            Slot::Thread { token, .. } | Slot::Waiter { token, .. } | Slot::Waker { token, .. } => {
                *token == key.token
            }
            Slot::Free => false,
        };
        if matches {
            *slot = Slot::Free;
            self.free.push(index);
        }
        matches
    }

    /// Takes part of the listeners (see [`Take`]); [`Take::All`] takes the whole box
    /// instead (see [`Inner::drain`]).
    fn drain_part(&mut self, take: Take) -> Drained<T> {
        let done_listeners = take != Take::Waiters;
        let with_waiters = take != Take::DoneListeners;
        let callbacks = if done_listeners {
            mem::take(&mut self.callbacks)
        } else {
            Vec::new()
        };
        let mut threads = Vec::new();
        let mut waiters = Vec::new();
        let mut wakers = Vec::new();
        let slots = std::iter::once(&mut self.first).chain(self.rest.iter_mut());
        for (i, slot) in slots.enumerate() {
            match slot {
                Slot::Thread { .. } if done_listeners => {
                    if let Slot::Thread { thread, .. } = mem::replace(slot, Slot::Free) {
                        threads.push(thread);
                    }
                    self.free.push(i as u32);
                }
                Slot::Waiter { .. } if with_waiters => {
                    if let Slot::Waiter { waiter, .. } = mem::replace(slot, Slot::Free) {
                        waiters.push(waiter);
                    }
                    self.free.push(i as u32);
                }
                Slot::Waker { .. } if done_listeners => {
                    if let Slot::Waker { waker, .. } = mem::replace(slot, Slot::Free) {
                        wakers.push(waker);
                    }
                    self.free.push(i as u32);
                }
                _ => {}
            }
        }
        Drained::Part {
            callbacks,
            threads,
            waiters,
            wakers,
        }
    }
}

/// Which listeners a transition takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Everyone: a transition to FINISHED, or RUNNING → CANCELLED_NOTIFIED.
    All,
    /// Callbacks and parked threads, not waiters: PENDING → CANCELLED (`wait` does not
    /// count the future as done yet).
    DoneListeners,
    /// Waiters only: CANCELLED → CANCELLED_NOTIFIED. The callbacks and threads registered
    /// before the cancel are the cancelling thread's to tell (after the cancel nobody can
    /// register them), so that `cancel()` returns only after its callbacks ran, as in Python.
    Waiters,
}

/// What a transition took from the listeners, to tell outside the lock.
enum Drained<T> {
    /// Everyone: the inline waiter and the whole box, taken in O(1) (no allocation on the
    /// completion path).
    All {
        waiter: Option<Arc<dyn Waiter>>,
        more: Option<Box<Listeners<T>>>,
    },
    /// Part of them (a cancel, or the notice of one).
    Part {
        callbacks: Vec<Callback<T>>,
        threads: Vec<Thread>,
        waiters: Vec<Arc<dyn Waiter>>,
        wakers: Vec<Waker>,
    },
}

/// The index of a [`WaiterKey`] that names the inline waiter of a [`Registry`]; its token is
/// made by [`inline_token`].
const INLINE: NonZeroU32 = NonZeroU32::MAX;

/// Everyone registered on a future, under its mutex.
///
/// The first `wait` / `as_completed` / `map_unordered` waiter is kept inline, so that
/// installing one — what those do to every pending future, a million times for a million
/// futures — allocates nothing: the box of [`Listeners`] (callbacks, parked threads, further
/// waiters) is made only when something else registers. Its [`WaiterKey`] is
/// `{ index: INLINE, token: inline_token(..) }`.
struct Registry<T> {
    waiter: Option<Arc<dyn Waiter>>,
    more: Option<Box<Listeners<T>>>,
}

impl<T> Registry<T> {
    const fn new() -> Self {
        Registry {
            waiter: None,
            more: None,
        }
    }

    fn listeners(&mut self) -> &mut Listeners<T> {
        self.more.get_or_insert_with(|| Box::new(Listeners::new()))
    }
}

/// The token of the key of an inline installation: the waiter's address and the future's
/// count of inline installations (mod 2^16), so that a stale key matches a later
/// installation only if it is of the same waiter object *and* exactly a multiple of 65,536
/// installations came in between. (User-space addresses fit in 48 bits.)
fn inline_token(w: &Arc<dyn Waiter>, generation: u16) -> u64 {
    ((Arc::as_ptr(w) as *const () as usize as u64) << 16) | u64::from(generation)
}

/// What a finished future holds. The failure is boxed, and the listeners (but for one
/// waiter) are allocated only when someone registers, so that the common future (submitted,
/// finished, read; or waited on by `wait` / `as_completed`) is one small allocation: 72
/// bytes with its `Arc` header for a `u64` result (an 80-byte malloc chunk), against ~190
/// with everything inline. That size is most of the cost of a future in a throughput
/// workload (allocation and first-touch page faults).
type Outcome<T> = Result<T, Box<Error>>;

pub(crate) struct Inner<T> {
    state: StateCell,
    /// `u32` so that it packs with `state` into one word: with the inline waiter the state
    /// of a `Future<u64>` is 72 bytes, which malloc serves from the same 80-byte chunks as
    /// 64. Four billion handles to one future would take 32 GiB of handles; overflow aborts,
    /// as `Arc`'s does.
    handles: AtomicU32,
    /// How many waiters were installed inline (mod 2^16), for [`inline_token`]. Written
    /// only under the `listeners` lock; it fills the word `state` and `handles` share.
    inline_generation: AtomicU16,
    value: UnsafeCell<Option<Outcome<T>>>,
    listeners: Mutex<Registry<T>>,
}

// SAFETY: `value` is the only field that is not already `Sync`. It is written once, by the
// single thread that won `transition_to_completing`, or on the run path the thread that
// won `transition_to_running` and holds the promise (1), and published by the `Release`
// store of FINISHED; it is read only after an `Acquire` load saw FINISHED (2), and never
// written again except through `&mut Inner` (3). So shared access only ever hands out `&T`
// to many threads (needs `T: Sync`) after moving a `T` in from another thread (needs
// `T: Send`).
unsafe impl<T: Send + Sync> Sync for Inner<T> {}
// SAFETY: `Inner` owns a `T` and may be dropped on any thread: `T: Send` suffices.
unsafe impl<T: Send> Send for Inner<T> {}

impl<T> Inner<T> {
    /// A pending state with `handles` future handles already counted.
    fn new(handles: u32) -> Self {
        Inner {
            state: StateCell::new(),
            handles: AtomicU32::new(handles),
            inline_generation: AtomicU16::new(0),
            value: UnsafeCell::new(None),
            listeners: Mutex::new(Registry::new()),
        }
    }

    /// The outcome, if FINISHED.
    fn outcome(&self) -> Option<&Outcome<T>> {
        if self.state.load() != state::FINISHED {
            return None;
        }
        // SAFETY: we saw FINISHED with Acquire, so the single write (before the Release
        // store of FINISHED) is visible and no write happens while `&self` lives (rule 2
        // and 3 of the `Sync` argument). The reference lives no longer than `&self`.
        self.value.with(|p| unsafe { (*p).as_ref() })
    }

    /// Registers a listener unless the state is terminal for it; `None` if it was.
    fn register<R>(
        &self,
        is_terminal: impl Fn(u8) -> bool,
        add: impl FnOnce(&mut Listeners<T>) -> R,
    ) -> Result<R, u8> {
        let mut r = sync::lock(&self.listeners);
        self.state.set_listeners_unless(is_terminal)?;
        Ok(add(r.listeners()))
    }

    /// Installs a waiter unless the future is complete for waiting: inline if that slot is
    /// free (no allocation), else in the box.
    /// Refused with the completion if the future is complete for waiting: a look, without
    /// the lock, in the usual case.
    fn install(&self, waiter: &Arc<dyn Waiter>) -> Result<WaiterKey, Completion> {
        let complete = |s| {
            self.completion_in(s)
                .expect("complete for wait has a completion")
        };
        // Complete already (terminal for waiting, so it stays so): no lock needed.
        let s = self.state.load();
        if state::is_complete_for_wait(s) {
            return Err(complete(s));
        }
        let mut r = sync::lock(&self.listeners);
        self.state
            .set_listeners_unless(state::is_complete_for_wait)
            .map_err(complete)?;
        if r.waiter.is_none() {
            // Relaxed: only read and written under the lock, which orders it.
            let generation = self.inline_generation.load(Ordering::Relaxed);
            self.inline_generation
                .store(generation.wrapping_add(1), Ordering::Relaxed);
            let key = WaiterKey {
                index: INLINE,
                token: inline_token(waiter, generation),
            };
            r.waiter = Some(waiter.clone());
            return Ok(key);
        }
        let w = waiter.clone();
        Ok(r.listeners()
            .insert(|token| Slot::Waiter { token, waiter: w }))
    }

    fn drain(&self, take: Take) -> Drained<T> {
        let mut r = sync::lock(&self.listeners);
        match take {
            // Nobody can register after a transition that takes everyone (it is terminal
            // for every kind of listener), so the box can go.
            Take::All => Drained::All {
                waiter: r.waiter.take(),
                more: r.more.take(),
            },
            Take::DoneListeners => match r.more.as_mut() {
                Some(l) => l.drain_part(take),
                None => Drained::All {
                    waiter: None,
                    more: None,
                },
            },
            Take::Waiters => {
                let waiter = r.waiter.take();
                match r.more.as_mut() {
                    None => Drained::All { waiter, more: None },
                    Some(l) => {
                        let mut d = l.drain_part(take);
                        if let (Drained::Part { waiters, .. }, Some(w)) = (&mut d, waiter) {
                            waiters.push(w);
                        }
                        d
                    }
                }
            }
        }
    }

    /// Removes a parked thread or a waiter by key (nothing if it already fired).
    fn remove(&self, key: WaiterKey) {
        let mut r = sync::lock(&self.listeners);
        if key.index == INLINE {
            // Relaxed: under the lock (see `install`); the current installation's generation
            // is the one before the counter.
            let generation = self
                .inline_generation
                .load(Ordering::Relaxed)
                .wrapping_sub(1);
            if r.waiter
                .as_ref()
                .is_some_and(|w| inline_token(w, generation) == key.token)
            {
                let w = r.waiter.take();
                // The waiter's own drop (if this was the last reference) runs unlocked.
                drop(r);
                drop(w);
            }
        } else if let Some(l) = r.more.as_mut() {
            l.remove(key);
        }
    }

    fn id(&self) -> FutureId {
        FutureId(self as *const Self as *const () as usize)
    }

    fn completion(&self) -> Option<Completion> {
        self.completion_in(self.state.load())
    }

    /// The completion of a future seen in state `s` (`None`: not complete for waiting).
    fn completion_in(&self, s: u8) -> Option<Completion> {
        match s {
            state::CANCELLED_NOTIFIED => Some(Completion::Cancelled),
            state::FINISHED => Some(match self.outcome() {
                Some(Ok(_)) => Completion::Succeeded,
                _ => Completion::Failed,
            }),
            _ => None,
        }
    }

    /// Tells everyone in `d`: wakes threads, notifies waiters, runs callbacks (each caught).
    fn tell(this: &Shared<T>, d: Drained<T>, completion: Option<Completion>) {
        let id = this.id();
        let callbacks = match d {
            Drained::All { waiter, more } => {
                if let (Some(w), Some(c)) = (waiter, completion) {
                    notify(&w, id, c);
                }
                let Some(l) = more else { return };
                let l = *l;
                for slot in std::iter::once(l.first).chain(l.rest) {
                    match slot {
                        Slot::Thread { thread, .. } => thread.unpark(),
                        Slot::Waiter { waiter, .. } => {
                            if let Some(c) = completion {
                                notify(&waiter, id, c);
                            }
                        }
                        Slot::Waker { waker, .. } => waker.wake(),
                        Slot::Free => {}
                    }
                }
                l.callbacks
            }
            Drained::Part {
                callbacks,
                threads,
                waiters,
                wakers,
            } => {
                for t in threads {
                    t.unpark();
                }
                for w in wakers {
                    w.wake();
                }
                if let Some(c) = completion {
                    for w in waiters {
                        notify(&w, id, c);
                    }
                }
                callbacks
            }
        };
        if !callbacks.is_empty() {
            run_callbacks(as_future(this), callbacks);
        }
    }

    /// RUNNING → FINISHED with `outcome`, for the thread that moved the future to RUNNING
    /// (`Promise::run_then`): it is the only one that can move it on (a running future
    /// cannot be cancelled, and the promise is its own), so it writes the value and
    /// publishes it in one atomic step, without claiming COMPLETING first.
    fn complete_running(this: &Shared<T>, outcome: Result<T, Error>) {
        // SAFETY: the caller moved the state to RUNNING and holds the promise, so no other
        // thread can move it on or write the value (rule 1 of the `Sync` argument, with
        // RUNNING as the claim); no reader reads the value before FINISHED, which the
        // transition below stores with Release.
        this.value
            .with_mut(|p| unsafe { *p = Some(outcome.map_err(Box::new)) });
        if this.state.transition_running_to_finished() {
            let d = this.drain(Take::All);
            let c = this.completion();
            Inner::tell(this, d, c);
        }
    }

    /// PENDING|RUNNING → COMPLETING → FINISHED with `outcome`; on refusal, the state found
    /// (the outcome is dropped).
    fn complete(this: &Shared<T>, outcome: Result<T, Error>) -> Result<(), u8> {
        match this.state.transition_to_completing() {
            Transition::Done { .. } => {}
            Transition::Refused(s) => return Err(s),
        }
        // SAFETY: we won COMPLETING, so we are the only writer; no reader reads before
        // FINISHED, which we store below with Release (rule 1 of the `Sync` argument).
        this.value
            .with_mut(|p| unsafe { *p = Some(outcome.map_err(Box::new)) });
        match this.state.transition_to_finished() {
            Transition::Done { notify: true } => {
                let d = this.drain(Take::All);
                let c = this.completion();
                Inner::tell(this, d, c);
            }
            Transition::Done { notify: false } => {}
            Transition::Refused(_) => unreachable!("only the COMPLETING thread finishes"),
        }
        Ok(())
    }
}

/// The `InvalidState` error of setting the outcome of a future found in state `s`.
fn set_refused(s: u8) -> InvalidState {
    let word = match s {
        state::CANCELLED | state::CANCELLED_NOTIFIED => "cancelled",
        state::FINISHED => "finished",
        _ => "running",
    };
    InvalidState::new(format!(
        "{}: cannot set the outcome of a {word} future",
        raw_state_name(s)
    ))
}

fn raw_state_name(s: u8) -> &'static str {
    match s {
        state::PENDING => "PENDING",
        state::RUNNING | state::COMPLETING => "RUNNING",
        state::CANCELLED => "CANCELLED",
        state::CANCELLED_NOTIFIED => "CANCELLED_AND_NOTIFIED",
        _ => "FINISHED",
    }
}

/// Views the promise's `Arc` as a `&Future` to hand to callbacks, without counting it as a
/// handle.
fn as_future<T>(arc: &Shared<T>) -> &Future<T> {
    // SAFETY: `Future<T>` is `#[repr(transparent)]` over `Shared<T>`, so the two have the
    // same layout; the reference borrows `arc` and is never dropped as a `Future` (so
    // `handles` is not decremented for a handle that was never counted).
    unsafe { &*(arc as *const Shared<T> as *const Future<T>) }
}

sync::thread_local! {
    /// The futures whose callbacks this thread is running, innermost last (a callback may
    /// complete another future and so run its callbacks); see `try_into_result`.
    static IN_CALLBACKS_OF: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// True if this thread is running the callbacks of future `id` (so it holds that future's
/// promise, further up its stack).
fn in_callbacks_of(id: usize) -> bool {
    IN_CALLBACKS_OF.with(|c| c.borrow().contains(&id))
}

fn run_callbacks<T>(future: &Future<T>, callbacks: Vec<Callback<T>>) {
    IN_CALLBACKS_OF.with(|c| c.borrow_mut().push(future.id().0));
    for cb in callbacks {
        // Never unwinds: `run_callback` catches the callback's panic.
        run_callback(future, cb);
    }
    IN_CALLBACKS_OF.with(|c| c.borrow_mut().pop());
}

fn run_callback<T>(future: &Future<T>, cb: Callback<T>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| cb(future))) {
        // Python logs "exception calling callback for <future>" and carries on.
        log_caught_panic(
            format_args!("exception calling callback for {future:?}"),
            payload,
        );
    }
}

/// Tells a waiter; a panic in its `notify` (user code: `Waiter` is a public trait) is caught
/// and logged, so the other listeners are still told and the completing thread (a pool's
/// worker) does not unwind.
fn notify(waiter: &Arc<dyn Waiter>, id: FutureId, completion: Completion) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| waiter.notify(id, completion))) {
        log_caught_panic(format_args!("a waiter's notify panicked"), payload);
    }
}

/// A handle to one result that an executor will produce: Python's `concurrent.futures.Future`.
///
/// Cheap to clone (an `Arc`); `Send + Sync` when `T: Send + Sync`. Two handles are equal when
/// they refer to the same future. This is a *blocking* handle, not a `std::future::Future`.
///
/// # Examples
///
/// ```
/// use cfutures_core::{pending, State};
///
/// let (promise, future) = pending::<u32>();
/// assert_eq!(future.state(), State::Pending);
/// let worker = std::thread::spawn(move || {
///     if promise.set_running_or_notify_cancel() {
///         promise.set_result(42).unwrap();
///     }
/// });
/// assert_eq!(*future.result().unwrap(), 42);
/// worker.join().unwrap();
/// ```
#[repr(transparent)]
pub struct Future<T> {
    inner: Shared<T>,
}

impl<T> Future<T> {
    fn from_inner(inner: Shared<T>) -> Self {
        // Relaxed: a new handle needs no ordering, like `Arc::clone`.
        if inner.handles.fetch_add(1, Ordering::Relaxed) > u32::MAX / 2 {
            // As `Arc::clone` on overflow: counting on would let `into_result` move the
            // value out from under live handles.
            std::process::abort();
        }
        Future { inner }
    }

    /// A future that already holds `value`.
    pub fn ready(value: T) -> Self {
        let (p, f) = pending();
        let _ = p.set_result(value);
        f
    }

    /// A future that already failed with `error`.
    pub fn failed(error: TaskError) -> Self {
        let (p, f) = pending();
        let _ = p.set_exception(error);
        f
    }

    /// This future's identity (stable while any handle lives).
    pub fn id(&self) -> FutureId {
        self.inner.id()
    }

    /// The current state.
    pub fn state(&self) -> State {
        match self.inner.state.load() {
            state::PENDING => State::Pending,
            state::RUNNING | state::COMPLETING => State::Running,
            state::CANCELLED | state::CANCELLED_NOTIFIED => State::Cancelled,
            _ => State::Finished,
        }
    }

    /// Cancels the future if it has not started; true if it is (now or already) cancelled.
    ///
    /// A running or finished future cannot be cancelled: `false`. On success, threads
    /// blocked in `result()` wake with [`Error::Cancelled`] and the done-callbacks run, in
    /// this thread. `wait` / `as_completed` see the future as done only once its executor
    /// notices the cancellation (see [`Promise::set_running_or_notify_cancel`]).
    pub fn cancel(&self) -> bool {
        match self.inner.state.transition_to_cancelled() {
            Transition::Done { notify } => {
                if notify {
                    let d = self.inner.drain(Take::DoneListeners);
                    Inner::tell(&self.inner, d, None);
                }
                true
            }
            Transition::Refused(s) => matches!(s, state::CANCELLED | state::CANCELLED_NOTIFIED),
        }
    }

    /// True if the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.state() == State::Cancelled
    }

    /// True if the future is running.
    pub fn running(&self) -> bool {
        self.state() == State::Running
    }

    /// True if the future is cancelled or finished.
    pub fn done(&self) -> bool {
        state::is_done(self.inner.state.load())
    }

    /// Blocks until the future is done; see [`wait_deadline`](Self::wait_deadline).
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Blocks until the future is done or `timeout` passes; true if done.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(blocking::deadline_after(timeout))
    }

    /// Blocks until the future is done or `deadline` (`None`: no deadline); true if done.
    ///
    /// Spins briefly, yields, then parks (see [`crate::blocking`]). False, without parking,
    /// also if the wait would close a wait cycle ([`Error::Deadlock`]: `result` and
    /// `exception` say so, and [`Waitable::try_wait_deadline`] returns it).
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        self.wait_checked(deadline).unwrap_or(false)
    }

    /// [`wait_deadline`](Self::wait_deadline), or the cycle this wait would close.
    fn wait_checked(&self, deadline: Option<Instant>) -> Result<bool, Deadlock> {
        let inner = &self.inner;
        let key = Cell::new(None);
        blocking::block_on(
            deadline,
            blocking::WaitFor::One(self.id()),
            || self.done(),
            || {
                let me = sync::current();
                match inner.register(state::is_done, |l| {
                    l.insert(|token| Slot::Thread { token, thread: me })
                }) {
                    Ok(k) => {
                        key.set(Some(k));
                        true
                    }
                    Err(_) => false,
                }
            },
            || {
                if let Some(k) = key.get() {
                    if !self.done() {
                        inner.remove(k);
                    }
                }
            },
        )
    }

    /// The outcome of a done future (value, or why not).
    fn done_outcome(&self) -> Result<&T, Error> {
        match self.inner.state.load() {
            state::CANCELLED | state::CANCELLED_NOTIFIED => Err(Error::Cancelled),
            state::FINISHED => match self.inner.outcome() {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err((**e).clone()),
                None => unreachable!("FINISHED always has an outcome"),
            },
            _ => Err(Error::Timeout),
        }
    }

    /// Waits for the result (Python: `result()`); the value lives as long as this handle.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] if cancelled, [`Error::Failed`] if the task failed,
    /// [`Error::Broken`] if its executor broke or dropped it, [`Error::Deadlock`] (at once)
    /// if this thread runs a task that this future, directly or through other waiting
    /// tasks, waits on.
    pub fn result(&self) -> Result<&T, Error> {
        self.result_deadline(None)
    }

    /// [`result`](Self::result) with a timeout: [`Error::Timeout`] if not done in time (a zero
    /// timeout does not wait).
    pub fn result_timeout(&self, timeout: Duration) -> Result<&T, Error> {
        self.result_deadline(blocking::deadline_after(timeout))
    }

    /// [`result`](Self::result) with a deadline (`None`: none).
    pub fn result_deadline(&self, deadline: Option<Instant>) -> Result<&T, Error> {
        // Already finished (the usual case when collecting results): one Acquire load, no
        // wait machinery.
        if let Some(Ok(v)) = self.inner.outcome() {
            return Ok(v);
        }
        self.wait_checked(deadline)?;
        self.done_outcome()
    }

    /// Waits, then gives the task's failure (Python: `exception()`): `Ok(None)` if the task
    /// succeeded, `Ok(Some(e))` if it failed.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`], [`Error::Broken`] (the task never ran to an outcome),
    /// [`Error::Deadlock`] (as [`result`](Self::result)).
    pub fn exception(&self) -> Result<Option<TaskError>, Error> {
        self.exception_deadline(None)
    }

    /// [`exception`](Self::exception) with a timeout ([`Error::Timeout`]).
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<TaskError>, Error> {
        self.exception_deadline(blocking::deadline_after(timeout))
    }

    /// [`exception`](Self::exception) with a deadline (`None`: none).
    pub fn exception_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<TaskError>, Error> {
        self.wait_checked(deadline)?;
        match self.done_outcome() {
            Ok(_) => Ok(None),
            Err(Error::Failed(e)) => Ok(Some(e)),
            Err(e) => Err(e),
        }
    }

    /// Runs `callback` with this future once it is done (finished or cancelled); at once, in
    /// this thread, if it already is.
    ///
    /// Callbacks run in registration order, in the thread that completes the future. A
    /// callback that panics is caught and reported (through `log` with the `log` feature,
    /// else on stderr: see [`diag`](crate::diag)); the future and the other callbacks are
    /// unaffected.
    pub fn add_done_callback(&self, callback: impl FnOnce(&Future<T>) + Send + 'static) {
        let mut cb = Some(callback);
        let registered = self.inner.register(state::is_done, |l| {
            l.callbacks.push(Box::new(cb.take().expect("taken once")));
        });
        if registered.is_err() {
            run_callback(self, Box::new(cb.take().expect("not registered")));
        }
    }

    /// Waits, then moves the value out if this is the only handle (no `T: Clone` needed).
    ///
    /// # Errors
    ///
    /// As [`result`](Self::result); and [`Error::InvalidState`] if other handles to this
    /// future are alive (use [`try_into_result`](Self::try_into_result) to get the handle
    /// back instead).
    pub fn into_result(self) -> Result<T, Error> {
        match self.try_into_result() {
            Ok(r) => r,
            Err(_) => Err(Error::InvalidState(InvalidState::new(
                "into_result: other handles to this future are alive",
            ))),
        }
    }

    /// Waits, then moves the outcome out if this is the only handle; gives the handle back
    /// if others are alive.
    ///
    /// If the executor is still finishing up (running done-callbacks) this waits for it. Inside
    /// one of this future's own done-callbacks that wait could never end, so there the handle
    /// is given back.
    pub fn try_into_result(mut self) -> Result<Result<T, Error>, Self> {
        if let Err(cycle) = self.wait_checked(None) {
            return Ok(Err(Error::Deadlock(cycle)));
        }
        if self.inner.state.load() != state::FINISHED {
            return Ok(Err(Error::Cancelled));
        }
        if in_callbacks_of(self.id().0) {
            return Err(self);
        }
        let mut backoff = Backoff::new();
        let mut sleep = Duration::from_micros(10);
        loop {
            // Acquire: pairs with the Release decrement in `Drop`.
            if self.inner.handles.load(Ordering::Acquire) > 1 {
                return Err(self);
            }
            if let Some(inner) = StateArc::get_mut(&mut self.inner) {
                let out = inner.value.get_mut().take();
                return Ok(out.expect("FINISHED always has an outcome").map_err(|e| *e));
            }
            // The promise is still telling its listeners (waking threads, running
            // callbacks); it lets go of the state when done. Callbacks may take long: after
            // spinning and yielding, sleep (growing to 1 ms) rather than burn a CPU.
            if !backoff.is_completed() {
                backoff.snooze();
            } else if cfg!(loom) {
                sync::yield_now();
            } else {
                std::thread::sleep(sleep);
                sleep = (sleep * 2).min(Duration::from_millis(1));
            }
        }
    }

    /// A type-erased handle, for waiting on futures of different types together.
    pub fn erase(&self) -> crate::AnyFuture
    where
        T: Send + Sync + 'static,
    {
        crate::AnyFuture::new(self.clone())
    }
}

/// What the async bridge (`crate::async_bridge`) needs from a future: a waker slot kept
/// with the parked threads (woken when the future is *done*, as `result()` is), and the
/// outcome without blocking.
impl<T> Future<T> {
    /// Registers `waker` to be woken once the future is done, replacing the registration
    /// `old` (from an earlier poll) in place. `None` (and nothing registered) if the future
    /// is already done. The replaced waker is dropped after the lock is released.
    ///
    /// Race-free as the parked threads' registration: under the listener lock, the listener
    /// bit is set only if the state is not done (see `crate::state`), so a completion either
    /// finds this waker or this call sees the completion.
    pub(crate) fn register_waker(
        &self,
        old: Option<WaiterKey>,
        waker: &Waker,
    ) -> Option<WaiterKey> {
        let mut r = sync::lock(&self.inner.listeners);
        if self
            .inner
            .state
            .set_listeners_unless(state::is_done)
            .is_err()
        {
            return None;
        }
        let l = r.listeners();
        if let Some(k) = old {
            if let Some(Slot::Waker { token, waker: w }) = l.slot_mut(k.index.get() - 1) {
                if *token == k.token {
                    let previous = mem::replace(w, waker.clone());
                    drop(r);
                    drop(previous);
                    return Some(k);
                }
            }
            // The old registration fired (the future completed and was reset? never: done
            // is terminal) or was removed: register anew.
        }
        Some(l.insert(|token| Slot::Waker {
            token,
            waker: waker.clone(),
        }))
    }

    /// Removes a waker registration (nothing if it already fired).
    pub(crate) fn remove_waker(&self, key: WaiterKey) {
        self.inner.remove(key);
    }

    /// The outcome of a done future, without waiting (`Err(Timeout)` if not done).
    pub(crate) fn outcome_now(&self) -> Result<&T, Error> {
        self.done_outcome()
    }

    /// Moves the value out without waiting, if the future finished, this is the only handle
    /// and the promise has let go of the state; `None` otherwise (the caller then clones).
    pub(crate) fn try_take(&mut self) -> Option<Result<T, Error>> {
        if self.inner.state.load() != state::FINISHED {
            return None;
        }
        // Acquire: pairs with the Release decrement in `Drop` (as in `try_into_result`).
        if self.inner.handles.load(Ordering::Acquire) > 1 {
            return None;
        }
        let inner = StateArc::get_mut(&mut self.inner)?;
        let out = inner.value.get_mut().take()?;
        Some(out.map_err(|e| *e))
    }
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future::from_inner(self.inner.clone())
    }
}

impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        // Release: orders this handle's reads before `try_into_result` moves the value out.
        self.inner.handles.fetch_sub(1, Ordering::Release);
    }
}

impl<T> PartialEq for Future<T> {
    fn eq(&self, other: &Self) -> bool {
        StateArc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T> Eq for Future<T> {}

impl<T> Hash for Future<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state)
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        let mut d = f.debug_struct("Future");
        d.field("id", &format_args!("{:#x}", self.id().0));
        d.field("state", &state);
        if let Some(o) = self.inner.outcome() {
            match o {
                Ok(_) => d.field("returned", &std::any::type_name::<T>()),
                Err(e) => d.field("raised", e),
            };
        }
        d.finish()
    }
}

impl<T: Send + Sync + 'static> Waitable for Future<T> {
    fn id(&self) -> FutureId {
        self.inner.id()
    }

    fn state(&self) -> State {
        Future::state(self)
    }

    fn completion(&self) -> Option<Completion> {
        self.inner.completion()
    }

    fn install_waiter(&self, waiter: &Arc<dyn Waiter>) -> Result<WaiterKey, Completion> {
        self.inner.install(waiter)
    }

    fn remove_waiter(&self, key: WaiterKey) {
        self.inner.remove(key);
    }

    fn cancel(&self) -> bool {
        Future::cancel(self)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        Future::wait_deadline(self, deadline)
    }

    fn try_wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, Deadlock> {
        self.wait_checked(deadline)
    }
}

/// The write side of a [`Future`]: what an executor holds while it runs the task.
///
/// Made with [`Promise::new`] or [`pending`]. Setting the outcome consumes the promise, so it
/// happens at most once.
///
/// `Promise<T>` is `Send` (can move to a worker thread) only when `T: Send + Sync`: its
/// future hands out `&T` to every thread that holds a handle. An executor generic over its
/// tasks therefore bounds `T::Output: Send + Sync + 'static` (see [`Submit`](crate::Submit)
/// for the `where` clause to copy). **A promise dropped without an outcome resolves its future with
/// [`Error::Broken`]**, so no future can wait forever on an executor that lost its task; a
/// dropped promise whose future was cancelled marks the cancellation as noticed.
///
/// # Examples
///
/// ```
/// use cfutures_core::pending;
///
/// let (promise, future) = pending::<u32>();
/// drop(promise); // the executor lost the task
/// assert!(future.result().unwrap_err().is_broken());
/// ```
///
/// Setting twice does not compile: the first set consumes the promise.
///
/// ```compile_fail,E0382
/// let (promise, _future) = cfutures_core::pending::<u32>();
/// promise.set_result(1).unwrap();
/// promise.set_result(2).unwrap(); // use of moved value
/// ```
pub struct Promise<T> {
    inner: Shared<T>,
}

impl<T> Promise<T> {
    /// A new promise with a pending future; get handles with [`future`](Self::future).
    pub fn new() -> Self {
        Promise {
            inner: StateArc::new(Inner::new(0)),
        }
    }

    /// A new handle to this promise's future.
    pub fn future(&self) -> Future<T> {
        Future::from_inner(self.inner.clone())
    }

    /// The state of the future.
    pub fn state(&self) -> State {
        as_future(&self.inner).state()
    }

    /// True if the future was cancelled (the executor need not run the task).
    pub fn is_cancelled(&self) -> bool {
        as_future(&self.inner).cancelled()
    }

    /// Marks the future running, or notices its cancellation (Python:
    /// `set_running_or_notify_cancel`).
    ///
    /// Returns `true` if the executor should run the task (PENDING → RUNNING). Returns
    /// `false` if the future was cancelled: it becomes *cancelled and notified*, and
    /// `wait` / `as_completed` now count it as done. Also `false` (and nothing changes) if
    /// the future was already running or finished: that is an executor bug, and running the
    /// task again would be wrong.
    pub fn set_running_or_notify_cancel(&self) -> bool {
        match self.inner.state.transition_to_running() {
            Transition::Done { .. } => true,
            Transition::Refused(state::CANCELLED) => {
                self.notify_cancel();
                false
            }
            Transition::Refused(_) => false,
        }
    }

    fn notify_cancel(&self) {
        if let Transition::Done { notify: true } = self.inner.state.transition_to_notified() {
            let d = self.inner.drain(Take::Waiters);
            Inner::tell(&self.inner, d, Some(Completion::Cancelled));
        }
    }

    /// Completes the future with `value`; its waiters wake and its callbacks run, in this
    /// thread.
    ///
    /// # Errors
    ///
    /// [`InvalidState`] if the future was cancelled (the value is dropped).
    pub fn set_result(self, value: T) -> Result<(), InvalidState> {
        Inner::complete(&self.inner, Ok(value)).map_err(set_refused)
    }

    /// Fails the future with `error` (Python: `set_exception`).
    ///
    /// # Errors
    ///
    /// [`InvalidState`] if the future was cancelled.
    pub fn set_exception(self, error: TaskError) -> Result<(), InvalidState> {
        Inner::complete(&self.inner, Err(Error::Failed(error))).map_err(set_refused)
    }

    /// Fails the future because the executor broke (Python: `BrokenThreadPool`,
    /// `BrokenProcessPool`).
    ///
    /// # Errors
    ///
    /// [`InvalidState`] if the future was cancelled.
    pub fn set_broken(self, broken: Broken) -> Result<(), InvalidState> {
        Inner::complete(&self.inner, Err(Error::Broken(broken))).map_err(set_refused)
    }

    /// Ends a *running* future as cancelled: for executors that can stop a task that already
    /// started (the process pool kills the worker running it). Threads blocked in `result()`
    /// wake with [`Error::Cancelled`], waiters count it as done (cancelled and notified), and
    /// the done-callbacks run, in this thread.
    ///
    /// # Errors
    ///
    /// [`InvalidState`] if the future is not running (pending, cancelled or finished).
    pub fn set_cancelled(self) -> Result<(), InvalidState> {
        match self.inner.state.transition_running_to_cancelled() {
            Transition::Done { notify } => {
                if notify {
                    let d = self.inner.drain(Take::All);
                    Inner::tell(&self.inner, d, Some(Completion::Cancelled));
                }
                Ok(())
            }
            Transition::Refused(s) => Err(InvalidState::new(format!(
                "{}: only a running future can be cancelled by its executor",
                raw_state_name(s)
            ))),
        }
    }

    /// Sets the outcome from a task's `Result`.
    ///
    /// # Errors
    ///
    /// [`InvalidState`] if the future was cancelled.
    pub fn set_outcome(self, outcome: Result<T, TaskError>) -> Result<(), InvalidState> {
        Inner::complete(&self.inner, outcome.map_err(Error::Failed)).map_err(set_refused)
    }

    /// Runs `task` for this promise, the way every executor should: skip it if the future
    /// was cancelled (noticing the cancellation, and dropping the task with
    /// [`discard_task`](crate::discard_task)), otherwise mark it running, run it catching
    /// panics (with [`panics::catch`](crate::panics::catch): the error has the panic's
    /// message and location), and set its outcome. Returns whether the task ran.
    pub fn run<K: Task<Output = T>>(self, task: K) -> bool {
        self.run_then(task, || ())
    }

    /// [`run`](Self::run), calling `before_publish` once the task has run and before its
    /// outcome becomes visible: a pool can update its own bookkeeping there (count the
    /// worker idle) before a thread woken by the result acts on it.
    pub fn run_then<K: Task<Output = T>>(self, task: K, before_publish: impl FnOnce()) -> bool {
        struct Then<F>(Option<F>);
        impl<F: FnOnce()> RunHooks for Then<F> {
            #[inline]
            fn before_publish(&mut self, _failure: Option<&TaskError>) {
                if let Some(f) = self.0.take() {
                    f();
                }
            }
        }
        self.run_with(task, &mut Then(Some(before_publish)))
    }

    /// The identity of this promise's future ([`Future::id`]), without making a handle.
    pub fn id(&self) -> FutureId {
        self.inner.id()
    }

    /// [`run`](Self::run), telling `hooks` when the task starts (its future is RUNNING) and,
    /// once it has run, how it ended, before its outcome becomes visible: for an executor's
    /// events and statistics. Nothing is called for a cancelled future (the task is dropped
    /// unrun and `false` returned).
    pub fn run_with<K, H>(self, task: K, hooks: &mut H) -> bool
    where
        K: Task<Output = T>,
        H: RunHooks + ?Sized,
    {
        if !self.set_running_or_notify_cancel() {
            crate::discard_task(task);
            return false;
        }
        hooks.started();
        // While the task runs, this thread counts as running the future, for deadlock
        // detection (a thread-local write: see `crate::deadlock`).
        let frame = Frame::new(self.inner.id());
        let running = frame.enter();
        // A panic becomes the task's failure, with its location (see `crate::panics`).
        let out = crate::panics::catch(|| task.run()).and_then(|r| r);
        // Done-callbacks run below, in this thread: they are not the task.
        running.release();
        hooks.before_publish(out.as_ref().err());
        // Publishing runs no user code unguarded (callbacks and waiters are caught one by
        // one) but for one thing: when every handle is gone, the promise drops the last
        // reference, and with it the value, whose `Drop` may panic. Catch that too, so that
        // no task can unwind into the executor's thread.
        let published = panic::catch_unwind(AssertUnwindSafe(move || {
            // We moved the future to RUNNING above, and a running future cannot be
            // cancelled: only we can finish it (one atomic step, no claim).
            Inner::complete_running(&self.inner, out.map_err(Error::Failed));
            // The promise's drop sees FINISHED and does nothing more.
            drop(self);
        }));
        if let Err(payload) = published {
            log_caught_panic(
                format_args!("a task's result panicked when dropped"),
                payload,
            );
        }
        true
    }
}

impl<T> Default for Promise<T> {
    fn default() -> Self {
        Promise::new()
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        let refused = match self.inner.state.load() {
            state::PENDING | state::RUNNING => {
                Inner::complete(&self.inner, Err(Error::Broken(Broken::promise_dropped()))).err()
            }
            s => Some(s),
        };
        // Cancelled (perhaps just now, between the load and the completion attempt): the
        // executor is gone, so the cancellation counts as noticed.
        if refused == Some(state::CANCELLED) {
            self.notify_cancel();
        }
    }
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Promise")
            .field("future", as_future(&self.inner))
            .finish()
    }
}

/// What [`Promise::run_with`] tells an executor about a run (for its events and
/// statistics). Both methods run on the thread that runs the task, and have empty defaults.
pub trait RunHooks {
    /// The future is now RUNNING and the task is about to run.
    #[inline]
    fn started(&mut self) {}
    /// The task has run; `failure` is its error if it failed (it panicked, or returned an
    /// error). Called before the outcome becomes visible to the future's waiters.
    #[inline]
    fn before_publish(&mut self, failure: Option<&TaskError>) {
        let _ = failure;
    }
}

/// A new promise and a handle to its future (Python: `Future()` plus the executor's side).
pub fn pending<T>() -> (Promise<T>, Future<T>) {
    // The handle is counted at creation: one atomic increment less than
    // `Promise::new().future()` on every submit.
    // So is the state's second reference (`StateArc::pair`).
    let (inner, handle) = StateArc::pair(Inner::new(1));
    (Promise { inner }, Future { inner: handle })
}

#[cfg(all(test, not(loom)))]
mod layout {
    /// The shared state of a `Future<u64>` (with its counter and slab pointer) takes an
    /// 80-byte slot: a 1 KiB slab holds 12 of them.
    #[test]
    fn future_state_fits_an_80_byte_slot() {
        let size = std::mem::size_of::<super::Inner<u64>>() + 2 * std::mem::size_of::<usize>();
        assert!(size <= 80, "{size} bytes");
    }
}
