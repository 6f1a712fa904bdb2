//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

/// The bounded wait every test uses.
pub const WAIT: Duration = Duration::from_secs(20);

/// x + 1.
pub fn add_one(x: u64) -> u64 {
    x + 1
}

/// The worker's pid.
pub fn pid(_: ()) -> u32 {
    std::process::id()
}

/// Never returns.
pub fn spin(_: ()) {
    loop {
        std::hint::spin_loop();
    }
}

/// True if `pid` names a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Direct children of this process (any state, zombies included).
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// A task that writes its worker's pid to `path`, then spins forever: lets a test find, and
/// kill, exactly the worker that is busy with it.
pub fn report_then_spin(path: String) {
    std::fs::write(path, std::process::id().to_string()).unwrap();
    spin(())
}

/// A fresh path for [`report_then_spin`] (removed if it exists).
pub fn pid_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("cfpp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits (bounded by [`WAIT`]) until a [`report_then_spin`] task wrote its worker's pid to
/// `path`; removes the file and returns the pid.
pub fn wait_for_pid(path: &std::path::Path) -> u32 {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(p) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            let _ = std::fs::remove_file(path);
            return p;
        }
        assert!(t0.elapsed() < WAIT, "the task never started");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs the `#[ignore]`d test `name` of this test binary in a process of its own (so that it
/// may kill every child of its process, or measure its memory, without disturbing the tests
/// running next to it), bounded by `limit`, and fails if it fails. The test itself starts
/// with `if !isolated() { return; }`, so that `cargo test -- --ignored` skips it.
pub fn run_isolated(name: &str, limit: Duration) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CFPP_ISOLATED", name)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{name} failed in its own process: {status:?}"
            );
            return;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {limit:?} in its own process: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True in the process [`run_isolated`] started for the current test.
pub fn isolated() -> bool {
    std::env::var_os("CFPP_ISOLATED").is_some()
}

/// Runs `f` on a thread and fails the test if it does not return within `limit` (even if it
/// hangs while unwinding, say in a pool's drop).
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {limit:?}: it hangs")
        }
        Err(_) => panic!("{what} failed (its panic is above)"),
    }
}

/// Writes `bytes` to every descriptor above stderr that is a pipe or a socket: what a task
/// that writes where it should not does (the protocol's descriptors among them).
pub fn write_to_every_pipe(bytes: &[u8]) {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let t = target.to_string_lossy();
        if fd > 2 && (t.starts_with("pipe:") || t.starts_with("socket:")) {
            // SAFETY: writing a valid buffer to a descriptor; errors are ignored.
            unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        }
    }
}

/// This process's resident memory, in KiB.
pub fn resident_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A pool of `workers` whose task panics and output stay quiet (the event tests' pool).
pub fn quiet_pool(workers: usize) -> cfutures_process_pool::ProcessPoolExecutor {
    cfutures_process_pool::ProcessPoolExecutor::builder()
        .max_workers(workers)
        .quiet_panics(true)
        .worker_output(cfutures_process_pool::WorkerOutput::Null)
        .build()
        .unwrap()
}

/// Reads an event stream to its end (`Shutdown`), within [`WAIT`].
pub fn collect_events(events: &cfutures_core::events::Events) -> Vec<cfutures_core::events::Event> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut all = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(e) => all.push(e),
            Err(e) if e.is_closed() => return all,
            Err(_) => panic!(
                "the stream did not end within {WAIT:?} ({} events)",
                all.len()
            ),
        }
    }
}
