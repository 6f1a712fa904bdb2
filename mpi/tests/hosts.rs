//! Three hosts on this machine (network namespaces, `tests/netns`): the spawn-mode executor
//! started under `mpirun -n 1` on host h1 places its two workers on h2 and h3 (asserted on the
//! hostnames the workers and their tasks report), and a link taken down mid-run (h3's cable
//! pulled) ends in `WorkerLost` errors on that worker's futures, not a hang; the pool goes on
//! with the worker on h2.
//!
//! `harness = false`: the same binary is the test (no arguments), the program `mpirun` starts
//! on h1 (`CFUTURES_HOSTS_ROLE=master`), and the spawned workers (`cfutures_mpi::init`).
//! Skipped, with the reason printed, without the `mpi` feature, without root, `ip`,
//! `unshare` or Open MPI, or where a network namespace cannot be created. Every MPI process
//! runs under `timeout -k 10`; every namespace is deleted at the end, and every process left
//! in one is killed first.

#[cfg(feature = "mpi")]
mod netns;

fn main() {
    cfutures_mpi::init();
    #[cfg(feature = "mpi")]
    {
        if std::env::var_os(real::ROLE).is_some() {
            real::master();
            return;
        }
        real::main();
    }
    #[cfg(not(feature = "mpi"))]
    {
        println!("hosts: SKIPPED: cfutures-mpi was built without its `mpi` feature");
        println!("test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
    }
}

#[cfg(feature = "mpi")]
mod real {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use cfutures_mpi::MpiPoolExecutor;

    use crate::netns::{self, Hosts};

    pub(crate) const ROLE: &str = "CFUTURES_HOSTS_ROLE";
    const DIR: &str = "CFUTURES_HOSTS_DIR";
    /// Bound on any one wait of the master (a result, the start).
    const WAIT: Duration = Duration::from_secs(30);
    /// Bound on the whole `mpirun` (then `timeout` kills it; -k 10 after).
    const MPIRUN_SECS: u32 = 120;

    // ---- the master: runs on h1 under `mpirun -n 1` ----

    fn hostname(_: ()) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Announces itself (`started-<host>-<pid>-<n>` in `dir`), then holds until `dir/release`
    /// exists (at most 60 s), then returns its host.
    fn hold((dir, n): (String, u32)) -> String {
        let host = hostname(());
        let dir = PathBuf::from(dir);
        let _ = std::fs::write(
            dir.join(format!("started-{host}-{}-{n}", std::process::id())),
            "",
        );
        let end = Instant::now() + Duration::from_secs(60);
        while !dir.join("release").exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        host
    }

    struct Report(std::fs::File);
    impl Report {
        fn line(&mut self, s: &str) {
            // One write per line, flushed: the test reads the file while this runs.
            let _ = self.0.write_all(format!("{s}\n").as_bytes());
            let _ = self.0.flush();
            println!("{s}");
        }
    }

    pub(crate) fn master() {
        let dir = std::env::var(DIR).expect("CFUTURES_HOSTS_DIR");
        let mut r = Report(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join("report"))
                .expect("open the report"),
        );
        r.line(&format!("master {} {}", std::process::id(), hostname(())));
        let t0 = Instant::now();
        let pool = MpiPoolExecutor::builder()
            .max_workers(2)
            .heartbeat(Duration::from_millis(200), Duration::from_secs(1))
            .start_timeout(WAIT)
            .quiet_panics(true)
            .build()
            .expect("spawn 2 workers over the hosts");
        r.line(&format!("started {:?}", t0.elapsed()));
        for w in pool.workers() {
            r.line(&format!("worker {} {} {}", w.rank, w.host, w.pid));
        }
        // Where the tasks run, by their own account.
        let fs: Vec<_> = (0..20)
            .map(|_| pool.submit_fn(hostname, ()).unwrap())
            .collect();
        let mut hosts: Vec<String> = fs
            .iter()
            .map(|f| f.result_timeout(WAIT).expect("hostname task").clone())
            .collect();
        hosts.sort();
        hosts.dedup();
        r.line(&format!("task-hosts {}", hosts.join(",")));

        // The partition: held tasks, submitted one at a time until each worker runs one
        // (however the executor spreads them: its window may send several to one worker);
        // then the test takes h3's link down and, once h3's are reported lost, releases
        // the rest.
        let started = |host: &str| {
            std::fs::read_dir(&dir)
                .map(|d| {
                    d.flatten().any(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("started-{host}-"))
                    })
                })
                .unwrap_or(false)
        };
        let mut held = Vec::new();
        let t = Instant::now();
        while !(started("h2") && started("h3")) && held.len() < 64 && t.elapsed() < WAIT {
            held.push(
                pool.submit_fn(hold, (dir.clone(), held.len() as u32))
                    .unwrap(),
            );
            // Until this one started, or a moment (it may wait behind a held one).
            let n = held.len();
            let t1 = Instant::now();
            while t1.elapsed() < Duration::from_millis(300) {
                let count = std::fs::read_dir(&dir)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.file_name().to_string_lossy().starts_with("started-"))
                            .count()
                    })
                    .unwrap_or(0);
                if count >= n {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        r.line(&format!("held {}", held.len()));
        // In the order they complete: h3's fail first, then the test releases h2's.
        for f in cfutures_combinators::as_completed(&held, Some(Duration::from_secs(60))) {
            let Ok(f) = f else {
                r.line("held-timeout");
                break;
            };
            match f.result() {
                Ok(host) => r.line(&format!("held-ok {host}")),
                Err(e) => match e.task_error().map(|t| t.without_output()) {
                    Some(cfutures_core::TaskError::WorkerLost { rank, host, why }) => {
                        r.line(&format!("held-lost {rank} {host} {why}"))
                    }
                    _ => r.line(&format!("held-err {e}")),
                },
            }
        }
        // The pool goes on with the worker left.
        let fs: Vec<_> = (0..10)
            .map(|_| pool.submit_fn(hostname, ()).unwrap())
            .collect();
        let mut after: Vec<String> = fs
            .iter()
            .map(|f| match f.result_timeout(WAIT) {
                Ok(h) => h.clone(),
                Err(e) => format!("error: {e}"),
            })
            .collect();
        after.sort();
        after.dedup();
        r.line(&format!("after {}", after.join(",")));
        let t = Instant::now();
        pool.shutdown(true, false);
        r.line(&format!("shutdown {:?}", t.elapsed()));
        r.line("done");
        drop(pool);
    }

    // ---- the test: sets up the hosts, runs mpirun on h1, pulls h3's cable ----

    pub(crate) fn main() {
        let t0 = Instant::now();
        if let Some(why) = netns::unavailable() {
            println!("hosts: SKIPPED: {why}");
            println!("test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
            return;
        }
        println!("test three_hosts_spawn_placement_and_partition ...");
        let result = std::panic::catch_unwind(three_hosts);
        match result {
            Ok(()) => {
                println!("test three_hosts_spawn_placement_and_partition ... ok");
                println!(
                    "\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered \
                     out; finished in {:.2}s",
                    t0.elapsed().as_secs_f64()
                );
            }
            Err(_) => {
                println!("test three_hosts_spawn_placement_and_partition ... FAILED");
                println!(
                    "\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 \
                     filtered out; finished in {:.2}s",
                    t0.elapsed().as_secs_f64()
                );
                std::process::exit(101);
            }
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn three_hosts() {
        // Dropped last (after `child` is reaped or killed): deletes the namespaces, killing
        // whatever still runs inside (orted, workers, a partitioned mpirun).
        let hosts = Hosts::up(3).expect("set up three hosts");
        let dir = hosts.dir().to_path_buf();
        let report = dir.join("report");
        let dir_s = dir.display().to_string();
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = hosts.mpirun(
            MPIRUN_SECS,
            1,
            &[(ROLE, "master"), (DIR, &dir_s)],
            &exe,
            &[],
        );
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .env("OMPI_MCA_mpi_yield_when_idle", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start mpirun");
        // Drain stdout/stderr on threads so that a full pipe never blocks mpirun.
        let out_t = drain(child.stdout.take().unwrap());
        let err_t = drain(child.stderr.take().unwrap());

        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drive(&hosts, &dir, &report)
        }));

        // The master is done (or the checks failed): give mpirun a bounded time to end on
        // its own, then kill it with everything in the namespaces.
        let end = Instant::now() + Duration::from_secs(5);
        let mut status = None;
        while Instant::now() < end {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match status {
            Some(s) => println!("hosts: mpirun ended on its own: {s}"),
            None => println!(
                "hosts: mpirun still running 5 s after the master's report: killed (Open \
                 MPI's runtime waits for the cut-off host's daemon)"
            ),
        }
        let rep = read(&report);
        drop(hosts); // kills what is left in the namespaces, deletes them
        let _ = child.kill();
        let status = child.wait().ok();
        let out = out_t.join().unwrap_or_default();
        let err = err_t.join().unwrap_or_default();
        println!("--- mpirun: {status:?}\n--- report:\n{rep}--- stdout:\n{out}--- stderr:\n{err}");
        if let Err(p) = outcome {
            std::panic::resume_unwind(p);
        }
    }

    fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    }

    fn drive(hosts: &Hosts, dir: &Path, report: &Path) {
        let has = |needle: &str| read(report).lines().any(|l| l.starts_with(needle));
        // Started: the workers' hosts.
        assert!(
            netns::wait_until(Duration::from_secs(60), || has("held")),
            "the master did not start its held tasks within 60 s"
        );
        let rep = read(report);
        let workers: Vec<&str> = rep
            .lines()
            .filter(|l| l.starts_with("worker "))
            .map(|l| l.split(' ').nth(2).unwrap())
            .collect();
        let mut sorted = workers.clone();
        sorted.sort();
        assert_eq!(sorted, ["h2", "h3"], "workers' hosts: {rep}");
        assert!(
            rep.contains("task-hosts h2,h3\n"),
            "tasks ran on other hosts than h2 and h3: {rep}"
        );
        let master_pid: u32 = rep
            .lines()
            .find_map(|l| l.strip_prefix("master "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("master pid");
        assert!(rep.contains(&format!("master {master_pid} h1\n")), "{rep}");

        // Every held task is running or queued on its worker: wait until both hosts ran one.
        let started = |host: &str| {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten().any(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("started-{host}-"))
                    })
                })
                .unwrap_or(false)
        };
        assert!(
            netns::wait_until(Duration::from_secs(30), || started("h2") && started("h3")),
            "held tasks did not start on both h2 and h3"
        );

        // Pull h3's cable.
        let cut = Instant::now();
        hosts.link_down(3).expect("link down");
        println!("hosts: h3's link down");
        assert!(
            netns::wait_until(Duration::from_secs(20), || has("held-lost")),
            "no future failed within 20 s of the partition (a hang): {}",
            read(report)
        );
        println!(
            "hosts: first WorkerLost {:?} after the link went down",
            cut.elapsed()
        );
        std::fs::write(dir.join("release"), "").unwrap();
        assert!(
            netns::wait_until(Duration::from_secs(60), || has("done")),
            "the master did not finish within 60 s of the partition: {}",
            read(report)
        );
        println!(
            "hosts: master done {:?} after the link went down",
            cut.elapsed()
        );
        let rep = read(report);
        let n: usize = rep
            .lines()
            .find_map(|l| l.strip_prefix("held "))
            .and_then(|n| n.parse().ok())
            .expect("held count");
        let lost: Vec<&str> = rep.lines().filter(|l| l.starts_with("held-")).collect();
        assert_eq!(lost.len(), n, "every held task has an outcome: {rep}");
        for l in &lost {
            let ok = l.starts_with("held-ok h2")
                || (l.starts_with("held-lost ") && l.split(' ').nth(2) == Some("h3"));
            assert!(ok, "unexpected outcome of a held task: {l}\n{rep}");
        }
        assert!(rep.contains("held-lost "), "{rep}");
        assert!(rep.contains("held-ok h2"), "{rep}");
        assert!(
            rep.contains("after h2\n"),
            "the pool did not go on on h2: {rep}"
        );
        // The master process itself ends (its MPI_Finalize is bounded), whatever mpirun does.
        // (A zombie counts as gone: its parent, mpirun, may be stuck on the lost daemon.)
        let gone = netns::wait_until(Duration::from_secs(30), || {
            let stat = read(Path::new(&format!("/proc/{master_pid}/stat")));
            stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
        });
        assert!(
            gone,
            "the master process did not exit within 30 s of its report"
        );
        println!(
            "hosts: master exited {:?} after the link went down",
            cut.elapsed()
        );
    }
}
