//! Panics in tasks: where they happened, and whether the panic hook prints them.
//!
//! A task's panic is caught by its executor and stored in its future as
//! [`TaskError::Panic`], with the message **and the location** (`file:line:column`), so
//! every pool reports a panic the same way. Rust gives the location only to the panic hook,
//! so cfutures installs one ([`install_hook`]), once per process, *chaining to the hook that
//! was there before*: it records the location of each panic for the thread that panicked,
//! then calls the previous hook as usual.
//!
//! **Is a task's panic printed?** By default, yes: the previous hook (Rust's default prints
//! `thread '…' panicked at file:line:column: message` on standard error) runs for every
//! panic, as for any thread. Python prints nothing until `result()` is called; to get that,
//! a pool marks its worker threads quiet ([`set_quiet`]; the thread pool's
//! `Builder::quiet_panics(true)`), and the hook then skips the previous hook for panics
//! *inside a task* on those threads. The panic still fails the task's future with its
//! message and location; panics outside tasks (a pool's own bug, an initializer) are
//! printed as usual.
//!
//! If the program replaces the panic hook after cfutures installed its own
//! ([`std::panic::set_hook`]), locations are no longer recorded (the error has the message
//! only) and quiet threads print again: the program's hook decides.
//!
//! An executor of your own gets all of this by running tasks with
//! [`Promise::run`](crate::Promise::run), which uses [`catch`].

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::{panic_message, TaskError};

thread_local! {
    /// This thread's quiet flag (set by pools on their workers) and how many tasks it is
    /// inside (a task may run another inline).
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static IN_TASK: Cell<u32> = const { Cell::new(0) };
    /// Where this thread last panicked, as the hook saw it; taken by [`task_error`].
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs cfutures' panic hook, once per process (later calls do nothing); it wraps the
/// hook in place at the first call. Executors call it when they start; [`catch`] calls it
/// too. Does nothing while this thread is panicking (the hook cannot be changed then).
pub fn install_hook() {
    if INSTALL.is_completed() || std::thread::panicking() {
        return;
    }
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| l.to_string());
            let _ = LOCATION.try_with(|l| *l.borrow_mut() = location);
            let quiet = QUIET.try_with(Cell::get).unwrap_or(false)
                && IN_TASK.try_with(Cell::get).unwrap_or(0) > 0;
            if !quiet {
                previous(info);
            }
        }));
    });
}

/// Marks this thread's task panics quiet (`true`: the previous panic hook does not run for
/// a panic inside [`catch`]) or printed (`false`, the default). Pools call it in their
/// worker threads when asked to be quiet.
pub fn set_quiet(quiet: bool) {
    QUIET.with(|q| q.set(quiet));
}

/// True if this thread's task panics are quiet (see [`set_quiet`]).
pub fn is_quiet() -> bool {
    QUIET.with(Cell::get)
}

/// Runs a task's code, turning a panic into [`TaskError::Panic`] with its message and
/// location. While `f` runs, this thread counts as inside a task (for [`set_quiet`]).
///
/// # Errors
///
/// The panic, as a [`TaskError::Panic`].
///
/// # Examples
///
/// ```
/// use cfutures_core::panics;
///
/// let err = panics::catch(|| -> u32 { panic!("boom") }).unwrap_err();
/// assert_eq!(err.panic_message(), Some("boom"));
/// assert!(err.to_string().contains(file!())); // "task panicked at core/src/…:N:M: boom"
/// ```
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, TaskError> {
    install_hook();
    let _task = InTask::enter();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(task_error)
}

/// The [`TaskError::Panic`] of a payload just caught on this thread, with the location the
/// hook recorded for it (none if the hook is not installed or was replaced).
///
/// Call it on the thread that panicked, right after [`std::panic::catch_unwind`] returned
/// the payload (a payload from elsewhere, such as a joined thread's, gets no location: use
/// [`TaskError::from_panic`]).
pub fn task_error(payload: Box<dyn Any + Send>) -> TaskError {
    let e = TaskError::Panic {
        message: panic_message(&*payload).into(),
        location: take_location().map(Into::into),
    };
    drop_payload(payload);
    e
}

/// Drops a caught panic's payload, whose own `Drop` may panic too: each such panic is
/// caught and its payload dropped the same way, a few levels deep, then leaked rather than
/// dropped. Executors drop every payload they
/// catch this way, so that no unwind can escape the thread that runs tasks.
pub fn drop_payload(payload: Box<dyn Any + Send>) {
    crate::error::drop_payload(payload)
}

/// Takes the location the hook recorded for this thread's last panic.
fn take_location() -> Option<String> {
    LOCATION.try_with(|l| l.borrow_mut().take()).ok().flatten()
}

/// Counts this thread as inside a task while it lives; clears a stale recorded location on
/// entry (a panic the task caught itself must not be blamed on a later one that bypassed
/// the hook, as `resume_unwind` does).
struct InTask;

impl InTask {
    fn enter() -> Self {
        IN_TASK.with(|n| n.set(n.get() + 1));
        let _ = LOCATION.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut() {
                *l = None;
            }
        });
        InTask
    }
}

impl Drop for InTask {
    fn drop(&mut self) {
        IN_TASK.with(|n| n.set(n.get() - 1));
    }
}
