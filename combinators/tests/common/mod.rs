//! Shared test helpers: a small thread-pool executor (a fixed set of std threads over a
//! crossbeam channel), futures in each of Python's states, and bounded waits.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cfutures_core::{pending, Executor, Future, Promise, Submit, SubmitError, Task, TaskError};
use crossbeam_channel::{Receiver, Sender};

/// Panics whose message starts with this are planned: keep them off stderr.
pub const PLANNED: &str = "planned failure";

/// Installs (once) a panic hook that prints every panic but the planned ones.
pub fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.starts_with(PLANNED) {
                default(info);
            }
        }));
    });
}

/// Long enough that a correct test never hits it; a bug fails instead of hanging.
pub const LONG: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads taking tasks from one channel (FIFO). Test-only stand-in
/// for `cfutures-thread-pool`: it implements the core traits, nothing more.
pub struct Threads {
    tx: Mutex<Option<Sender<Job>>>,
    rx: Receiver<Job>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Threads {
    pub fn new(n: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let workers = (0..n)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    for job in rx {
                        job();
                    }
                })
            })
            .collect();
        Threads {
            tx: Mutex::new(Some(tx)),
            rx,
            workers: Mutex::new(workers),
        }
    }
}

impl Executor for Threads {
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.tx.lock().unwrap().take();
        if cancel_futures {
            // Dropping a queued job drops its promise: a cancelled future is then noticed.
            while let Ok(job) = self.rx.try_recv() {
                drop(job);
            }
        }
        if wait {
            for w in self.workers.lock().unwrap().drain(..) {
                w.join().unwrap();
            }
        }
    }
    fn is_shutdown(&self) -> bool {
        self.tx.lock().unwrap().is_none()
    }
}

impl<T> Submit<T> for Threads
where
    T: Task + Send + 'static,
    T::Output: Send + Sync + 'static,
{
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        let guard = self.tx.lock().unwrap();
        let tx = guard.as_ref().ok_or(SubmitError::Shutdown)?;
        let promise = Promise::new();
        let future = promise.future();
        tx.send(Box::new(move || {
            promise.run(task);
        }))
        .map_err(|_| SubmitError::Shutdown)?;
        Ok(future)
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// A latch: `open()` once, `wait()` returns after (bounded by `LONG`).
#[derive(Clone, Default)]
pub struct Latch(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Latch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    pub fn wait(&self) {
        let g = self.0 .0.lock().unwrap();
        let (g, r) = self
            .0
             .1
            .wait_timeout_while(g, LONG, |open| !*open)
            .unwrap();
        assert!(*g && !r.timed_out(), "latch never opened");
    }
}

// Python's module-level fixtures (`Lib/test/test_concurrent_futures/util.py`):
// PENDING_FUTURE, RUNNING_FUTURE, CANCELLED_FUTURE, CANCELLED_AND_NOTIFIED_FUTURE,
// EXCEPTION_FUTURE, SUCCESSFUL_FUTURE. Each returns the future and the promise that keeps it
// in its state (dropping a pending promise would fail the future with `Broken`).

pub fn pending_future() -> (Future<i32>, Promise<i32>) {
    let (p, f) = pending();
    (f, p)
}

pub fn running_future() -> (Future<i32>, Promise<i32>) {
    let (p, f) = pending();
    assert!(p.set_running_or_notify_cancel());
    (f, p)
}

pub fn cancelled_future() -> (Future<i32>, Promise<i32>) {
    let (p, f) = pending();
    assert!(f.cancel());
    (f, p)
}

pub fn cancelled_and_notified_future() -> Future<i32> {
    let (p, f) = pending::<i32>();
    assert!(f.cancel());
    assert!(!p.set_running_or_notify_cancel());
    f
}

pub fn exception_future() -> Future<i32> {
    Future::failed(TaskError::msg("OSError"))
}

pub fn successful_future() -> Future<i32> {
    Future::ready(42)
}
