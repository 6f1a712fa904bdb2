//! The fault matrix (issue 11): one test per fault a user can meet, each bounded, so that a
//! hang shows up as a failure. Process-wide faults (resource limits, environments set by
//! hand) are in `faults_env.rs`, where each runs in a process of its own.
//!
//! 1. Deaths at start do not break a healthy pool (the kill storm).
//! 2. The result stream cannot be desynchronised into a hang or a wrong answer.
//! 3. A death is seen at once, whoever holds the worker's descriptors.
//! 4. Tasks are not stranded behind a stopped or long-running head.
//! 5. The I/O thread cannot die silently (huge limits; a panic in it breaks the pool).
//! 6. Nothing but its protocol descriptors leaks into a worker; no secret in its environment.
//! 7. Memory is given back after large results.

mod util;

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_core::{Error, Future, TaskError};
use cfutures_process_pool::{ProcessPoolExecutor, WorkerDeathPolicy};
use util::*;

/// The bound of every test here (the isolated ones are bounded by their runner).
const LIMIT: Duration = Duration::from_secs(90);

fn result<T>(f: &Future<T>) -> Result<&T, Error> {
    f.result_timeout(WAIT)
}

fn sigkill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

// ---------------------------------------------------------------------------------------
// 1. Deaths at start, and the kill storm.

/// Workers SIGKILLed every few ms while thousands of tasks stream: every future resolves,
/// only tasks on killed workers fail (with `WorkerDied`), the pool is not broken, and it
/// serves afterwards. Kills land at every point of a worker's life, before its greeting
/// included (a fresh replacement is often the one killed).
#[test]
fn kill_storm() {
    run_isolated("kill_storm_alone", Duration::from_secs(120));
}

#[test]
#[ignore = "run by kill_storm, in a process of its own"]
fn kill_storm_alone() {
    if !isolated() {
        return;
    }
    let pool = Arc::new(ProcessPoolExecutor::new(2).unwrap());
    assert_eq!(*result(&pool.submit_fn(add_one, 0).unwrap()).unwrap(), 1);
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (stop, pool) = (stop.clone(), pool.clone());
        std::thread::spawn(move || {
            let mut kills = 0u32;
            let mut seen = HashSet::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Every few ms a worker the pool knows; in between, any new child at once
                // (before it could greet).
                for c in children() {
                    if seen.insert(c) && n % 3 == 0 {
                        sigkill(c);
                        kills += 1;
                    }
                }
                n += 1;
                if n % 20 == 0 {
                    if let Some(&p) = pool.worker_pids().get((n / 20) as usize % 2) {
                        sigkill(p);
                        kills += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            kills
        })
    };
    let mut futures = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) || futures.len() < 3000 {
        for _ in 0..50 {
            let i = futures.len() as u64;
            futures.push((i, pool.submit_fn(add_one, i).unwrap()));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let mut ok = 0;
    let mut died = 0;
    for (i, f) in &futures {
        match f.result_timeout(WAIT) {
            Ok(v) => {
                assert_eq!(*v, i + 1);
                ok += 1;
            }
            Err(e) => match e.task_error() {
                Some(TaskError::WorkerDied { .. }) => died += 1,
                _ => panic!("task {i}: expected a value or WorkerDied, got {e}"),
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    assert!(!pool.is_broken(), "the kill storm broke the pool");
    assert!(kills > 10, "the storm killed only {kills} workers");
    assert_eq!(ok + died, futures.len());
    assert!(ok > 0);
    // It serves afterwards, with healthy workers.
    let after: Vec<_> = (0..100u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for (i, f) in after.iter().enumerate() {
        assert_eq!(*result(f).unwrap(), i as u64 + 1);
    }
    let pool = Arc::into_inner(pool).unwrap();
    bounded("dropping the pool after the storm", WAIT, move || {
        drop(pool)
    });
    assert!(
        children().iter().all(|&c| !alive(c)),
        "a worker outlived the pool"
    );
}

/// Every worker dies before it can greet (here the dynamic loader fails: a `libc.so.6` that
/// is not one comes first in the library path): the pool must not spin restarting them
/// forever, but break, saying that workers *died* while starting (not that they could not be
/// started), and every future fails `Broken` with that cause.
#[test]
fn workers_that_always_die_at_start_break_the_pool_with_a_death() {
    bounded(
        "workers_that_always_die_at_start_break_the_pool_with_a_death",
        LIMIT,
        || {
            let dir = std::env::temp_dir().join(format!("cfpp-badlibc-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("libc.so.6"), b"not a library").unwrap();
            let pool = ProcessPoolExecutor::builder()
                .max_workers(1)
                .worker_env("LD_LIBRARY_PATH", &dir)
                .worker_output(cfutures_process_pool::WorkerOutput::Null)
                .build()
                .unwrap();
            let f = pool.submit_fn(add_one, 1).unwrap();
            let err = f.result_timeout(WAIT).unwrap_err();
            let _ = std::fs::remove_dir_all(&dir);
            assert!(err.is_broken(), "{err}");
            let text = format!("{err}");
            assert!(text.contains("died while starting"), "{text}");
            assert!(pool.is_broken());
            assert!(pool.submit_fn(add_one, 2).unwrap_err().is_broken());
        },
    );
}

// ---------------------------------------------------------------------------------------
// 2. The result stream.

/// Writes garbage where it should not, then returns.
fn scribble(_: ()) -> u64 {
    write_to_every_pipe(b"hello from a task that should not write here\n");
    7
}

/// On a pool of one: `bad`, then 20 innocent tasks queued behind it on the same worker.
fn bad_then_innocents<F>(pool: &ProcessPoolExecutor, bad: F) -> (Future<u64>, Vec<Future<u64>>)
where
    F: Fn(()) -> u64 + Copy + Send + Sync + 'static,
{
    assert_eq!(*result(&pool.submit_fn(add_one, 0).unwrap()).unwrap(), 1);
    let bad = pool.submit_fn(bad, ()).unwrap();
    let behind = (0..20u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    (bad, behind)
}

/// Every innocent task has its own result.
fn assert_innocents_ok(behind: &[Future<u64>]) {
    for (i, f) in behind.iter().enumerate() {
        assert_eq!(
            *result(f).unwrap(),
            i as u64 + 1,
            "an innocent task lost its result"
        );
    }
}

#[test]
fn stray_bytes_on_the_protocol_fail_only_their_task() {
    bounded(
        "stray_bytes_on_the_protocol_fail_only_their_task",
        LIMIT,
        || {
            let pool = ProcessPoolExecutor::new(1).unwrap();
            let (bad, behind) = bad_then_innocents(&pool, scribble);
            let err = bad.result_timeout(WAIT).unwrap_err();
            let te = err.task_error().expect("a task error");
            assert!(te.is_codec(), "{err}");
            assert!(format!("{err}").contains("out of sync"), "{err}");
            assert_innocents_ok(&behind);
            assert!(!pool.is_broken());
            bounded("dropping the pool", WAIT, move || drop(pool));
        },
    );
}

/// Writes a well-formed result frame with an id no task has where it should not, then
/// returns normally.
fn forge(_: ()) -> u64 {
    let mut frame = Vec::new();
    let payload = [42u8]; // postcard of 42u64
    frame.extend_from_slice(&((1 + 8 + 8 + payload.len()) as u32).to_le_bytes());
    frame.push(1); // a result
    frame.extend_from_slice(&0xdead_beef_u64.to_le_bytes());
    frame.extend_from_slice(&0u64.to_le_bytes());
    frame.extend_from_slice(&payload);
    write_to_every_pipe(&frame);
    7
}

#[test]
fn a_forged_frame_fails_its_writer_not_the_next_task() {
    bounded(
        "a_forged_frame_fails_its_writer_not_the_next_task",
        LIMIT,
        || {
            let pool = ProcessPoolExecutor::new(1).unwrap();
            let (bad, behind) = bad_then_innocents(&pool, forge);
            assert_innocents_ok(&behind);
            let err = bad.result_timeout(WAIT).unwrap_err();
            assert!(err.task_error().is_some_and(|e| e.is_codec()), "{err}");
            assert!(!pool.is_broken());
        },
    );
}

// ---------------------------------------------------------------------------------------
// 3. Deaths are seen whoever holds the descriptors.

/// Forks a child that sleeps (holding every descriptor the worker has), writes its pid to
/// `path`, then kills the worker.
fn fork_then_die(path: String) {
    // SAFETY: the child only sleeps and exits (async-signal-safe calls).
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            libc::sleep(60);
            libc::_exit(0);
        }
    }
    std::fs::write(&path, child.to_string()).unwrap();
    std::process::abort();
}

#[test]
fn a_death_is_seen_while_a_grandchild_holds_the_pipes() {
    run_isolated(
        "a_death_is_seen_while_a_grandchild_holds_the_pipes_alone",
        Duration::from_secs(60),
    );
}

#[test]
#[ignore = "run by a_death_is_seen_while_a_grandchild_holds_the_pipes, in a process of its own"]
fn a_death_is_seen_while_a_grandchild_holds_the_pipes_alone() {
    if !isolated() {
        return;
    }
    let path = pid_file("grandchild");
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool
        .submit_fn(fork_then_die, path.to_string_lossy().into_owned())
        .unwrap();
    let after = pool.submit_fn(add_one, 1).unwrap();
    let outcome = f.exception_timeout(Duration::from_secs(10));
    let grandchild = wait_for_pid(&path);
    sigkill(grandchild);
    let err = outcome
        .expect("the worker's death was not seen")
        .expect("it failed");
    assert!(err.is_worker_died(), "{err}");
    assert_eq!(*result(&after).unwrap(), 2);
    // No dead worker sits as a zombie.
    let t0 = Instant::now();
    while children().iter().any(|&c| !alive(c)) {
        assert!(t0.elapsed() < WAIT, "a dead worker stayed a zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// 4. Tasks behind a stopped or long-running head.

fn tiny(x: u64) -> u64 {
    x
}

#[test]
fn tasks_are_not_stranded_behind_a_stopped_worker() {
    bounded(
        "tasks_are_not_stranded_behind_a_stopped_worker",
        LIMIT,
        || {
            let pool = ProcessPoolExecutor::new(2).unwrap();
            // Warm both workers up with tiny tasks: their windows become deep.
            let warm: Vec<_> = (0..2000u64)
                .map(|i| pool.submit_fn(tiny, i).unwrap())
                .collect();
            for f in &warm {
                result(f).unwrap();
            }
            let pids = pool.worker_pids();
            assert_eq!(pids.len(), 2);
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pids[0] as i32, libc::SIGSTOP) };
            let futures: Vec<_> = (0..500u64)
                .map(|i| pool.submit_fn(tiny, i).unwrap())
                .collect();
            let stranded = futures
                .iter()
                .enumerate()
                .filter(|(i, f)| {
                    f.result_timeout(Duration::from_secs(10)).ok() != Some(&(*i as u64))
                })
                .count();
            // SAFETY: as above.
            unsafe { libc::kill(pids[0] as i32, libc::SIGCONT) };
            assert_eq!(stranded, 0, "tasks waited behind the stopped worker");
            assert!(!pool.is_broken());
        },
    );
}

fn report_then_sleep(path: String) -> u64 {
    std::fs::write(path, std::process::id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    0
}

#[test]
fn tasks_are_not_stranded_behind_a_long_head() {
    bounded("tasks_are_not_stranded_behind_a_long_head", LIMIT, || {
        let pool = ProcessPoolExecutor::new(2).unwrap();
        let warm: Vec<_> = (0..2000u64)
            .map(|i| pool.submit_fn(tiny, i).unwrap())
            .collect();
        for f in &warm {
            result(f).unwrap();
        }
        let path = pid_file("long-head");
        let long = pool
            .submit_fn(report_then_sleep, path.to_string_lossy().into_owned())
            .unwrap();
        // Queued at once, before anyone knows the head is long: some land behind it.
        let futures: Vec<_> = (0..500u64)
            .map(|i| pool.submit_fn(tiny, i).unwrap())
            .collect();
        let busy = wait_for_pid(&path);
        for (i, f) in futures.iter().enumerate() {
            let r = f.result_timeout(Duration::from_secs(10));
            assert_eq!(
                r.ok(),
                Some(&(i as u64)),
                "task {i} waited behind the long head"
            );
        }
        assert!(!long.done());
        assert!(pool.cancel(&long));
        assert!(long.result_timeout(WAIT).unwrap_err().is_cancelled());
        let _ = busy;
    });
}

// ---------------------------------------------------------------------------------------
// 5. The I/O thread.

#[test]
fn a_huge_time_limit_means_no_limit() {
    bounded("a_huge_time_limit_means_no_limit", LIMIT, || {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(1)
            .time_limit(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(*result(&pool.submit_fn(add_one, 1).unwrap()).unwrap(), 2);
        let f = pool
            .submit_fn_with_timeout(add_one, 2, Duration::from_secs(u64::MAX))
            .unwrap();
        assert_eq!(*result(&f).unwrap(), 3);
        assert_eq!(*result(&pool.submit_fn(add_one, 3).unwrap()).unwrap(), 4);
    });
}

/// A result type whose `Deserialize` panics: decoded in the parent, on the pool's thread.
#[derive(Debug, serde::Serialize)]
struct Explosive(u8);

impl<'de> serde::Deserialize<'de> for Explosive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        panic!("Explosive({v}) refuses to be decoded");
    }
}

fn explosive(x: u8) -> Explosive {
    Explosive(x)
}

#[test]
fn a_panicking_decode_fails_its_future_and_nothing_else() {
    bounded(
        "a_panicking_decode_fails_its_future_and_nothing_else",
        LIMIT,
        || {
            let pool = ProcessPoolExecutor::new(1).unwrap();
            let bad = pool.submit_fn(explosive, 3).unwrap();
            let after = pool.submit_fn(add_one, 1).unwrap();
            let err = bad.result_timeout(WAIT).unwrap_err();
            assert!(err.task_error().is_some_and(|e| e.is_codec()), "{err}");
            assert!(format!("{err}").contains("refuses to be decoded"), "{err}");
            assert_eq!(*result(&after).unwrap(), 2);
            assert!(!pool.is_broken());
        },
    );
}

#[test]
fn if_the_io_thread_unwinds_the_pool_breaks_and_every_future_fails() {
    run_isolated(
        "if_the_io_thread_unwinds_the_pool_breaks_and_every_future_fails_alone",
        Duration::from_secs(60),
    );
}

#[test]
#[ignore = "run by if_the_io_thread_unwinds_the_pool_breaks_and_every_future_fails, in a process of its own"]
fn if_the_io_thread_unwinds_the_pool_breaks_and_every_future_fails_alone() {
    if !isolated() {
        return;
    }
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .on_worker_death(WorkerDeathPolicy::FailTask)
        .build()
        .unwrap();
    let path = pid_file("io-panic");
    let running = pool
        .submit_fn(report_then_sleep, path.to_string_lossy().into_owned())
        .unwrap();
    let queued: Vec<_> = (0..5u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    let _ = wait_for_pid(&path);
    pool.__panic_io_thread("injected by the test");
    for f in std::iter::once(&running).chain(&queued) {
        let err = f.result_timeout(WAIT).unwrap_err();
        assert!(err.is_broken(), "{err}");
        assert!(format!("{err}").contains("injected by the test"), "{err}");
    }
    assert!(pool.is_broken());
    assert!(pool.submit_fn(add_one, 1).unwrap_err().is_broken());
    bounded("dropping a pool whose I/O thread died", WAIT, move || {
        drop(pool)
    });
    let t0 = Instant::now();
    while !children().is_empty() {
        assert!(t0.elapsed() < WAIT, "workers outlived a broken pool");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// 6. What a worker inherits, and what its environment says.

/// The descriptors open in the worker, above stderr.
fn open_fds(_: ()) -> Vec<i32> {
    let dir = std::fs::read_dir("/proc/self/fd").unwrap();
    let mut fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    fds.sort();
    fds
}

#[test]
fn a_parents_inheritable_descriptor_does_not_leak_into_workers() {
    bounded(
        "a_parents_inheritable_descriptor_does_not_leak_into_workers",
        LIMIT,
        || {
            let file = std::fs::File::open("/proc/self/stat").unwrap();
            // An inheritable copy (no close-on-exec), as a careless library would leave one.
            // SAFETY: dup of a valid descriptor; the copy is closed below.
            let leaky = unsafe { libc::dup(file.as_raw_fd()) };
            assert!(leaky > 2);
            let pool = ProcessPoolExecutor::new(1).unwrap();
            let fds = result(&pool.submit_fn(open_fds, ()).unwrap())
                .unwrap()
                .clone();
            // SAFETY: closing the copy made above.
            unsafe { libc::close(leaky) };
            assert!(
                !fds.contains(&leaky),
                "descriptor {leaky} leaked into the worker: {fds:?}"
            );
            // The protocol's descriptors, and the one read_dir opened: nothing else.
            assert!(fds.len() <= 5, "the worker has {fds:?} open");
        },
    );
}

#[test]
fn the_workers_environment_holds_no_secret() {
    bounded("the_workers_environment_holds_no_secret", LIMIT, || {
        let pool = ProcessPoolExecutor::new(1).unwrap();
        let pid = *result(&pool.submit_fn(pid, ()).unwrap()).unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        for var in environ.split(|&b| b == 0) {
            let var = String::from_utf8_lossy(var);
            if let Some(v) = var.strip_prefix("CFUTURES_PROCESS_POOL_WORKER=") {
                // Only the protocol version, the parent's pid and descriptor numbers.
                let fields: Vec<&str> = v.split(':').collect();
                assert!(fields.len() <= 4, "{v}");
                assert!(v.len() < 40, "the worker's environment carries {v:?}");
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// 7. Memory.

fn sixty_four_mib(_: ()) -> Vec<u8> {
    vec![7u8; 64 << 20]
}

#[test]
fn memory_of_a_large_result_is_given_back() {
    run_isolated(
        "memory_of_a_large_result_is_given_back_alone",
        Duration::from_secs(60),
    );
}

#[test]
#[ignore = "run by memory_of_a_large_result_is_given_back, in a process of its own"]
fn memory_of_a_large_result_is_given_back_alone() {
    if !isolated() {
        return;
    }
    let pool = ProcessPoolExecutor::new(1).unwrap();
    assert_eq!(*result(&pool.submit_fn(add_one, 0).unwrap()).unwrap(), 1);
    let before = resident_kib();
    let f = pool.submit_fn(sixty_four_mib, ()).unwrap();
    assert_eq!(result(&f).unwrap().len(), 64 << 20);
    drop(f);
    // A small task after it: the pool's buffers have seen the large frame go by.
    assert_eq!(*result(&pool.submit_fn(add_one, 1).unwrap()).unwrap(), 2);
    let after = resident_kib();
    let kept = after.saturating_sub(before) / 1024;
    // (The result crossed in a segment, which is too large to keep for reuse: it was
    // unmapped once decoded.)
    assert!(
        kept < 4,
        "{kept} MiB stayed resident after a 64 MiB result was dropped"
    );
}

fn peak_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn length(v: Vec<u8>) -> usize {
    v.len()
}

/// A large argument is not held twice in the parent: an owned `Vec<u8>` is copied into its
/// shared-memory segment a few MiB at a time, each copied stretch given back to the kernel
/// at once. Peak: the argument, plus one stretch (≤ 1.1× the argument).
#[test]
fn a_large_argument_is_not_copied_again_to_be_sent() {
    run_isolated(
        "a_large_argument_is_not_copied_again_to_be_sent_alone",
        Duration::from_secs(60),
    );
}

#[test]
#[ignore = "run by a_large_argument_is_not_copied_again_to_be_sent, in a process of its own"]
fn a_large_argument_is_not_copied_again_to_be_sent_alone() {
    if !isolated() {
        return;
    }
    const N: usize = 64 << 20;
    let pool = ProcessPoolExecutor::new(1).unwrap();
    assert_eq!(*result(&pool.submit_fn(add_one, 0).unwrap()).unwrap(), 1);
    let before = resident_kib().max(peak_kib());
    let f = pool.submit_fn(length, vec![7u8; N]).unwrap();
    assert_eq!(*result(&f).unwrap(), N);
    let grew = (peak_kib() - before) / 1024;
    // The argument (64 MiB) and a stretch of its copy (2 MiB); the argument and its whole
    // copy, as before segments, would make it 128.
    assert!(
        grew <= 70,
        "the parent's peak grew by {grew} MiB for a 64 MiB argument (more than 1.1×)"
    );
}
