//! Thread management: lazy start, idle reuse, the `max_workers` bound, names, defaults.

mod util;

use cfutures_thread_pool::{default_max_workers, ThreadPoolExecutor};
use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use util::{Gate, LIMIT};

#[test]
fn no_thread_until_the_first_submit() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    assert_eq!(pool.live_threads(), 0);
    pool.submit(|| ()).unwrap().result_timeout(LIMIT).unwrap();
    assert_eq!(pool.live_threads(), 1);
}

#[test]
fn three_sequential_tasks_on_an_idle_pool_use_one_thread() {
    let pool = ThreadPoolExecutor::new(8).unwrap();
    let mut names = HashSet::new();
    for _ in 0..3 {
        let f = pool.submit(|| std::thread::current().id()).unwrap();
        names.insert(*f.result_timeout(LIMIT).unwrap());
    }
    assert_eq!(names.len(), 1);
    assert_eq!(pool.live_threads(), 1);
}

#[test]
fn many_sequential_tasks_still_use_one_thread() {
    let pool = ThreadPoolExecutor::new(8).unwrap();
    for i in 0..2000u32 {
        assert_eq!(
            *pool
                .submit(move || i)
                .unwrap()
                .result_timeout(LIMIT)
                .unwrap(),
            i
        );
    }
    assert_eq!(pool.live_threads(), 1);
}

#[test]
fn one_thread_per_submit_while_none_is_idle() {
    let pool = ThreadPoolExecutor::new(8).unwrap();
    let gate = Gate::new();
    let fs: Vec<_> = (0..3)
        .map(|_| {
            let g = gate.clone();
            pool.submit(move || g.wait()).unwrap()
        })
        .collect();
    // Each submit found no idle thread: three threads (Python's test_threads_terminate).
    assert_eq!(pool.live_threads(), 3);
    gate.open();
    for f in fs {
        f.result_timeout(LIMIT).unwrap();
    }
}

#[test]
fn a_saturated_pool_of_five_never_starts_a_sixth_thread() {
    let pool = ThreadPoolExecutor::new(5).unwrap();
    let gate = Gate::new();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let fs: Vec<_> = (0..15 * 5)
        .map(|_| {
            let (g, seen) = (gate.clone(), seen.clone());
            pool.submit(move || {
                seen.lock().unwrap().insert(std::thread::current().id());
                g.wait();
            })
            .unwrap()
        })
        .collect();
    assert_eq!(pool.live_threads(), 5);
    util::eventually("five tasks running", || pool.running_tasks() == 5);
    assert_eq!(pool.queued_tasks(), 70);
    gate.open();
    for f in fs {
        f.result_timeout(LIMIT).unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), 5);
    assert_eq!(pool.live_threads(), 5);
}

#[test]
fn idle_threads_are_reused_before_new_ones_start() {
    let pool = ThreadPoolExecutor::new(10).unwrap();
    // Two threads busy, then both idle.
    let gate = Gate::new();
    let (g1, g2) = (gate.clone(), gate.clone());
    let a = pool.submit(move || g1.wait()).unwrap();
    let b = pool.submit(move || g2.wait()).unwrap();
    gate.open();
    a.result_timeout(LIMIT).unwrap();
    b.result_timeout(LIMIT).unwrap();
    util::eventually("both idle", || pool.idle_threads() == 2);
    // Two more blocking tasks reuse them: still two threads.
    let gate = Gate::new();
    let (tx, rx) = mpsc::channel();
    let fs: Vec<_> = (0..2)
        .map(|_| {
            let (g, tx) = (gate.clone(), tx.clone());
            pool.submit(move || {
                tx.send(()).unwrap();
                g.wait()
            })
            .unwrap()
        })
        .collect();
    for _ in 0..2 {
        rx.recv_timeout(LIMIT).unwrap();
    }
    assert_eq!(pool.live_threads(), 2);
    // A third finds none idle: a third thread.
    let g = gate.clone();
    let c = pool.submit(move || g.wait()).unwrap();
    assert_eq!(pool.live_threads(), 3);
    gate.open();
    for f in fs.into_iter().chain([c]) {
        f.result_timeout(LIMIT).unwrap();
    }
}

#[test]
fn thread_names_use_the_prefix() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .thread_name_prefix("SpecialPool")
        .build()
        .unwrap();
    let gate = Gate::new();
    let (tx, started) = mpsc::channel();
    let fs: Vec<_> = (0..3)
        .map(|_| {
            let (g, tx) = (gate.clone(), tx.clone());
            pool.submit(move || {
                tx.send(()).unwrap();
                g.wait(); // hold this thread until all three tasks run at once
                std::thread::current().name().unwrap().to_owned()
            })
            .unwrap()
        })
        .collect();
    for _ in 0..3 {
        started.recv_timeout(LIMIT).unwrap();
    }
    gate.open();
    let mut names: Vec<String> = fs
        .iter()
        .map(|f| f.result_timeout(LIMIT).unwrap().clone())
        .collect();
    names.sort();
    assert_eq!(names, ["SpecialPool_0", "SpecialPool_1", "SpecialPool_2"]);
}

#[test]
fn default_thread_names_are_numbered_per_pool() {
    let name_in = |pool: &ThreadPoolExecutor| {
        pool.submit(|| std::thread::current().name().unwrap().to_owned())
            .unwrap()
            .result_timeout(LIMIT)
            .unwrap()
            .clone()
    };
    let a = ThreadPoolExecutor::new(1).unwrap();
    let b = ThreadPoolExecutor::new(1).unwrap();
    let (na, nb) = (name_in(&a), name_in(&b));
    for n in [&na, &nb] {
        let rest = n
            .strip_prefix("ThreadPoolExecutor-")
            .expect("default prefix");
        let (num, idx) = rest.split_once('_').unwrap();
        assert!(num.parse::<usize>().is_ok(), "{n}");
        assert_eq!(idx, "0");
    }
    assert_ne!(na, nb);
}

#[test]
fn max_workers_default_and_zero() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(default_max_workers(), 32.min(cpus + 4));
    assert_eq!(
        ThreadPoolExecutor::default().max_workers(),
        default_max_workers()
    );
    assert_eq!(
        ThreadPoolExecutor::builder().build().unwrap().max_workers(),
        default_max_workers()
    );
    let e = ThreadPoolExecutor::new(0).unwrap_err();
    assert!(e.is_zero_workers());
    assert_eq!(e.to_string(), "max_workers must be greater than 0");
    assert!(ThreadPoolExecutor::builder()
        .max_workers(0)
        .build()
        .is_err());
    assert!(ThreadPoolExecutor::builder()
        .thread_name_prefix("a\0b")
        .build()
        .is_err());
}
