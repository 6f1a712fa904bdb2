//! W10: the MPI executor against `mpi4py.futures.MPIPoolExecutor`, in the same run, spawn
//! mode (singleton start, no `mpirun`), 2 workers, printing ratios.
//!
//! ```sh
//! MPICC=mpicc.openmpi OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
//!   OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 \
//!   cargo run --release -p cfutures-mpi --features mpi --example w10 [-- --quick]
//! ```
//! (`mpi/bench.sh` sets that environment and runs it; `.ci/mpi.sh` runs it with `--quick`.)
//!
//! * raw ping-pong: rsmpi send/receive of 40 bytes (a tiny task's frame) between this
//!   process and 2 spawned children (their spawn intercommunicator merged into one
//!   communicator; the executor's kind of link: parent↔child over TCP), the children
//!   alternating in blocks; then the executor over that same communicator
//!   (`cfutures_mpi::comm`, the children serve it): its round trip ÷ that ping-pong. And the
//!   same ping-pong through the crate's own MPI layer (`__raw_pingpong`, polling with
//!   `MPI_Iprobe` as the executor's driver does). The faster of the two ping-pongs is the
//!   reference of the spawn-mode round trip;
//! * W10 throughput: 10,000 tiny tasks (`square`) submitted, then all collected;
//! * W10 round trip: one tiny task at a time (÷ the raw ping-pong);
//! * W10 map: `map(double)` over 1M items, chunksize 1000;
//! * start + one task + shutdown: a fresh process each (MPI_Init included), median of 3;
//! * killed worker: a worker running a task gets SIGKILL; time until its future fails.
//!
//! The Python half is `examples/python/mpi4py_bench.py`, run by this program (each part
//! under a hard timeout; the killed-worker part is expected to hang there and is reported as
//! such). Without python3 or mpi4py the Rust half runs alone, with a note.

fn main() {
    cfutures_mpi::init();
    #[cfg(feature = "mpi")]
    bench::main();
    #[cfg(not(feature = "mpi"))]
    println!("w10: needs `--features mpi` (and Open MPI): nothing to run");
}

#[cfg(feature = "mpi")]
#[path = "../tests/util/marked.rs"]
mod marked;

#[cfg(feature = "mpi")]
mod bench {
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use cfutures_combinators::ExecutorExt;
    use cfutures_mpi::mpi;
    use cfutures_mpi::mpi::topology::MergeOrder;
    use cfutures_mpi::mpi::traits::*;
    use cfutures_mpi::MpiPoolExecutor;

    const RAW_ARG: &str = "--w10-raw-child";
    /// Ends a raw child's ping-pong loop (an empty message: serve the executor once).
    const QUIT: u8 = 0xFF;
    const WAIT: Duration = Duration::from_secs(60);
    /// Round trips are timed in this many blocks; the median block is the figure.
    const BLOCKS: u32 = 5;

    fn square(x: u64) -> u64 {
        x.wrapping_mul(x)
    }
    fn double(x: u64) -> u64 {
        x * 2
    }
    /// Writes its pid to `path`, then sleeps `ms`.
    fn announce_and_sleep((path, ms): (String, u64)) -> u32 {
        let _ = std::fs::write(&path, std::process::id().to_string());
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }

    struct Sizes {
        tasks: u64,
        trips: u32,
        map_items: u64,
        starts: usize,
    }

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().collect();
        match args.get(1).map(String::as_str) {
            Some(RAW_ARG) => return raw_child(),
            Some("--start") => return start_once(),
            _ => {}
        }
        let quick = args.iter().any(|a| a == "--quick") || std::env::var_os("W10_QUICK").is_some();
        let sizes = if quick {
            Sizes {
                tasks: 10_000,
                trips: 500,
                map_items: 1_000_000,
                starts: 1,
            }
        } else {
            Sizes {
                tasks: 10_000,
                trips: 2_000,
                map_items: 1_000_000,
                starts: 3,
            }
        };
        println!(
            "W10: cfutures-mpi vs mpi4py.futures, spawn mode, 2 workers{}",
            if quick { " (quick)" } else { "" }
        );
        println!("machine: {} CPUs, load {}", cpus(), load());

        // Starts first, each in a fresh process (before this one holds MPI).
        let rs_start = median(
            (0..sizes.starts)
                .map(|_| start_child().unwrap_or(f64::NAN))
                .collect(),
        );

        let (universe, threading) =
            mpi::initialize_with_threading(mpi::Threading::Multiple).expect("MPI initializes");
        assert_eq!(threading, mpi::Threading::Multiple);
        let (raw, (rt_same, same_ratio)) = raw_pingpong(&universe, sizes.trips);
        // The crate's own baseline: the same exchange through its MPI layer (a polling
        // receive, `MPI_Iprobe`), one echo peer.
        let raw_crate = median(
            (0..BLOCKS)
                .map(|_| {
                    cfutures_mpi::__raw_pingpong((sizes.trips / BLOCKS).max(1), 40)
                        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
                })
                .collect(),
        );
        println!("raw ping-pong through cfutures-mpi's layer (Iprobe): median {raw_crate:.1} µs");
        let floor = raw.min(raw_crate);

        let pool = MpiPoolExecutor::new(2).expect("spawn 2 workers");
        // Warm: both workers answered.
        for i in 0..100 {
            pool.submit_fn(square, i)
                .unwrap()
                .result_timeout(WAIT)
                .unwrap();
        }
        let thr = median(
            (0..sizes.starts)
                .map(|_| throughput(&pool, sizes.tasks))
                .collect(),
        );
        let rt = round_trip(&pool, sizes.trips, "spawn mode");
        let map = map_ms(&pool, sizes.map_items);
        let kill = killed_worker(&pool);
        pool.shutdown(true, false);
        drop(pool);

        let py = python(&sizes);
        let ok = |v: f64, target: f64| if v <= target { "ok" } else { "MISSED" };
        println!();
        println!("| W10 | cfutures-mpi | target | mpi4py.futures (same run) | ratio |");
        println!("|---|---|---|---|---|");
        println!("| raw rsmpi ping-pong (2 spawned children, merged communicator, 40 B, blocking receive) | {raw:.1} µs / round trip | — | — | — |");
        println!("| raw ping-pong, cfutures-mpi's layer (40 B, `MPI_Iprobe` poll) | {raw_crate:.1} µs / round trip | — | — | — |");
        println!(
            "| throughput, {} tiny tasks | {thr:.2} µs / task ({}) | ≤ 15 µs | {} | {} |",
            sizes.tasks,
            ok(thr, 15.0),
            fmt_py(py.thr, "µs / task"),
            ratio(py.thr, thr)
        );
        println!(
            "| round trip, one task at a time | {rt:.1} µs = {:.2}× the faster ping-pong ({:.2}× / {:.2}×) ({}) | ≤ 2× | {} | {} |",
            rt / floor,
            rt / raw,
            rt / raw_crate,
            ok(rt / floor, 2.0),
            fmt_py(py.rt, "µs"),
            ratio(py.rt, rt)
        );
        println!(
            "| round trip over the ping-pong's own communicator (`cfutures_mpi::comm`, between its blocks) | {rt_same:.1} µs = {same_ratio:.2}× that ping-pong (median of {BLOCKS} round ratios) ({}) | ≤ 2× | — | — |",
            ok(same_ratio, 2.0)
        );
        println!(
            "| map `x*2`, {} items, chunksize 1000 | {map:.1} ms ({}) | ≤ 60 ms | {} | {} |",
            sizes.map_items,
            ok(map, 60.0),
            fmt_py(py.map, "ms"),
            ratio(py.map, map)
        );
        println!(
            "| start + one task + shutdown (fresh process, median of {}) | {:.0} ms ({}) | ≤ mpi4py | {} | {} |",
            sizes.starts,
            rs_start,
            match py.start {
                Some(p) => ok(rs_start, p),
                None => "no peer",
            },
            fmt_py(py.start, "ms"),
            ratio(py.start, rs_start)
        );
        println!(
            "| killed worker → future failed | {} ({}) | ≤ 2 s | {} | — |",
            match kill {
                Some(s) => format!("{:.2} s", s),
                None => "not detected".into(),
            },
            match kill {
                Some(s) if s <= 2.0 => "ok",
                _ => "MISSED",
            },
            py.kill
        );
        if let Some(note) = &py.note {
            println!("\nnote: {note}");
        }
        // `universe` finalizes MPI when dropped, after the pool's workers are gone.
        drop(universe);
    }

    fn fmt_py(v: Option<f64>, unit: &str) -> String {
        match v {
            Some(v) if v >= 100.0 => format!("{v:.0} {unit}"),
            Some(v) => format!("{v:.2} {unit}"),
            None => "—".into(),
        }
    }

    fn ratio(py: Option<f64>, rs: f64) -> String {
        match py {
            Some(p) => format!("cfutures {:.1}× faster", p / rs),
            None => "—".into(),
        }
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn cpus() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    fn load() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    }

    // ---- raw ping-pong, then the executor over the same communicator ----

    fn raw_child() {
        let (universe, _) =
            mpi::initialize_with_threading(mpi::Threading::Multiple).expect("MPI initializes");
        let world = universe.world();
        let parent = world.parent().expect("spawned by the benchmark");
        let merged = parent.merge(MergeOrder::High);
        let p = merged.process_at_rank(0);
        loop {
            let (msg, _) = p.receive_vec::<u8>();
            match msg.as_slice() {
                // Serve the executor that the parent runs over this same communicator,
                // then back to the ping-pong.
                [] => {
                    cfutures_mpi::comm(&merged, 0, |_| ());
                }
                [QUIT] => break,
                _ => p.send(&msg[..]),
            }
        }
        drop(merged);
        disconnect(parent);
        drop(universe);
    }

    fn disconnect(c: mpi::topology::InterCommunicator) {
        let mut raw = c.as_raw();
        std::mem::forget(c);
        // SAFETY: `raw` is a valid intercommunicator that nothing else uses any more (its
        // owner was forgotten above, so it is not freed twice).
        unsafe {
            mpi::ffi::MPI_Comm_disconnect(&mut raw);
        }
    }

    /// The raw ping-pong: 2 spawned children, their spawn intercommunicator merged into one
    /// communicator (this process rank 0, the children 1 and 2), 40-byte messages. Then
    /// the executor over that same communicator (`cfutures_mpi::comm`, the children serve):
    /// its round trip, one task at a time. Returns (ping-pong, executor round trip), in µs,
    /// median blocks.
    fn raw_pingpong(universe: &mpi::environment::Universe, trips: u32) -> (f64, (f64, f64)) {
        let world = universe.world();
        let mut exe = Command::new(std::env::current_exe().unwrap());
        exe.arg(RAW_ARG);
        let child = world
            .process_at_rank(0)
            .spawn(&exe, 2)
            .expect("spawn the raw children");
        let merged = child.merge(MergeOrder::Low);
        let msg = [7u8; 40];
        for r in 1..=2 {
            let c = merged.process_at_rank(r);
            for _ in 0..100 {
                c.send(&msg[..]);
                let _ = c.receive_vec::<u8>();
            }
        }
        // Rounds: a block of ping-pongs with each child, then the executor over the same
        // communicator for a block of round trips (the children serve it), and again. Each
        // round gives a ratio measured seconds apart; the median ratio is the figure (a
        // shared, loaded machine makes single blocks swing by 10x).
        let block = (trips / BLOCKS).max(1);
        let mut per = [Vec::new(), Vec::new()];
        let mut exec = Vec::new();
        let mut ratios = Vec::new();
        for _ in 0..BLOCKS {
            for (r, v) in per.iter_mut().enumerate() {
                let c = merged.process_at_rank(r as i32 + 1);
                let t = Instant::now();
                for _ in 0..block {
                    c.send(&msg[..]);
                    let _ = c.receive_vec::<u8>();
                }
                v.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(block));
            }
            for r in 1..=2 {
                merged.process_at_rank(r).send(&[0u8; 0][..]);
            }
            let e = cfutures_mpi::comm(&merged, 0, |pool| {
                for i in 0..20 {
                    pool.submit_fn(square, i)
                        .unwrap()
                        .result_timeout(WAIT)
                        .unwrap();
                }
                let t = Instant::now();
                for i in 0..u64::from(block) {
                    assert_eq!(
                        *pool
                            .submit_fn(square, i)
                            .unwrap()
                            .result_timeout(WAIT)
                            .unwrap(),
                        i * i
                    );
                }
                t.elapsed().as_secs_f64() * 1e6 / f64::from(block)
            })
            .expect("rank 0 runs the executor");
            let raw_round = (per[0].last().unwrap() + per[1].last().unwrap()) / 2.0;
            exec.push(e);
            ratios.push(e / raw_round);
        }
        for r in 1..=2 {
            merged.process_at_rank(r).send(&[QUIT][..]);
        }
        let all: Vec<f64> = per.iter().flatten().copied().collect();
        println!(
            "raw ping-pong: median {:.1} µs per round trip (blocks of {block}: child 0 {:.1?}, child 1 {:.1?})",
            median(all.clone()),
            per[0],
            per[1]
        );
        println!(
            "round trip (comm over the ping-pong's communicator, between its blocks): {exec:.1?} µs, ratios {ratios:.2?}"
        );
        let same = (median(exec), median(ratios));
        drop(merged);
        disconnect(child);
        (median(all), same)
    }

    // ---- the executor ----

    fn throughput(pool: &MpiPoolExecutor, n: u64) -> f64 {
        let t = Instant::now();
        let fs: Vec<_> = (0..n).map(|i| pool.submit_fn(square, i).unwrap()).collect();
        for (i, f) in fs.iter().enumerate() {
            assert_eq!(*f.result_timeout(WAIT).unwrap(), square(i as u64));
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    }

    fn round_trip(pool: &MpiPoolExecutor, trips: u32, what: &str) -> f64 {
        let block = (trips / BLOCKS).max(1);
        let mut per = Vec::new();
        for _ in 0..BLOCKS {
            let t = Instant::now();
            for i in 0..u64::from(block) {
                assert_eq!(
                    *pool
                        .submit_fn(square, i)
                        .unwrap()
                        .result_timeout(WAIT)
                        .unwrap(),
                    i * i
                );
            }
            per.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(block));
        }
        println!("round trip ({what}): blocks of {block}: {per:.1?}");
        median(per)
    }

    fn map_ms(pool: &MpiPoolExecutor, n: u64) -> f64 {
        let t = Instant::now();
        let mut count = 0u64;
        for (i, r) in pool
            .map_builder()
            .chunksize(1000)
            .timeout(WAIT)
            .map(double, 0..n)
            .unwrap()
            .enumerate()
        {
            assert_eq!(r.unwrap(), 2 * i as u64);
            count += 1;
        }
        assert_eq!(count, n);
        t.elapsed().as_secs_f64() * 1e3
    }

    /// Seconds from SIGKILL of the worker running a task to that task's future failing
    /// (`None`: not within 30 s).
    fn killed_worker(pool: &MpiPoolExecutor) -> Option<f64> {
        let path = std::env::temp_dir().join(format!("cfutures-w10-kill-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let victim = pool
            .submit_fn(
                announce_and_sleep,
                (path.to_string_lossy().into_owned(), 60_000),
            )
            .unwrap();
        let pid = wait_pid(&path)?;
        let _ = std::fs::remove_file(&path);
        let killed = Instant::now();
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        match victim.exception_timeout(Duration::from_secs(30)) {
            Ok(Some(e)) => {
                println!("killed worker: {e}");
                Some(killed.elapsed().as_secs_f64())
            }
            _ => None,
        }
    }

    fn wait_pid(path: &PathBuf) -> Option<u32> {
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            if let Some(p) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return Some(p);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    // ---- start + one task + shutdown, in a fresh process ----

    fn start_once() {
        let t = Instant::now();
        let pool = MpiPoolExecutor::new(2).expect("spawn 2 workers");
        assert_eq!(
            *pool
                .submit_fn(square, 3)
                .unwrap()
                .result_timeout(WAIT)
                .unwrap(),
            9
        );
        pool.shutdown(true, false);
        drop(pool);
        println!("W10START {}", t.elapsed().as_secs_f64() * 1e3);
    }

    /// The process's own figure (MPI_Init, spawn, one task, shutdown), in ms; the wall time
    /// of the whole process (exit and MPI_Finalize included) is printed beside it.
    fn start_child() -> Option<f64> {
        let t = Instant::now();
        let mut c = Command::new("timeout");
        c.args(["-k", "10", "60"])
            .arg(std::env::current_exe().unwrap())
            .arg("--start");
        let out = run(c).ok()?;
        let wall = t.elapsed().as_secs_f64() * 1e3;
        let s = String::from_utf8_lossy(&out.stdout);
        let v = s
            .lines()
            .find_map(|l| l.strip_prefix("W10START "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        println!(
            "start + one task + shutdown: {} ms in the process, {wall:.0} ms wall ({})",
            v.map_or("?".into(), |v| format!("{v:.0}")),
            out.status
        );
        v
    }

    // ---- child processes: output in files, leftovers killed ----

    /// Runs `c` (already under `timeout`, stdin closed) with its output in files and the
    /// processes it leaves behind killed (see `tests/util/marked.rs`).
    fn run(mut c: Command) -> std::io::Result<std::process::Output> {
        c.stdin(Stdio::null());
        super::marked::run_marked(c, "CFUTURES_W10_RUN", "cfutures-w10")
    }

    // ---- the Python half ----

    #[derive(Default)]
    struct Py {
        thr: Option<f64>,
        rt: Option<f64>,
        map: Option<f64>,
        start: Option<f64>,
        kill: String,
        note: Option<String>,
    }

    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python/mpi4py_bench.py")
    }

    fn py_run(args: &[&str], secs: u32) -> (Option<String>, String) {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", &secs.to_string(), "python3"])
            .arg(script())
            .args(args);
        let out = run(c);
        match out {
            Ok(o) => {
                let s = String::from_utf8_lossy(&o.stdout).into_owned();
                let code = o.status.code();
                (
                    Some(s),
                    match code {
                        Some(0) => "ok".into(),
                        Some(124) | Some(137) | None => "timeout".into(),
                        Some(c) => format!(
                            "exit {c}: {}",
                            String::from_utf8_lossy(&o.stderr)
                                .lines()
                                .last()
                                .unwrap_or("")
                        ),
                    },
                )
            }
            Err(e) => (None, e.to_string()),
        }
    }

    fn field(s: &str, key: &str) -> Option<f64> {
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .and_then(|v| v.trim().parse().ok())
    }

    fn python(sizes: &Sizes) -> Py {
        let mut py = Py {
            kill: "—".into(),
            ..Py::default()
        };
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "60", "python3", "-c"])
            .arg("from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])");
        let probe = run(c);
        match probe {
            Ok(o) if o.status.success() => {
                println!(
                    "mpi4py.futures on: {}",
                    String::from_utf8_lossy(&o.stdout).trim()
                );
            }
            _ => {
                py.note = Some(
                    "mpi4py is not importable (python3 -m pip install mpi4py, with \
                     MPICC=mpicc.openmpi): the Python half was skipped"
                        .into(),
                );
                return py;
            }
        }
        let mut starts = Vec::new();
        for _ in 0..sizes.starts {
            let (out, st) = py_run(&["start"], 60);
            match out.as_deref().and_then(|s| field(s, "start_ms")) {
                Some(v) => starts.push(v),
                None => println!("mpi4py start: {st}"),
            }
        }
        if !starts.is_empty() {
            py.start = Some(median(starts));
        }
        let n = sizes.tasks.to_string();
        let trips = sizes.trips.to_string();
        let items = sizes.map_items.to_string();
        let (out, st) = py_run(&["main", &n, &trips, &items], 240);
        if let Some(s) = out.as_deref() {
            py.thr = field(s, "throughput_us");
            py.rt = field(s, "round_trip_us");
            py.map = field(s, "map_ms");
        }
        if st != "ok" {
            println!("mpi4py main: {st}");
        }
        let (out, st) = py_run(&["kill"], 20);
        py.kill = match (out.as_deref().and_then(|s| field(s, "kill_s")), st.as_str()) {
            (Some(v), _) => format!("{v:.2} s"),
            (None, _) if out.as_deref().is_some_and(|s| s.contains("kill_hangs")) => {
                "hangs (no answer within 10 s; killed by `timeout`)".into()
            }
            (None, "timeout") => "hangs (killed by `timeout` after 20 s)".into(),
            (None, st) => format!("? ({st})"),
        };
        println!(
            "mpi4py.futures: throughput {:?} µs, round trip {:?} µs, map {:?} ms, start {:?} ms, kill {}",
            py.thr, py.rt, py.map, py.start, py.kill
        );
        py
    }
}
