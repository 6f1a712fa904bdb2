//! The sleep protocol: tasks submitted while workers spin, yield or park are never lost,
//! and a burst reaches every worker.

mod util;

use cfutures_thread_pool::ThreadPoolExecutor;
use std::collections::HashSet;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use util::{Gate, LIMIT};

#[test]
fn tasks_submitted_as_workers_go_to_sleep_are_never_lost() {
    let pool = Arc::new(ThreadPoolExecutor::new(3).unwrap());
    for round in 0..300u64 {
        // Pauses of 0–60 µs land before, during and after the workers' spin, yield and
        // park phases (the pause creates the idle period; nothing waits on it).
        std::thread::sleep(Duration::from_micros(round % 61));
        let submitters: Vec<_> = (0..2u64)
            .map(|t| {
                let p = pool.clone();
                std::thread::spawn(move || {
                    (0..1 + round % 4)
                        .map(|i| p.submit(move || round * 100 + t * 10 + i).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (t, s) in submitters.into_iter().enumerate() {
            for (i, f) in s.join().unwrap().iter().enumerate() {
                let want = round * 100 + t as u64 * 10 + i as u64;
                assert_eq!(*f.result_timeout(LIMIT).unwrap(), want, "round {round}");
            }
        }
    }
    assert!(pool.live_threads() <= 3);
}

#[test]
fn a_burst_after_all_workers_parked_reaches_every_worker() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    // Start four threads, then let them all go idle and park.
    let gate = Gate::new();
    let fs: Vec<_> = (0..4)
        .map(|_| {
            let g = gate.clone();
            pool.submit(move || g.wait()).unwrap()
        })
        .collect();
    gate.open();
    for f in fs {
        f.result_timeout(LIMIT).unwrap();
    }
    util::eventually("all four idle", || pool.idle_threads() == 4);
    std::thread::sleep(Duration::from_millis(5)); // long past the spin and yield phases
                                                  // A burst of four tasks that each hold their thread until all four have started.
    let gate = Gate::new();
    let (tx, rx) = mpsc::channel();
    for _ in 0..4 {
        let (g, tx) = (gate.clone(), tx.clone());
        pool.submit(move || {
            tx.send(std::thread::current().id()).unwrap();
            g.wait();
        })
        .unwrap();
    }
    let ids: HashSet<_> = (0..4).map(|_| rx.recv_timeout(LIMIT).unwrap()).collect();
    gate.open();
    assert_eq!(ids.len(), 4);
    assert_eq!(pool.live_threads(), 4);
}
