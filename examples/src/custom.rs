//! Scenario 10: a custom executor in ~35 lines that every combinator accepts.
//!
//! [`ThreadPerTask`] starts one OS thread per task — the simplest executor that runs
//! tasks concurrently. It implements core's two traits, [`Executor`] (lifecycle) and
//! [`Submit`] (what it accepts), and runs each task with [`Promise::run`], which handles
//! cancellation, catches panics and sets the outcome. That is all `wait`, `as_completed`
//! and `map` need.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use cfutures_combinators::{as_completed, wait, ExecutorExt, ReturnWhen};
use cfutures_core::{Executor, Future, Promise, Submit, SubmitError, Task};

use crate::report::{BoxError, Out};

/// An executor that runs every task on a new thread of its own.
#[derive(Debug, Default)]
pub struct ThreadPerTask {
    shut: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Executor for ThreadPerTask {
    fn shutdown(&self, wait: bool, _cancel_futures: bool) {
        let threads = {
            let mut threads = self.threads.lock().unwrap();
            // Relaxed: set under the lock that `submit` checks it under.
            self.shut.store(true, Ordering::Relaxed);
            std::mem::take(&mut *threads)
        };
        if wait {
            threads.into_iter().for_each(|t| drop(t.join()));
        }
    }
    fn is_shutdown(&self) -> bool {
        self.shut.load(Ordering::Relaxed)
    }
}

// The two bounds every executor that runs tasks on other threads needs: the task moves to
// the worker thread, and so does the `Promise<T::Output>`, which is `Send` only when the
// output is `Send + Sync` (its future hands out `&T::Output` to any thread).
impl<T> Submit<T> for ThreadPerTask
where
    T: Task + Send + 'static,
    T::Output: Send + Sync + 'static,
{
    fn submit(&self, task: T) -> Result<Future<T::Output>, SubmitError> {
        let mut threads = self.threads.lock().unwrap();
        if self.is_shutdown() {
            return Err(SubmitError::Shutdown);
        }
        let promise = Promise::new();
        let future = promise.future();
        // `Promise::run` skips a cancelled task, catches a panic, and sets the outcome.
        threads.push(std::thread::spawn(move || {
            promise.run(task);
        }));
        Ok(future)
    }
}

impl Drop for ThreadPerTask {
    /// Like every pool: dropping it is `shutdown(wait = true)`.
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// Runs scenario 10: the custom executor through submit, and through the combinators.
///
/// # Errors
///
/// If a task fails unexpectedly.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let ex = ThreadPerTask::default();
    let futures: Vec<Future<u64>> = (1..=5u64)
        .map(|n| ex.submit(move || n * n))
        .collect::<Result<_, _>>()?;
    let squares: Vec<u64> = futures
        .iter()
        .map(|f| f.result_timeout(Duration::from_secs(10)).copied())
        .collect::<Result<_, _>>()?;
    out.say(format!(
        "submit: 5 tasks on 5 threads of their own → {squares:?}"
    ));

    // Every combinator accepts it: map, wait, as_completed.
    let doubled: Vec<u64> = ex.map(|x: u64| x * 2, 1..=5)?.collect::<Result<_, _>>()?;
    out.say(format!("map(|x| x * 2, 1..=5) → {doubled:?}"));
    let r = wait(
        futures.clone(),
        Some(Duration::from_secs(10)),
        ReturnWhen::AllCompleted,
    );
    out.say(format!(
        "wait(AllCompleted) → {} done, {} not done",
        r.done.len(),
        r.not_done.len()
    ));
    let n = as_completed(futures, Some(Duration::from_secs(10)))
        .filter(Result::is_ok)
        .count();
    out.say(format!("as_completed → {n} futures"));

    let boom = ex.submit(|| -> u64 { panic!("a panicking task") })?;
    let err = boom.result_timeout(Duration::from_secs(10)).unwrap_err();
    out.say(format!("a panic is caught by Promise::run: {err}"));
    ex.shutdown(true, false);
    out.say(format!(
        "after shutdown, submit is refused: {}",
        ex.submit(|| 0u64).unwrap_err()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tasks_and_refuses_after_shutdown() {
        let ex = ThreadPerTask::default();
        let f = ex.submit(|| 6 * 7).unwrap();
        let boom = ex.submit(|| -> u8 { panic!("boom") }).unwrap();
        assert_eq!(*f.result_timeout(Duration::from_secs(10)).unwrap(), 42);
        let err = boom.result_timeout(Duration::from_secs(10)).unwrap_err();
        assert_eq!(
            err.task_error().and_then(|e| e.panic_message()),
            Some("boom")
        );
        ex.shutdown(true, false);
        assert!(ex.submit(|| 1).unwrap_err().is_shutdown());
    }
}
