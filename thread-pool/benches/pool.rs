//! ThreadPoolExecutor against rayon, the `threadpool` crate and a hand-written crossbeam
//! pool, in one run, printing ratios (issue 3's workloads W1, W2, W6, W7).
//!
//! ```sh
//! cargo bench -p cfutures-thread-pool                  # everything
//! cargo bench -p cfutures-thread-pool -- w1 w2         # some workloads
//! taskset -c 0 cargo bench -p cfutures-thread-pool -- w2   # W2 pinned to one CPU
//! cargo bench -p cfutures-thread-pool -- w1-cfutures   # only our side of W1 (profiling)
//! cargo bench -p cfutures-thread-pool -- w1-floor   # W1's futures alone, no pool
//! cargo bench -p cfutures-thread-pool -- w1-ratio   # W1 vs the hand-written queue, interleaved rounds
//! cargo bench -p cfutures-thread-pool -- w1-sub     # the same, plus W1 with an events subscriber
//! cargo bench -p cfutures-thread-pool -- w1-submit  # W1's submits alone (workers held), both sides
//! W1_ONCE_ROUNDS=2 valgrind --tool=callgrind <bench binary> w1-once-ours   # (or w1-once-peer)
//! ```
//!
//! Ratios are `peer / cfutures` for times (above 1: cfutures is faster).

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cfutures_thread_pool::ThreadPoolExecutor;
use crossbeam_channel::{unbounded, Sender};
use sha2::{Digest, Sha256};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A pool as one would write it by hand: one crossbeam channel of boxed jobs, N threads.
struct CrossbeamPool {
    jobs: Option<Sender<Job>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl CrossbeamPool {
    fn new(n: usize) -> Self {
        let (tx, rx) = unbounded::<Job>();
        let threads = (0..n)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || {
                    for job in rx {
                        job();
                    }
                })
            })
            .collect();
        CrossbeamPool {
            jobs: Some(tx),
            threads,
        }
    }
    fn execute(&self, f: impl FnOnce() + Send + 'static) {
        self.jobs.as_ref().unwrap().send(Box::new(f)).unwrap();
    }
}

impl Drop for CrossbeamPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

/// The peers, behind one interface: run `f` on the pool, send its result to `tx`.
enum Peer {
    Rayon(rayon::ThreadPool),
    ThreadPool(threadpool::ThreadPool),
    Crossbeam(CrossbeamPool),
}

impl Peer {
    fn name(&self) -> &'static str {
        match self {
            Peer::Rayon(_) => "rayon (spawn + channel)",
            Peer::ThreadPool(_) => "threadpool crate",
            Peer::Crossbeam(_) => "hand-written crossbeam",
        }
    }
    fn make(kind: usize, n: usize) -> Peer {
        match kind {
            0 => Peer::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap(),
            ),
            1 => Peer::ThreadPool(threadpool::ThreadPool::new(n)),
            _ => Peer::Crossbeam(CrossbeamPool::new(n)),
        }
    }
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static, tx: Sender<R>) {
        let job = move || {
            let _ = tx.send(f());
        };
        match self {
            Peer::Rayon(p) => p.spawn(job),
            Peer::ThreadPool(p) => p.execute(job),
            Peer::Crossbeam(p) => p.execute(job),
        }
    }
}

const PEERS: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p) as usize]
}

fn row(name: &str, value: f64, unit: &str, ours: f64) {
    println!(
        "  {name:<26} {value:>10.3} {unit:<4}  ratio {:>6.2}",
        value / ours
    );
}

// ----- W1: 100k no-op submits to 2 workers, collect every result ---------------------

const W1_TASKS: u64 = 100_000;
const W1_ROUNDS: usize = 11;

fn w1_ours(pool: &ThreadPoolExecutor) -> f64 {
    let start = Instant::now();
    let fs: Vec<_> = (0..W1_TASKS)
        .map(|i| pool.submit(move || black_box(i)).unwrap())
        .collect();
    let mut sum = 0;
    for f in &fs {
        sum += *f.result().unwrap();
    }
    let t = start.elapsed();
    assert_eq!(sum, W1_TASKS * (W1_TASKS - 1) / 2);
    drop(fs);
    t.as_secs_f64() * 1e6 / W1_TASKS as f64
}

/// W1 with a subscriber to the pool's events, drained by a thread of its own (what a live
/// view of the pool costs); the subscription ends with the round.
fn w1_ours_subscribed(pool: &ThreadPoolExecutor) -> (f64, u64) {
    let events = pool.events();
    let drain = thread::spawn(move || {
        let mut finished = 0;
        let mut seen = 0u64;
        while finished < W1_TASKS {
            match events.recv_timeout(Duration::from_secs(2)) {
                Ok(e) => {
                    seen += 1;
                    if e.outcome().is_some() {
                        finished += 1;
                    }
                }
                Err(_) => break,
            }
        }
        (seen, events.dropped())
    });
    let t = w1_ours(pool);
    let (_seen, dropped) = drain.join().unwrap();
    (t, dropped)
}

fn w1_peer(peer: &Peer) -> f64 {
    let start = Instant::now();
    let (tx, rx) = unbounded();
    for i in 0..W1_TASKS {
        peer.run(move || black_box(i), tx.clone());
    }
    let mut sum = 0;
    for _ in 0..W1_TASKS {
        sum += rx.recv().unwrap();
    }
    let t = start.elapsed();
    assert_eq!(sum, W1_TASKS * (W1_TASKS - 1) / 2);
    t.as_secs_f64() * 1e6 / W1_TASKS as f64
}

fn w1() {
    println!("W1: {W1_TASKS} no-op tasks on 2 workers, collect every result (µs/task, median of {W1_ROUNDS}; target ≤ 0.35)");
    let pool = ThreadPoolExecutor::new(2).unwrap();
    w1_ours(&pool);
    let ours = median(&mut (0..W1_ROUNDS).map(|_| w1_ours(&pool)).collect::<Vec<_>>());
    row("cfutures ThreadPoolExecutor", ours, "µs", ours);
    for k in 0..PEERS {
        let peer = Peer::make(k, 2);
        w1_peer(&peer);
        let v = median(&mut (0..W1_ROUNDS).map(|_| w1_peer(&peer)).collect::<Vec<_>>());
        row(peer.name(), v, "µs", ours);
    }
}

/// CPU time all of this process's threads have run, in ns (Linux: the sum of
/// `/proc/self/task/*/schedstat`); `None` elsewhere. On a machine shared with other work
/// this moves less than wall time: time spent waiting for a CPU is not in it.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let path = t.ok()?.path().join("schedstat");
        // A thread that exited between the listing and the read: skip it.
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// Runs `f` (a W1 round returning µs/task of wall time) and gives that and the CPU µs per
/// task all threads spent meanwhile (NaN where unknown).
fn with_cpu(f: impl FnOnce() -> f64) -> (f64, f64) {
    let before = process_cpu_ns();
    let wall = f();
    let cpu = match (before, process_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e3 / W1_TASKS as f64,
        _ => f64::NAN,
    };
    (wall, cpu)
}

/// W1, cfutures and the hand-written crossbeam queue in interleaved rounds: the medians,
/// ranges and the median of the per-pair ratios (`W1_RATIO_ROUNDS`, default 31); with
/// `with_subscriber`, a round of W1 with an events subscriber after each pair.
fn w1_ratio(with_subscriber: bool) {
    let rounds: usize = std::env::var("W1_RATIO_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(31);
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let peer = Peer::make(2, 2);
    w1_ours(&pool);
    w1_peer(&peer);
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sub, mut sub_ratios, mut dropped) = (Vec::new(), Vec::new(), 0);
    let (mut ours_cpu, mut theirs_cpu, mut cpu_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (o, oc) = with_cpu(|| w1_ours(&pool));
        let (p, pc) = with_cpu(|| w1_peer(&peer));
        ours.push(o);
        theirs.push(p);
        ratios.push(o / p);
        ours_cpu.push(oc);
        theirs_cpu.push(pc);
        cpu_ratios.push(oc / pc);
        if with_subscriber {
            let (w, d) = w1_ours_subscribed(&pool);
            sub.push(w);
            sub_ratios.push(w / o);
            dropped += d;
        }
    }
    let range = |v: &mut Vec<f64>| {
        let m = median(v);
        (m, v[0], v[v.len() - 1])
    };
    let (om, olo, ohi) = range(&mut ours);
    let (pm, plo, phi) = range(&mut theirs);
    let (rm, rlo, rhi) = range(&mut ratios);
    println!("W1 ratio, {rounds} interleaved rounds (µs/task: median [min, max])");
    println!("  cfutures ThreadPoolExecutor  {om:.3} [{olo:.3}, {ohi:.3}]");
    println!("  hand-written crossbeam       {pm:.3} [{plo:.3}, {phi:.3}]");
    println!("  cfutures / hand-written: median of pair ratios {rm:.3} [{rlo:.3}, {rhi:.3}]");
    let (om, olo, ohi) = range(&mut ours_cpu);
    let (pm, plo, phi) = range(&mut theirs_cpu);
    let (rm, rlo, rhi) = range(&mut cpu_ratios);
    println!("  CPU µs/task (all threads): cfutures {om:.3} [{olo:.3}, {ohi:.3}], hand-written {pm:.3} [{plo:.3}, {phi:.3}]");
    println!("  CPU cfutures / hand-written: median of pair ratios {rm:.3} [{rlo:.3}, {rhi:.3}]");
    if with_subscriber {
        let (sm, slo, shi) = range(&mut sub);
        let (qm, qlo, qhi) = range(&mut sub_ratios);
        println!(
            "  cfutures with a subscriber {sm:.3} [{slo:.3}, {shi:.3}] ({dropped} events dropped)"
        );
        println!(
            "  with / without a subscriber: median of pair ratios {qm:.3} [{qlo:.3}, {qhi:.3}]"
        );
    }
}

fn w1_submit_only() {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let pool = ThreadPoolExecutor::new(2).unwrap();
        let (release, held) = unbounded::<()>();
        let (ready, is_ready) = unbounded::<()>();
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let (held, ready) = (held.clone(), ready.clone());
                pool.submit(move || {
                    ready.send(()).unwrap();
                    let _ = held.recv();
                })
                .unwrap()
            })
            .collect();
        is_ready.recv().unwrap();
        is_ready.recv().unwrap();
        let start = Instant::now();
        let fs: Vec<_> = (0..W1_TASKS)
            .map(|i| pool.submit(move || black_box(i)).unwrap())
            .collect();
        ours.push(start.elapsed().as_secs_f64() * 1e6 / W1_TASKS as f64);
        drop(release);
        for f in holders.iter() {
            f.result().unwrap();
        }
        for f in &fs {
            f.result().unwrap();
        }

        let peer = CrossbeamPool::new(2);
        let (release, held) = unbounded::<()>();
        for _ in 0..2 {
            let (held, ready) = (held.clone(), ready.clone());
            peer.execute(move || {
                ready.send(()).unwrap();
                let _ = held.recv();
            });
        }
        is_ready.recv().unwrap();
        is_ready.recv().unwrap();
        let (tx, rx) = unbounded();
        let start = Instant::now();
        for i in 0..W1_TASKS {
            let tx = tx.clone();
            peer.execute(move || {
                let _ = tx.send(black_box(i));
            });
        }
        theirs.push(start.elapsed().as_secs_f64() * 1e6 / W1_TASKS as f64);
        drop(release);
        for _ in 0..W1_TASKS {
            rx.recv().unwrap();
        }
    }
    println!(
        "W1's submits alone, workers held (µs/task, median of 5 [min, max]): cfutures {:.3} [{:.3}, {:.3}], hand-written {:.3} [{:.3}, {:.3}]",
        median(&mut ours),
        ours[0],
        ours[4],
        median(&mut theirs),
        theirs[0],
        theirs[4]
    );
}

// ----- W2: one task submitted and waited for, 10k times --------------------------------

const W2_ITERS: usize = 10_000;

fn w2() {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "W2: submit one task and wait for it, {W2_ITERS} times (µs, median / p90; this process may use {cpus} CPU(s); target median ≤ 1, ≤ 8 pinned)"
    );
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let mut lat = Vec::with_capacity(W2_ITERS);
    for i in 0..W2_ITERS + 1000 {
        let start = Instant::now();
        let f = pool.submit(move || black_box(i)).unwrap();
        black_box(*f.result().unwrap());
        if i >= 1000 {
            lat.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    let ours = median(&mut lat);
    let p90 = percentile(&mut lat, 0.9);
    println!(
        "  {:<26} {ours:>10.3} µs    p90 {p90:>7.2}  ratio {:>6.2}",
        "cfutures ThreadPoolExecutor", 1.0
    );
    for k in 0..PEERS {
        let peer = Peer::make(k, 2);
        let (tx, rx) = unbounded();
        let mut lat = Vec::with_capacity(W2_ITERS);
        for i in 0..W2_ITERS + 1000 {
            let start = Instant::now();
            peer.run(move || black_box(i), tx.clone());
            black_box(rx.recv().unwrap());
            if i >= 1000 {
                lat.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        let v = median(&mut lat);
        let p90 = percentile(&mut lat, 0.9);
        println!(
            "  {:<26} {v:>10.3} µs    p90 {p90:>7.2}  ratio {:>6.2}",
            peer.name(),
            v / ours
        );
    }
}

// ----- W6: 8 CPU-bound sha256 tasks (~0.25 s each) on 2 workers vs sequential ----------

fn sha_work(rounds: usize) -> [u8; 32] {
    let block = vec![0xA5u8; 64 * 1024];
    let mut h = Sha256::new();
    for _ in 0..rounds {
        h.update(&block);
    }
    h.finalize().into()
}

fn w6() {
    // Calibrate: rounds of 64 KiB for ~0.25 s (probe for at least 50 ms).
    let mut probe = 16;
    let per_round = loop {
        let start = Instant::now();
        black_box(sha_work(probe));
        let t = start.elapsed().as_secs_f64();
        if t >= 0.05 {
            break t / probe as f64;
        }
        probe *= 2;
    };
    let rounds = ((0.25 / per_round) as usize).max(1);
    println!("W6: 8 sha256 tasks ({rounds} × 64 KiB, ~0.25 s each) on 2 workers: speedup vs sequential, best of 3 (target ≥ 1.9×)");

    let reference = sha_work(rounds);
    // Best of three, interleaved: the other CPU of a shared machine is often busy.
    let mut best = [f64::INFINITY; 2 + PEERS];
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..8 {
            assert_eq!(black_box(sha_work(rounds)), reference);
        }
        best[0] = best[0].min(start.elapsed().as_secs_f64());

        let pool = ThreadPoolExecutor::new(2).unwrap();
        let start = Instant::now();
        let fs: Vec<_> = (0..8)
            .map(|_| pool.submit(move || sha_work(rounds)).unwrap())
            .collect();
        for f in &fs {
            assert_eq!(*f.result().unwrap(), reference);
        }
        best[1] = best[1].min(start.elapsed().as_secs_f64());

        for k in 0..PEERS {
            let peer = Peer::make(k, 2);
            let (tx, rx) = unbounded();
            let start = Instant::now();
            for _ in 0..8 {
                peer.run(move || sha_work(rounds), tx.clone());
            }
            for _ in 0..8 {
                assert_eq!(rx.recv().unwrap(), reference);
            }
            best[2 + k] = best[2 + k].min(start.elapsed().as_secs_f64());
        }
    }
    let sequential = best[0];
    println!("  {:<26} {sequential:>10.3} s", "sequential");
    let names = ["cfutures ThreadPoolExecutor"]
        .into_iter()
        .chain((0..PEERS).map(|k| Peer::make(k, 1).name()));
    for (name, t) in names.zip(&best[1..]) {
        println!(
            "  {name:<26} {t:>10.3} s     speedup {:>5.2}×",
            sequential / t
        );
    }
}

// ----- W7: 42 tasks sleeping 100 ms on 20 workers (ideal 300 ms) -----------------------

fn w7() {
    println!(
        "W7: 42 tasks sleeping 100 ms on 20 fresh workers: time / 300 ms ideal (target ≤ 1.01×)"
    );
    let nap = Duration::from_millis(100);
    let ideal = 0.3;
    // Fresh pool: its lazy thread starts are inside the timing.
    let pool = Arc::new(ThreadPoolExecutor::new(20).unwrap());
    let start = Instant::now();
    let fs: Vec<_> = (0..42)
        .map(|_| pool.submit(move || thread::sleep(nap)).unwrap())
        .collect();
    for f in &fs {
        f.result().unwrap();
    }
    let ours = start.elapsed().as_secs_f64();
    println!(
        "  {:<26} {:>10.1} ms    {:>6.3}×",
        "cfutures ThreadPoolExecutor",
        ours * 1e3,
        ours / ideal
    );
    for k in 0..PEERS {
        let peer = Peer::make(k, 20);
        let (tx, rx) = unbounded();
        let start = Instant::now();
        for _ in 0..42 {
            peer.run(move || thread::sleep(nap), tx.clone());
        }
        for _ in 0..42 {
            rx.recv().unwrap();
        }
        let v = start.elapsed().as_secs_f64();
        println!(
            "  {:<26} {:>10.1} ms    {:>6.3}×",
            peer.name(),
            v * 1e3,
            v / ideal
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.to_lowercase())
        .collect();
    let want = |w: &str| args.is_empty() || args.iter().any(|a| a == w);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!("cfutures-thread-pool bench — {cpus} CPU(s) available to this process\n");
    if want("w1") {
        w1();
        println!();
    }
    // The floor: creating, completing and collecting W1's futures on one thread, no pool;
    // and the same with each task run as a worker runs it (`Promise::run`: marks the
    // thread as running the future, catches panics, publishes), rounds of the two
    // interleaved, so that their ratio is the per-task cost of running a task.
    if args.iter().any(|a| a == "w1-floor") {
        let round = |run: bool| {
            let start = Instant::now();
            let fs: Vec<_> = (0..W1_TASKS)
                .map(|i| {
                    let (p, f) = cfutures_core::pending::<u64>();
                    if run {
                        p.run(move || black_box(i));
                    } else {
                        p.set_result(black_box(i)).unwrap();
                    }
                    f
                })
                .collect();
            let sum: u64 = fs.iter().map(|f| *f.result().unwrap()).sum();
            assert_eq!(sum, W1_TASKS * (W1_TASKS - 1) / 2);
            drop(fs);
            start.elapsed().as_secs_f64() * 1e6 / W1_TASKS as f64
        };
        let (mut set, mut run) = (Vec::new(), Vec::new());
        for _ in 0..W1_ROUNDS * 3 {
            set.push(round(false));
            run.push(round(true));
        }
        let (set, run) = (median(&mut set), median(&mut run));
        println!("W1 floor (futures alone, one thread): {set:.3} µs/task");
        println!(
            "W1 floor through Promise::run: {run:.3} µs/task (ratio to the floor {:.2})",
            run / set
        );
    }
    // W1 against the hand-written queue, rounds interleaved (ours, peer, ours, ...), so
    // that a machine shared with other work slows both alike; the figure to read is the
    // median of the per-pair ratios.
    if args.iter().any(|a| a == "w1-ratio") {
        w1_ratio(false);
    }
    // The same, and W1 with a subscriber to the pool's events (drained by its own thread)
    // after each pair.
    if args.iter().any(|a| a == "w1-sub") {
        w1_ratio(true);
    }
    // For callgrind: one warm-up and one measured round of one side only (instruction
    // counts per task = the difference between a 2-round and a 1-round run / W1_TASKS).
    for (arg, ours) in [("w1-once-ours", true), ("w1-once-peer", false)] {
        if args.iter().any(|a| a == arg) {
            let rounds: usize = std::env::var("W1_ONCE_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            if ours {
                let pool = ThreadPoolExecutor::new(2).unwrap();
                for _ in 0..rounds {
                    w1_ours(&pool);
                }
            } else {
                let peer = Peer::make(2, 2);
                for _ in 0..rounds {
                    w1_peer(&peer);
                }
            }
        }
    }
    // W1's submitting half alone: every worker held by a task waiting on a channel, so
    // nothing competes with the submitting thread; 100k submits, timed, then the workers
    // are released and the results collected (untimed). Both sides, 5 rounds each.
    if args.iter().any(|a| a == "w1-submit") {
        w1_submit_only();
    }
    // For profiling: only cfutures' side of W1.
    if args.iter().any(|a| a == "w1-cfutures") {
        let pool = ThreadPoolExecutor::new(2).unwrap();
        let v = median(
            &mut (0..W1_ROUNDS * 3)
                .map(|_| w1_ours(&pool))
                .collect::<Vec<_>>(),
        );
        println!("W1 cfutures only: {v:.3} µs/task");
    }
    if want("w2") {
        w2();
        println!();
    }
    if want("w6") {
        w6();
        println!();
    }
    if want("w7") {
        w7();
        println!();
    }
}
