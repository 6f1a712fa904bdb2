//! Scenario 5 — a future's status: `running()`, `cancelled()`, `done()`, `result()`,
//! `cancel()` on a queued task, and `add_done_callback`.

use std::sync::mpsc;
use std::time::Duration;

use cfutures_core::Future;
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{BoxError, Out};

const BOUND: Duration = Duration::from_secs(10);

fn status<T>(name: &str, f: &Future<T>) -> String {
    format!(
        "{name}: state {:?} — running() {}, cancelled() {}, done() {}",
        f.state(),
        f.running(),
        f.cancelled(),
        f.done()
    )
}

/// Runs the scenario.
///
/// # Errors
///
/// If the pool cannot be built or a future misbehaves.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    // One worker, so a second task has to queue behind the first.
    let pool = ThreadPoolExecutor::new(1)?;
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();

    // The first task tells us it started, then waits for our signal.
    let first = pool.submit(move || {
        started_tx.send(()).ok();
        go_rx.recv_timeout(BOUND).ok();
        42
    })?;
    started.recv_timeout(BOUND)?;
    out.say(status("first (running)", &first));

    // The second waits in the queue: it can be cancelled (a running one cannot).
    let second = pool.submit(|| "never runs")?;
    out.say(status("second (queued)", &second));
    out.say(format!("second.cancel() → {}", second.cancel()));
    out.say(status("second", &second));
    out.say(format!(
        "first.cancel() → {} (it is running)",
        first.cancel()
    ));

    // A done-callback: runs in the thread that completes the future (here, the worker).
    let (said, heard) = mpsc::channel();
    first.add_done_callback(move |f| {
        said.send(format!(
            "callback: the future finished with {:?}",
            f.result()
        ))
        .ok();
    });

    go.send(())?;
    out.say(format!(
        "first.result() → {:?}",
        first.result_timeout(BOUND)?
    ));
    out.say(heard.recv_timeout(BOUND)?);
    out.say(status("first", &first));
    out.say(format!(
        "second.result() → {:?}",
        second.result_timeout(BOUND).copied()
    ));

    // A callback added to a finished future runs at once, in this thread.
    let (said, heard) = mpsc::channel();
    first.add_done_callback(move |_| {
        said.send("callback on a finished future: ran at once")
            .unwrap_or(())
    });
    out.say(heard.try_recv()?);

    // A bounded wait on a future that is not done: a Timeout error, not a hang.
    let (go2, go2_rx) = mpsc::channel::<()>();
    let slow = pool.submit(move || go2_rx.recv_timeout(BOUND).is_ok())?;
    out.say(format!(
        "result_timeout(20 ms) on an unfinished future → {:?}",
        slow.result_timeout(Duration::from_millis(20)).copied()
    ));
    go2.send(())?;
    slow.result_timeout(BOUND)?;
    Ok(())
}
