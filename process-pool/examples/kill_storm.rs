//! Soak test: a kill storm for minutes. Workers are SIGKILLed every few milliseconds while
//! tasks stream through the pool; every task must resolve, either with its value or with
//! `WorkerDied`. Prints submitted / ok / died / lost; `lost` (a task that never resolved, or
//! failed any other way) must be 0, and no process, zombie or descriptor may be left.
//!
//! ```sh
//! cargo run --release -p cfutures-process-pool --example kill_storm -- [seconds] [workers] [kill every ms]
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_core::{Future, TaskError};
use cfutures_process_pool::ProcessPoolExecutor;

fn work(x: u64) -> u64 {
    // A few microseconds of work, so that kills land mid-task as well as between tasks.
    let mut h = x;
    for _ in 0..200 {
        h = h
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    std::hint::black_box(h);
    x + 1
}

fn children() -> Vec<i32> {
    let me = std::process::id();
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let every_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let fds_before = open_fds();
    let pool = Arc::new(ProcessPoolExecutor::new(workers).expect("a pool"));
    // The storm starts once the pool has served: a pool none of whose workers ever greeted
    // breaks after 10 failed starts (documented), which a storm faster than a worker's start
    // on a loaded machine would otherwise reach before the first task.
    pool.submit_fn(work, 0)
        .expect("a submit")
        .result_timeout(Duration::from_secs(60))
        .expect("the first task");
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (pool, stop, kills) = (pool.clone(), stop.clone(), kills.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(every_ms));
                let pids = pool.worker_pids();
                if !pids.is_empty() {
                    n += 1;
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pids[n % pids.len()] as i32, libc::SIGKILL) };
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let t0 = Instant::now();
    let mut in_flight: VecDeque<(u64, Future<u64>)> = VecDeque::new();
    let (mut submitted, mut ok, mut died, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    let settle = |f: (u64, Future<u64>), ok: &mut u64, died: &mut u64, lost: &mut u64| match f
        .1
        .result_timeout(Duration::from_secs(30))
    {
        Ok(v) if *v == f.0 + 1 => *ok += 1,
        Err(e) if matches!(e.task_error(), Some(TaskError::WorkerDied { .. })) => *died += 1,
        other => {
            *lost += 1;
            if *lost <= 10 {
                eprintln!("task {}: {other:?}", f.0);
            }
        }
    };
    while t0.elapsed() < Duration::from_secs(secs) {
        while in_flight.len() < 2000 {
            match pool.submit_fn(work, submitted) {
                Ok(f) => in_flight.push_back((submitted, f)),
                Err(e) => {
                    eprintln!("submit refused: {e}");
                    lost += 1;
                    break;
                }
            }
            submitted += 1;
        }
        if pool.is_broken() {
            eprintln!("the pool broke: stopping");
            break;
        }
        // Settle the oldest half: results come back roughly in order.
        for _ in 0..1000 {
            let Some(f) = in_flight.pop_front() else {
                break;
            };
            settle(f, &mut ok, &mut died, &mut lost);
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            println!(
                "{:>5.0} s  submitted {submitted}  ok {ok}  died {died}  lost {lost}  kills {}",
                t0.elapsed().as_secs_f64(),
                kills.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    killer.join().expect("the killer thread");
    while let Some(f) = in_flight.pop_front() {
        settle(f, &mut ok, &mut died, &mut lost);
    }
    let broken = pool.is_broken();
    drop(Arc::into_inner(pool).expect("the last handle"));
    let left = children();
    let fds_after = open_fds();
    println!(
        "done in {:.0} s: submitted {submitted}  ok {ok}  died {died}  lost {lost}  kills {}  \
         broken {broken}  children left {}  descriptors {fds_before} -> {fds_after}",
        t0.elapsed().as_secs_f64(),
        kills.load(Ordering::Relaxed),
        left.len()
    );
    if lost > 0 || broken || !left.is_empty() || fds_after > fds_before {
        std::process::exit(1);
    }
}
