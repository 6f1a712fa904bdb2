//! Captured output (`Builder::capture_output`): what a task prints comes with its failure —
//! its own output, never its neighbour's, bounded to its last bytes — including what a task
//! printed just before it killed its worker; what belongs to no failure goes where output
//! goes without the option.

mod util;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use cfutures_core::{TaskError, WorkerExit};
use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy, TaskOptions, WorkerOutput};
use util::*;

fn segfault() {
    // SAFETY: none — this task exists to crash its worker.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
}

/// A file for the output that is not attached to a failure, and the pool writing there.
fn pool_with_file(name: &str, workers: usize) -> (ProcessPoolExecutor, PathBuf) {
    let path = std::env::temp_dir().join(format!("cfpp-capture-{name}-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(workers)
        .capture_output(true)
        .quiet_panics(true)
        .worker_output(WorkerOutput::File(file))
        .build()
        .unwrap();
    (pool, path)
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn say_then_fail(words: String) -> u32 {
    println!("{words}");
    eprintln!("(on stderr)");
    panic!("failing after saying it");
}

#[test]
fn a_failure_comes_with_what_the_task_printed() {
    let (pool, path) = pool_with_file("attached", 1);
    let f = pool.submit_fn(say_then_fail, "hello".to_owned()).unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("failing after saying it"));
    let out = err.output().expect("output attached");
    assert_eq!(out.text(), "hello\n(on stderr)\n");
    assert!(!out.is_truncated());
    assert!(err
        .to_string()
        .ends_with("task printed ---\nhello\n(on stderr)\n"));
    drop(pool);
    assert_eq!(read(&path), "", "nothing else was printed");
    let _ = std::fs::remove_file(&path);
}

fn flood_then_fail(bytes: usize) -> u32 {
    let mut out = std::io::stdout().lock();
    let mut written = 0;
    let mut line = 0u64;
    while written < bytes {
        let s = format!("line {line:08}\n");
        out.write_all(s.as_bytes()).unwrap();
        written += s.len();
        line += 1;
    }
    drop(out);
    panic!("after {line} lines");
}

#[test]
fn the_output_kept_is_bounded_to_its_last_bytes() {
    let path = std::env::temp_dir().join(format!("cfpp-capture-bounded-{}", std::process::id()));
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .capture_output(true)
        .output_limit(1000)
        .quiet_panics(true)
        .worker_output(WorkerOutput::File(std::fs::File::create(&path).unwrap()))
        .build()
        .unwrap();
    let total = 4 << 20;
    let f = pool.submit_fn(flood_then_fail, total).unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    let lines: u64 = err
        .panic_message()
        .unwrap()
        .trim_start_matches("after ")
        .trim_end_matches(" lines")
        .parse()
        .unwrap();
    let out = err.output().unwrap();
    assert_eq!(out.bytes().len(), 1000);
    assert_eq!(out.total_len(), lines * 14);
    assert!(out.is_truncated());
    // The last bytes: the last line is whole at the end.
    assert!(out.text().ends_with(&format!("line {:08}\n", lines - 1)));
    // The display shows the end only.
    assert!(err.to_string().len() < 1200);
    // The next task's output is its own.
    let g = pool.submit_fn(say_then_fail, "next".to_owned()).unwrap();
    let e = g.exception_timeout(WAIT).unwrap().unwrap();
    assert_eq!(e.output().unwrap().text(), "next\n(on stderr)\n");
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// Prints its number; fails when it is odd.
fn shout(i: u64) -> u64 {
    println!("task {i}");
    if i % 2 == 1 {
        panic!("odd");
    }
    i
}

#[test]
fn a_burst_of_tiny_printing_tasks_keeps_each_output_with_its_task() {
    // One worker, tiny tasks: its window holds many at a time, and results and output
    // arrive in batches on two pipes. Each failure must carry exactly its own line.
    let (pool, path) = pool_with_file("burst", 1);
    let n = 3000u64;
    let futures: Vec<_> = (0..n).map(|i| pool.submit_fn(shout, i).unwrap()).collect();
    for (i, f) in futures.iter().enumerate() {
        let i = i as u64;
        if i % 2 == 1 {
            let e = f.exception_timeout(WAIT).unwrap().unwrap();
            assert_eq!(
                e.output().map(|o| o.text().into_owned()),
                Some(format!("task {i}\n")),
                "task {i}"
            );
        } else {
            assert_eq!(*f.result_timeout(WAIT).unwrap(), i);
        }
    }
    drop(pool);
    // The successes' output went to the file, each task's in one piece, each once.
    let text = read(&path);
    let mut lines: Vec<u64> = text
        .lines()
        .map(|l| l.strip_prefix("task ").unwrap().parse().unwrap())
        .collect();
    lines.sort_unstable();
    let evens: Vec<u64> = (0..n).filter(|i| i % 2 == 0).collect();
    assert_eq!(lines, evens);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_burst_on_two_workers() {
    let (pool, path) = pool_with_file("burst2", 2);
    let futures: Vec<_> = (0..2000u64)
        .map(|i| pool.submit_fn(shout, i).unwrap())
        .collect();
    for (i, f) in futures.iter().enumerate() {
        if i % 2 == 1 {
            let e = f.exception_timeout(WAIT).unwrap().unwrap();
            assert_eq!(e.output().unwrap().text(), format!("task {i}\n"));
        } else {
            f.result_timeout(WAIT).unwrap();
        }
    }
    drop(pool);
    assert_eq!(read(&path).lines().count(), 1000);
    let _ = std::fs::remove_file(&path);
}

fn last_words(words: String) {
    println!("{words}");
    eprint!("and on stderr, no newline");
    segfault();
}

#[test]
fn a_task_that_prints_then_dies_fails_with_its_last_words() {
    let (pool, path) = pool_with_file("died", 1);
    let before = pool.submit_fn(shout, 2).unwrap();
    let f = pool
        .submit_fn(last_words, "about to crash".to_owned())
        .unwrap();
    let after = pool.submit_fn(shout, 1).unwrap();
    assert_eq!(*before.result_timeout(WAIT).unwrap(), 2);
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(
        matches!(err.without_output(), TaskError::WorkerDied { exit: WorkerExit::Signal(s), .. } if *s == libc::SIGSEGV),
        "{err}"
    );
    assert!(err.is_worker_died());
    assert_eq!(
        err.output().unwrap().text(),
        "about to crash\nand on stderr, no newline"
    );
    // The task after it, on a new worker, has its own output.
    let e = after.exception_timeout(WAIT).unwrap().unwrap();
    assert_eq!(e.output().unwrap().text(), "task 1\n");
    drop(pool);
    assert_eq!(read(&path), "task 2\n");
    let _ = std::fs::remove_file(&path);
}

fn print_then_spin(words: String) {
    println!("{words}");
    spin(())
}

#[test]
fn a_task_past_its_time_limit_fails_with_its_output() {
    let (pool, path) = pool_with_file("limit", 1);
    let f = pool
        .with(TaskOptions::new().time_limit(Duration::from_millis(200)))
        .submit_fn(print_then_spin, "spinning".to_owned())
        .unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(err.is_time_limit(), "{err}");
    assert_eq!(err.output().unwrap().text(), "spinning\n");
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

fn chatty_poison(words: String) {
    println!("{words}");
    segfault();
}

#[test]
fn a_quarantined_task_comes_with_its_last_attempts_output() {
    let path = std::env::temp_dir().join(format!("cfpp-capture-poison-{}", std::process::id()));
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .capture_output(true)
        .worker_output(WorkerOutput::File(std::fs::File::create(&path).unwrap()))
        .retry(RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO))
        .build()
        .unwrap();
    let f = pool.submit_fn(chatty_poison, "poison".to_owned()).unwrap();
    let err = f.exception_timeout(WAIT).unwrap().unwrap();
    assert!(err.is_quarantined(), "{err}");
    assert_eq!(err.deaths().unwrap().len(), 3);
    assert_eq!(err.output().unwrap().text(), "poison\n");
    drop(pool);
    // The two attempts retried: their output went where uncaptured output goes.
    assert_eq!(read(&path), "poison\npoison\n");
    let _ = std::fs::remove_file(&path);
}

fn loud_init(words: String) {
    println!("init: {words}");
}

fn failing_init(words: String) {
    println!("init: {words}");
    panic!("cannot start");
}

#[test]
fn the_initializers_output() {
    // A successful initializer's output goes where uncaptured output goes.
    let path = std::env::temp_dir().join(format!("cfpp-capture-init-{}", std::process::id()));
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .capture_output(true)
        .quiet_panics(true)
        .initializer(loud_init, "ready".to_owned())
        .worker_output(WorkerOutput::File(std::fs::File::create(&path).unwrap()))
        .build()
        .unwrap();
    let e = pool
        .submit_fn(shout, 7)
        .unwrap()
        .exception_timeout(WAIT)
        .unwrap()
        .unwrap();
    assert_eq!(e.output().unwrap().text(), "task 7\n");
    drop(pool);
    assert_eq!(read(&path), "init: ready\n");
    let _ = std::fs::remove_file(&path);
    // A failing one's comes with the pool's broken error, as its cause's output.
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .capture_output(true)
        .quiet_panics(true)
        .initializer(failing_init, "db".to_owned())
        .worker_output(WorkerOutput::Null)
        .build()
        .unwrap();
    let err = pool
        .submit_fn(add_one, 1)
        .unwrap()
        .result_timeout(WAIT)
        .unwrap_err();
    let Some(b) = (match &err {
        cfutures_core::Error::Broken(b) => Some(b),
        _ => None,
    }) else {
        panic!("expected Broken, got {err}");
    };
    let cause = b.cause().expect("the initializer's failure");
    assert!(cause.is_panic());
    assert_eq!(cause.output().unwrap().text(), "init: db\n");
}

#[test]
fn without_the_option_nothing_is_attached() {
    let path = std::env::temp_dir().join(format!("cfpp-capture-off-{}", std::process::id()));
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .quiet_panics(true)
        .worker_output(WorkerOutput::File(std::fs::File::create(&path).unwrap()))
        .build()
        .unwrap();
    let e = pool
        .submit_fn(shout, 3)
        .unwrap()
        .exception_timeout(WAIT)
        .unwrap()
        .unwrap();
    assert!(e.output().is_none());
    assert!(matches!(e, TaskError::Panic { .. }));
    drop(pool);
    assert_eq!(read(&path), "task 3\n");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_kill_storm_with_retries_keeps_every_output_with_its_own_task() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (pool, path) = {
        let path = std::env::temp_dir().join(format!("cfpp-capture-storm-{}", std::process::id()));
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .capture_output(true)
            .quiet_panics(true)
            .worker_output(WorkerOutput::File(std::fs::File::create(&path).unwrap()))
            .retry(RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO))
            .build()
            .unwrap();
        (Arc::new(pool), path)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (stop, pool, kills) = (stop.clone(), pool.clone(), kills.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if let Some(&p) = pool.worker_pids().get(n % 2) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(p as i32, libc::SIGKILL) };
                    kills.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    // Tasks stream in until the storm has killed workers many times (bounded).
    let mut futures = Vec::new();
    let t0 = std::time::Instant::now();
    while (futures.len() < 3000 || kills.load(Ordering::Relaxed) < 50) && t0.elapsed() < WAIT {
        for _ in 0..100 {
            let i = futures.len() as u64;
            futures.push(pool.submit_fn(shout, i).unwrap());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let n = futures.len();
    let mut outcomes = [0usize; 4]; // ok, panicked, died, quarantined
    for (i, f) in futures.iter().enumerate() {
        let i = i as u64;
        match f.result_timeout(WAIT) {
            Ok(v) => {
                assert_eq!(*v, i);
                outcomes[0] += 1;
            }
            Err(e) => {
                let e = e.task_error().unwrap_or_else(|| panic!("task {i}: {e}"));
                let out = e.output().expect("output attached").text().into_owned();
                // Its own line, or nothing (killed before it printed): never another's.
                assert!(
                    out == format!("task {i}\n") || out.is_empty(),
                    "task {i}: {out:?}"
                );
                if e.is_panic() {
                    assert_eq!(i % 2, 1);
                    assert_eq!(out, format!("task {i}\n"));
                    outcomes[1] += 1;
                } else if e.is_worker_died() {
                    outcomes[2] += 1;
                } else if e.is_quarantined() {
                    outcomes[3] += 1;
                } else {
                    panic!("task {i}: {e}");
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    let kills = kills.load(Ordering::Relaxed);
    assert!(kills >= 50, "the storm killed only {kills} workers");
    assert!(!pool.is_broken());
    assert_eq!(outcomes.iter().sum::<usize>(), n);
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "{outcomes:?} after {kills} kills"
    );
    let pool = Arc::into_inner(pool).unwrap();
    drop(pool);
    // What went to the file is whole lines, each a task's.
    for line in read(&path).lines() {
        let n: u64 = line.strip_prefix("task ").unwrap().parse().unwrap();
        assert!(n < futures.len() as u64);
    }
    let _ = std::fs::remove_file(&path);
}
