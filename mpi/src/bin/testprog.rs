//! The program the MPI tests drive: one MPI process per run (MPI initializes once per
//! process). `cfutures-mpi-testprog <scenario>`; the executor's rank prints `ok <scenario>`
//! when every check passed (and panics, exit code 101, otherwise).
fn main() {
    cfutures_mpi::init();
    #[cfg(feature = "mpi")]
    scenarios::main();
    #[cfg(not(feature = "mpi"))]
    println!("skip: cfutures-mpi was built without its `mpi` feature");
}

#[cfg(feature = "mpi")]
mod scenarios {
    use std::time::{Duration, Instant};

    use cfutures_combinators::{as_completed, wait, ExecutorExt, ReturnWhen};
    use cfutures_core::{Submit, Task, TaskError};
    use cfutures_mpi::{MpiPoolExecutor, RemoteTask};
    use serde::{Deserialize, Serialize};

    const WAIT: Duration = Duration::from_secs(30);

    fn square(x: u64) -> u64 {
        x * x
    }
    fn double(x: u64) -> u64 {
        x * 2
    }
    fn pid(_: ()) -> u32 {
        std::process::id()
    }
    fn boom(x: u32) -> u32 {
        assert!(x != 7, "seven is not allowed");
        x
    }
    fn fail_on_5(x: u32) -> u32 {
        assert!(x != 5, "five");
        x
    }
    /// Writes its pid to `path`, then sleeps `ms`.
    fn announce_and_sleep((path, ms): (String, u64)) -> u32 {
        std::fs::write(&path, std::process::id().to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }
    fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    static LEVEL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    fn set_level(l: u32) {
        assert!(l > 0, "level must be positive");
        LEVEL.store(l, std::sync::atomic::Ordering::Relaxed);
    }
    fn level(_: ()) -> u32 {
        LEVEL.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[derive(Serialize, Deserialize)]
    struct Divide {
        a: i64,
        b: i64,
    }
    impl Task for Divide {
        type Output = i64;
        fn run(self) -> Result<i64, TaskError> {
            if self.b == 0 {
                return Err(TaskError::msg("division by zero"));
            }
            Ok(self.a / self.b)
        }
    }
    impl RemoteTask for Divide {}

    pub(crate) fn main() {
        let scenario = std::env::args().nth(1).unwrap_or_default();
        match scenario.as_str() {
            "spawn" => {
                let pool = MpiPoolExecutor::builder()
                    .max_workers(2)
                    .quiet_panics(true)
                    .build()
                    .expect("spawn 2 workers");
                basics(&pool);
                shutdown_checks(&pool);
                println!("ok spawn");
            }
            "world" => {
                let r = MpiPoolExecutor::builder().quiet_panics(true).world(|pool| {
                    basics(pool);
                    shutdown_checks(pool);
                });
                if r.is_some() {
                    println!("ok world");
                }
            }
            "spawn-kill" => {
                let pool = MpiPoolExecutor::builder()
                    .max_workers(2)
                    .build()
                    .expect("spawn 2 workers");
                kill_checks(&pool);
                println!("ok spawn-kill");
            }
            "world-kill" => {
                let r = MpiPoolExecutor::builder()
                    .quiet_panics(true)
                    .world(kill_checks);
                if r.is_some() {
                    println!("ok world-kill");
                }
            }
            "spawn-time-limit" => {
                let pool = MpiPoolExecutor::builder()
                    .max_workers(2)
                    .build()
                    .expect("spawn 2 workers");
                let slow = pool
                    .submit_fn_with_timeout(sleep_ms, 60_000, Duration::from_millis(300))
                    .unwrap();
                let t0 = Instant::now();
                let e = slow.exception_timeout(WAIT).unwrap().expect("timed out");
                assert!(e.is_time_limit(), "{e:?}");
                assert!(t0.elapsed() < Duration::from_secs(5));
                // The pool carries on with the other worker.
                assert_eq!(
                    *pool
                        .submit_fn(square, 9)
                        .unwrap()
                        .result_timeout(WAIT)
                        .unwrap(),
                    81
                );
                assert_eq!(
                    pool.workers().iter().filter(|w| w.lost.is_some()).count(),
                    1
                );
                pool.shutdown(true, false);
                println!("ok spawn-time-limit");
            }
            "start-task-shutdown" => {
                let t0 = Instant::now();
                let pool = MpiPoolExecutor::new(2).expect("spawn");
                assert_eq!(
                    *pool
                        .submit_fn(square, 3)
                        .unwrap()
                        .result_timeout(WAIT)
                        .unwrap(),
                    9
                );
                pool.shutdown(true, false);
                println!("ok start-task-shutdown {:?}", t0.elapsed());
            }
            "pingpong" => {
                let rtt = cfutures_mpi::__raw_pingpong(2000, 40).expect("ping-pong");
                println!("ok pingpong raw round trip {rtt:?}");
            }
            "spawn-init" => {
                // An initializer runs in each worker before its first task.
                let pool = MpiPoolExecutor::builder()
                    .max_workers(2)
                    .initializer(set_level, 7u32)
                    .build()
                    .expect("spawn");
                let fs: Vec<_> = (0..10)
                    .map(|_| pool.submit_fn(level, ()).unwrap())
                    .collect();
                for f in &fs {
                    assert_eq!(*f.result_timeout(WAIT).unwrap(), 7);
                }
                pool.shutdown(true, false);
                // One that fails breaks the pool, as in Python.
                let pool = MpiPoolExecutor::builder()
                    .max_workers(1)
                    .quiet_panics(true)
                    .initializer(set_level, 0u32)
                    .build()
                    .expect("spawn");
                // (The submission may come before or after the pool learns it broke.)
                match pool.submit_fn(level, ()) {
                    Ok(f) => {
                        let e = f.result_timeout(WAIT).unwrap_err();
                        assert!(e.is_broken(), "{e:?}");
                    }
                    Err(e) => assert!(e.is_broken(), "{e:?}"),
                }
                assert!(pool.is_broken());
                assert!(pool.submit_fn(level, ()).unwrap_err().is_broken());
                pool.shutdown(true, false);
                println!("ok spawn-init");
            }
            "spawn-build-id" => {
                // Identity is the executable's content, not its path or inode: a copy
                // serves, a copy with one more byte is refused.
                let exe = std::env::current_exe().unwrap();
                let dir =
                    std::env::temp_dir().join(format!("cfutures-mpi-id-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let same = dir.join("same");
                let other = dir.join("other");
                std::fs::copy(&exe, &same).unwrap();
                std::fs::copy(&exe, &other).unwrap();
                {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&other)
                        .unwrap();
                    f.write_all(b"\0").unwrap();
                }
                let pool = MpiPoolExecutor::builder()
                    .max_workers(1)
                    .program(same.to_string_lossy())
                    .build()
                    .expect("a copy of the same build serves");
                assert_eq!(
                    *pool
                        .submit_fn(square, 5)
                        .unwrap()
                        .result_timeout(WAIT)
                        .unwrap(),
                    25
                );
                pool.shutdown(true, false);
                let e = MpiPoolExecutor::builder()
                    .max_workers(1)
                    .program(other.to_string_lossy())
                    .start_timeout(Duration::from_secs(30))
                    .build()
                    .expect_err("another build is refused");
                assert!(e.to_string().contains("not the same build"), "{e}");
                let _ = std::fs::remove_dir_all(&dir);
                println!("ok spawn-build-id");
            }
            "spawn-stop" => {
                // A worker that stops answering (SIGSTOP: as a hung host or a partition) is
                // declared lost by its missing heartbeats; the pool carries on.
                let pool = MpiPoolExecutor::builder()
                    .max_workers(2)
                    .heartbeat(Duration::from_millis(100), Duration::from_millis(600))
                    .build()
                    .expect("spawn");
                let victim_pid = pool.workers()[0].pid as i32;
                // SAFETY: signalling a process of our own test.
                assert_eq!(unsafe { libc::kill(victim_pid, libc::SIGSTOP) }, 0);
                let t0 = Instant::now();
                // Every task finishes: on the live worker, or failed as lost.
                let fs: Vec<_> = (0..50u64)
                    .map(|i| pool.submit_fn(square, i).unwrap())
                    .collect();
                let mut lost = 0;
                for (i, f) in fs.iter().enumerate() {
                    match f.result_timeout(WAIT) {
                        Ok(v) => assert_eq!(*v, (i * i) as u64),
                        Err(e) => {
                            assert!(e.task_error().is_some_and(|t| t.is_worker_lost()), "{e:?}");
                            lost += 1;
                        }
                    }
                }
                assert!(t0.elapsed() < Duration::from_secs(10));
                let w = pool.workers();
                assert!(w[0].lost.is_some() && w[1].lost.is_none(), "{w:?}");
                println!(
                    "{lost} tasks lost with the stopped worker, in {:?}",
                    t0.elapsed()
                );
                assert_eq!(
                    *pool
                        .submit_fn(square, 6)
                        .unwrap()
                        .result_timeout(WAIT)
                        .unwrap(),
                    36
                );
                pool.shutdown(true, false);
                // SAFETY: as above; the stopped worker goes now.
                unsafe { libc::kill(victim_pid, libc::SIGKILL) };
                println!("ok spawn-stop");
            }
            "comm-root1" => {
                // Python's MPICommExecutor(comm, root=1): over a communicator the program
                // made (here the world, initialized by the program itself).
                let (universe, threading) = cfutures_mpi::mpi::initialize_with_threading(
                    cfutures_mpi::mpi::Threading::Multiple,
                )
                .expect("MPI init");
                assert_eq!(threading, cfutures_mpi::mpi::Threading::Multiple);
                let world = universe.world();
                let r = MpiPoolExecutor::builder()
                    .quiet_panics(true)
                    .comm(&world, 1, |pool| {
                        basics(pool);
                        pool.workers().len()
                    });
                if let Some(n) = r {
                    assert_eq!(n, 2);
                    println!("ok comm-root1");
                }
                drop(universe); // MPI_Finalize on every rank
            }
            "idle" => {
                // No busy spin when idle: CPU time of the executor and of its workers over
                // 2 s of idleness (after one task).
                let pool = MpiPoolExecutor::new(2).expect("spawn");
                let _ = pool.submit_fn(square, 1).unwrap().result_timeout(WAIT);
                std::thread::sleep(Duration::from_millis(100));
                let pids: Vec<u32> = pool.workers().iter().map(|w| w.pid).collect();
                let cpu = |pid: u32| -> u64 {
                    let s =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let f: Vec<&str> = s
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .collect();
                    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
                        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
                };
                let me = std::process::id();
                let before: Vec<u64> = std::iter::once(me)
                    .chain(pids.iter().copied())
                    .map(cpu)
                    .collect();
                std::thread::sleep(Duration::from_secs(2));
                let after: Vec<u64> = std::iter::once(me)
                    .chain(pids.iter().copied())
                    .map(cpu)
                    .collect();
                let ticks: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
                // Clock ticks (1/100 s): 2 s of spinning would be 200.
                println!(
                    "idle 2 s: CPU ticks (1/100 s) executor {}, workers {:?}",
                    ticks[0],
                    &ticks[1..]
                );
                assert!(ticks.iter().all(|&t| t < 40), "{ticks:?}");
                pool.shutdown(true, false);
                println!("ok idle");
            }
            "perf" => {
                // A quick look at the W10 shapes (the benchmark proper is mpici's).
                let window: usize = std::env::var("CFUTURES_MPI_WINDOW")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(64);
                let pool = MpiPoolExecutor::builder()
                    .max_workers(2)
                    .window(window)
                    .build()
                    .expect("spawn");
                let _ = pool.submit_fn(square, 1).unwrap().result_timeout(WAIT);
                let t0 = Instant::now();
                let fs: Vec<_> = (0..10_000u64)
                    .map(|i| pool.submit_fn(square, i).unwrap())
                    .collect();
                for f in &fs {
                    f.result_timeout(WAIT).unwrap();
                }
                let per_task = t0.elapsed() / 10_000;
                let t0 = Instant::now();
                let mut each = Vec::with_capacity(2000);
                for i in 0..2000u64 {
                    let t = Instant::now();
                    pool.submit_fn(square, i)
                        .unwrap()
                        .result_timeout(WAIT)
                        .unwrap();
                    each.push(t.elapsed());
                }
                let rtt = t0.elapsed() / 2000;
                each.sort_unstable();
                println!(
                    "round trips: min {:?}, median {:?}, p90 {:?}, max {:?}",
                    each[0], each[1000], each[1800], each[1999]
                );
                let t0 = Instant::now();
                let n = pool
                    .map_builder()
                    .chunksize(1000)
                    .timeout(WAIT)
                    .map(double, 0..1_000_000u64)
                    .unwrap()
                    .count();
                assert_eq!(n, 1_000_000);
                let map = t0.elapsed();
                println!("ok perf window {window}: {per_task:?}/task, round trip {rtt:?}, map 1M/1000 {map:?}");
            }
            other => panic!("unknown scenario {other:?}"),
        }
    }

    fn basics(pool: &MpiPoolExecutor) {
        // Results, from other processes; and the events they make.
        let events = pool.events();
        let f = pool.submit_fn(square, 12).unwrap();
        assert_eq!(*f.result_timeout(WAIT).unwrap(), 144);
        let kinds: Vec<&str> = (0..3)
            .map(|_| events.recv_timeout(WAIT).expect("an event").kind())
            .collect();
        assert_eq!(kinds, ["submitted", "started", "finished"]);
        drop(events);
        let p = *pool
            .submit_fn(pid, ())
            .unwrap()
            .result_timeout(WAIT)
            .unwrap();
        assert_ne!(p, std::process::id());
        let workers = pool.workers();
        assert!(workers.iter().any(|w| w.pid == p), "{workers:?}");
        assert!(workers.iter().all(|w| !w.host.is_empty()));
        // Many at once, in order.
        let fs: Vec<_> = (0..2000u64)
            .map(|i| pool.submit_fn(square, i).unwrap())
            .collect();
        for (i, f) in fs.iter().enumerate() {
            assert_eq!(*f.result_timeout(WAIT).unwrap(), (i * i) as u64);
        }
        // Task types, and errors they return.
        let ok = pool.submit(Divide { a: 10, b: 3 }).unwrap();
        let bad = pool.submit(Divide { a: 1, b: 0 }).unwrap();
        assert_eq!(*ok.result_timeout(WAIT).unwrap(), 3);
        let e = bad.exception_timeout(WAIT).unwrap().expect("failed");
        assert!(
            e.is_error() && e.to_string().contains("division by zero"),
            "{e:?}"
        );
        // Panics fail their task; the worker survives.
        let e = pool
            .submit_fn(boom, 7)
            .unwrap()
            .exception_timeout(WAIT)
            .unwrap()
            .unwrap();
        assert_eq!(e.panic_message(), Some("seven is not allowed"), "{e:?}");
        assert_eq!(
            *pool
                .submit_fn(boom, 8)
                .unwrap()
                .result_timeout(WAIT)
                .unwrap(),
            8
        );
        // map with chunksize (packed numbers), and buffersize.
        let out: Vec<u64> = pool
            .map_builder()
            .chunksize(1000)
            .timeout(WAIT)
            .map(double, 0..100_000u64)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out.len(), 100_000);
        assert!(out.iter().enumerate().all(|(i, &y)| y == 2 * i as u64));
        let out: Vec<_> = pool
            .map_builder()
            .chunksize(4)
            .buffersize(2)
            .timeout(WAIT)
            .map(fail_on_5, 0..10u32)
            .unwrap()
            .collect();
        for (i, r) in out.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i as u32),
                Err(e) => {
                    assert_eq!(i, 5);
                    assert_eq!(e.task_error().and_then(|t| t.panic_message()), Some("five"));
                }
            }
        }
        // wait and as_completed.
        let fs: Vec<_> = (0..20u64)
            .map(|i| pool.submit_fn(square, i).unwrap())
            .collect();
        let done = wait(&fs, Some(WAIT), ReturnWhen::AllCompleted);
        assert_eq!(done.done.len(), 20);
        let mut seen: Vec<u64> = as_completed(&fs, Some(WAIT))
            .map(|f| *f.unwrap().result().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
        // Several threads submit at once.
        std::thread::scope(|s| {
            for t in 0..4u64 {
                s.spawn(move || {
                    let fs: Vec<_> = (0..200u64)
                        .map(|i| pool.submit_fn(square, t * 1000 + i).unwrap())
                        .collect();
                    for (i, f) in fs.iter().enumerate() {
                        let x = t * 1000 + i as u64;
                        assert_eq!(*f.result_timeout(WAIT).unwrap(), x * x);
                    }
                });
            }
        });
        // Cancel: queued tasks behind slow ones can be cancelled, and never run.
        // (A worker may hold up to 64 tasks at once, the default window.)
        let slow: Vec<_> = (0..(pool.workers().len() as u64) * 64 + 4)
            .map(|_| pool.submit_fn(sleep_ms, 5).unwrap())
            .collect();
        let victim = pool.submit_fn(square, 5).unwrap();
        assert!(victim.cancel(), "a queued task can be cancelled");
        assert!(victim.cancelled());
        for f in &slow {
            assert_eq!(*f.result_timeout(WAIT).unwrap(), 5);
        }
        // A timeout on a result is the caller's, not the task's.
        let f = pool.submit_fn(sleep_ms, 200).unwrap();
        assert!(f.result_timeout(Duration::from_millis(1)).is_err());
        assert_eq!(*f.result_timeout(WAIT).unwrap(), 200);
        let stats = pool.stats();
        assert!(stats.succeeded > 2000 && stats.failed >= 2, "{stats:?}");
    }

    fn shutdown_checks(pool: &MpiPoolExecutor) {
        // shutdown(wait, cancel_futures): the queued tasks are cancelled, the sent ones end.
        let fs: Vec<_> = (0..40)
            .map(|_| pool.submit_fn(sleep_ms, 20).unwrap())
            .collect();
        pool.shutdown(true, true);
        let cancelled = fs.iter().filter(|f| f.cancelled()).count();
        let ran = fs
            .iter()
            .filter(|f| f.done() && !f.cancelled() && f.result().is_ok())
            .count();
        assert_eq!(cancelled + ran, 40, "every future is done");
        assert!(cancelled > 0, "queued tasks were cancelled");
        assert!(pool.submit_fn(square, 1).unwrap_err().is_shutdown());
        pool.shutdown(true, false); // idempotent
    }

    fn kill_checks(pool: &MpiPoolExecutor) {
        let path = std::env::temp_dir().join(format!("cfutures-mpi-kill-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let path_s = path.to_string_lossy().into_owned();
        let victim = pool
            .submit_fn(announce_and_sleep, (path_s, 60_000))
            .unwrap();
        // Bounded wait for the task to start on its worker.
        let t0 = Instant::now();
        let pid: i32 = loop {
            if let Some(p) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                break p;
            }
            assert!(t0.elapsed() < WAIT, "the task did not start");
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = std::fs::remove_file(&path);
        let rank = pool
            .workers()
            .iter()
            .find(|w| w.pid == pid as u32)
            .expect("a worker")
            .rank;
        let events = pool.events();
        // SAFETY: sending a signal to a process of our own test.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let killed = Instant::now();
        let e = victim
            .exception_timeout(WAIT)
            .unwrap()
            .expect("the task failed");
        let took = killed.elapsed();
        match e.without_output() {
            TaskError::WorkerLost { rank: r, host, .. } => {
                assert_eq!(*r, rank);
                assert!(!host.is_empty());
            }
            other => panic!("expected WorkerLost, got {other:?}"),
        }
        println!("detected the killed worker (rank {rank}) in {took:?}");
        // Its events: the worker died (its rank), the task finished as lost.
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        let complete = |seen: &[cfutures_core::Event]| {
            seen.iter()
                .any(|e| e.kind() == "worker died" && e.worker() == Some(rank as u64))
                && seen
                    .iter()
                    .any(|e| e.outcome() == Some(cfutures_core::TaskOutcome::Lost))
        };
        while !complete(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(e) => seen.push(e),
                Err(_) => panic!("events missing: {seen:?}"),
            }
        }
        // The pool carries on with the others.
        assert_eq!(
            *pool
                .submit_fn(square, 4)
                .unwrap()
                .result_timeout(WAIT)
                .unwrap(),
            16
        );
        pool.shutdown(true, false);
    }
}
