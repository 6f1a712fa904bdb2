//! Scenario 8 — faults: a worker killed mid-task (as the OOM killer would), a task past its
//! time limit, and a panicking task. Python's pool breaks for good on the first; cfutures'
//! process pool fails only the task concerned, replaces the worker, and carries on. The
//! output says what happened to each future.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cfutures_core::Future;
use cfutures_process_pool::ProcessPoolExecutor;

use crate::report::{BoxError, Out, Secs};

const BOUND: Duration = Duration::from_secs(5);

/// Writes this worker's pid to `path`, then sleeps (up to 5 s) until it is killed.
pub fn report_pid_then_sleep(path: PathBuf) -> u32 {
    let _ = std::fs::write(&path, std::process::id().to_string());
    std::thread::sleep(BOUND);
    0
}

/// Never ends on its own.
pub fn spin_forever(_: ()) -> u64 {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Panics for odd numbers.
pub fn even_only(n: u64) -> u64 {
    quiet_worker(()); // the future carries the panic message: keep it off the terminal
    assert!(n % 2 == 0, "{n} is odd");
    n / 2
}

/// An ordinary task.
pub fn add_one(n: u64) -> u64 {
    n + 1
}

/// Keeps this process's panic messages off the terminal (each panic is reported through its
/// future instead).
pub fn quiet_worker(_: ()) {
    std::panic::set_hook(Box::new(|_| {}));
}

fn fate<T: std::fmt::Debug>(f: &Future<T>) -> String {
    match f.result_timeout(BOUND) {
        Ok(v) => format!("ok: {v:?}"),
        Err(e) => format!("failed: {e}"),
    }
}

fn wait_for_pid(path: &Path) -> Result<u32, BoxError> {
    let start = Instant::now();
    while start.elapsed() < BOUND {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("the task never reported its pid".into())
}

/// Runs the scenario.
///
/// # Errors
///
/// If the pool cannot start or a future misbehaves.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let pool = ProcessPoolExecutor::new(2)?;

    // 1. A worker killed mid-task.
    let pid_file = std::env::temp_dir().join(format!("cfutures-faults-{}", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let victim = pool.submit_fn(report_pid_then_sleep, pid_file.clone())?;
    let others: Vec<Future<u64>> = (0..5)
        .map(|i| pool.submit_fn(add_one, i))
        .collect::<Result<_, _>>()?;
    let pid = wait_for_pid(&pid_file)?;
    let before = pool.worker_pids();
    let _ = std::fs::remove_file(&pid_file);
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    let failed = if status.success() {
        String::new()
    } else {
        format!(" (kill reported {status})")
    };
    out.say(format!(
        "sent SIGKILL to worker {pid} while it ran a task, as the OOM killer would{failed}"
    ));
    out.say(format!("   the killed task: {}", fate(&victim)));
    let ok = others
        .iter()
        .filter(|f| f.result_timeout(BOUND).is_ok())
        .count();
    out.say(format!(
        "   {ok} of {} other tasks submitted with it: ok",
        others.len()
    ));

    // 2. A task past its time limit: its worker is killed and replaced.
    let start = Instant::now();
    let endless = pool.submit_fn_with_timeout(spin_forever, (), Duration::from_millis(200))?;
    out.say(format!(
        "an endless task with a 200 ms time limit: {} (after {})",
        fate(&endless),
        Secs(start.elapsed())
    ));
    if !endless.done() {
        // Neither stopped at its limit nor finished: the pool is not serving. Stop its
        // workers rather than wait for an endless task at shutdown, and say so.
        pool.kill_workers();
        return Err(format!(
            "the pool stopped serving after the worker's death (workers: {:?})",
            pool.worker_pids()
        )
        .into());
    }

    // 3. A panicking task: its future fails with the message and location; the worker lives.
    let odd = pool.submit_fn(even_only, 7)?;
    let even = pool.submit_fn(even_only, 8)?;
    out.say(format!("even_only(7): {}", fate(&odd)));
    out.say(format!("even_only(8): {}", fate(&even)));

    // The pool carries on.
    let after = pool.submit_fn(add_one, 41)?;
    out.say(format!("after all that, add_one(41): {}", fate(&after)));
    out.say(format!(
        "workers before: {before:?}, now: {:?} (killed and timed-out ones replaced)",
        pool.worker_pids()
    ));
    Ok(())
}
