//! Process-pool benchmarks, with a raw pipe ping-pong and Python's `ProcessPoolExecutor`
//! measured in the same run, printing ratios.
//!
//! `cargo bench -p cfutures-process-pool` (set `CFPP_BENCH_NO_PYTHON=1` to skip Python).
//!
//! * W5 throughput: 10,000 tiny tasks (`x + 1`) on 2 workers, per task.
//! * W5 with-subscriber: W5 alternated with and without a `pool.events()` subscriber that
//!   reads every event on a thread of its own (the cost of being watched).
//! * W5 round trip: one tiny task at a time, vs a raw pipe ping-pong between two processes.
//! * W3: `map` of `x * 2` over 1,000,000 items with `chunksize = 1000` (cfutures-combinators'
//!   `map` over the pool).
//! * W6: 8 CPU-bound tasks on 2 workers vs the same 8 run sequentially.
//! * W8: create a pool of 2, run one task, shut down.
//! * W9a: a 50 MB `Vec<u8>` argument, the task returns its length (and how long `submit_fn`
//!   blocks the caller). W9b: a 50 MB echo (argument and result).
//! * W9c: a 1 GiB `SharedSlice<u64>` summed in halves by 2 workers, vs 2 threads summing the
//!   same slice in this process.
//! * Parent peak RSS for a 100 MB argument, in a child process (`VmHWM`), as a multiple of
//!   the argument.
//! * The shared-memory threshold: echo round trips of 4 KiB … 16 MiB with every payload in
//!   the pipes vs every payload in segments.
//!
//! Python (`bytes`, `len` and an echo, on the same data) runs W9a, W9b and the RSS figure in
//! the same run.
//!
//! Profiling aid: `CFPP_BENCH_ONLY=w3|w5|rt|w6|w9|w9c|rss|thresh` runs one workload (the first
//! four 20 times, printing each run; `w6`, after a W3 as in the full run, also prints the CPU
//! time the parent itself used while the pool ran, and how many of the 8 tasks each worker
//! ran). `CFPP_BENCH_ONLY=bulk` runs all the W9 figures, with Python.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cfutures_combinators::ExecutorExt;
use cfutures_process_pool::{ProcessPoolExecutor, SharedSlice};

const PONG_ROLE: &str = "CFPP_BENCH_PONG";
/// Set in the child process that measures the parent's peak RSS (its value: the bytes).
const RSS_ROLE: &str = "CFPP_BENCH_RSS";

fn add_one(x: u64) -> u64 {
    x + 1
}

fn double(x: u64) -> u64 {
    x * 2
}

/// CPU-bound work: `n` rounds of xorshift.
fn burn(n: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ n;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// `burn`, and which worker ran it.
fn burn_pid(n: u64) -> (u64, u32) {
    (burn(n), std::process::id())
}

fn pong() {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut b = [0u8; 8];
    while stdin.read_exact(&mut b).is_ok() {
        let v = u64::from_le_bytes(b) + 1;
        if stdout.write_all(&v.to_le_bytes()).is_err() || stdout.flush().is_err() {
            break;
        }
    }
}

/// Median of `f` over `n` runs.
fn median(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
    v.sort();
    v[n / 2]
}

/// Raw ping-pong of 8 bytes with a child process over two pipes: time per round trip.
fn ping_pong(rounds: u64) -> Duration {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(PONG_ROLE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let mut r = child.stdout.take().unwrap();
    let mut b = [0u8; 8];
    let mut once = |i: u64| {
        w.write_all(&i.to_le_bytes()).unwrap();
        r.read_exact(&mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i + 1);
    };
    for i in 0..1000 {
        once(i);
    }
    let t0 = Instant::now();
    for i in 0..rounds {
        once(i);
    }
    let d = t0.elapsed() / rounds as u32;
    drop(w);
    child.wait().unwrap();
    d
}

fn w5_throughput(pool: &ProcessPoolExecutor, n: u64) -> Duration {
    let t0 = Instant::now();
    let fs: Vec<_> = (0..n)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for (i, f) in fs.iter().enumerate() {
        assert_eq!(*f.result().unwrap(), i as u64 + 1);
    }
    t0.elapsed() / n as u32
}

/// W5 with a subscriber that reads every event on a thread of its own (`pool.events()`),
/// alternated with W5 without one, on the same pool: the medians (without, with), and the
/// events the last subscribed run read and lost.
fn w5_subscribed(
    pool: &ProcessPoolExecutor,
    n: u64,
    runs: usize,
) -> (Duration, Duration, u64, u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut plain = Vec::new();
    let mut with = Vec::new();
    let (mut read, mut lost) = (0, 0);
    for _ in 0..runs {
        plain.push(w5_throughput(pool, n));
        let events = pool.events();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut k = 0u64;
            loop {
                match events.recv_timeout(Duration::from_millis(5)) {
                    Ok(e) => k += std::hint::black_box(e).task().is_some() as u64,
                    Err(_) if stop2.load(Ordering::Acquire) => return (k, events.dropped()),
                    Err(_) => {}
                }
            }
        });
        with.push(w5_throughput(pool, n));
        stop.store(true, Ordering::Release);
        (read, lost) = reader.join().unwrap();
    }
    plain.sort();
    with.sort();
    (plain[runs / 2], with[runs / 2], read, lost)
}

fn w5_round_trip(pool: &ProcessPoolExecutor, n: u64) -> Duration {
    let t0 = Instant::now();
    for i in 0..n {
        assert_eq!(
            *pool.submit_fn(add_one, i).unwrap().result().unwrap(),
            i + 1
        );
    }
    t0.elapsed() / n as u32
}

fn w3_map(pool: &ProcessPoolExecutor) -> Duration {
    let t0 = Instant::now();
    let mut sum = 0u64;
    let mut count = 0usize;
    for r in pool
        .map_builder()
        .chunksize(1000)
        .map(double, 0..1_000_000u64)
        .unwrap()
    {
        sum = sum.wrapping_add(r.unwrap());
        count += 1;
    }
    let d = t0.elapsed();
    assert_eq!(count, 1_000_000);
    assert_eq!(sum, 999_999 * 1_000_000);
    d
}

fn w6(pool: &ProcessPoolExecutor, n: u64) -> (Duration, Duration) {
    let (seq, par, _, _) = w6_cpu(pool, n);
    (seq, par)
}

/// W6, the CPU time the parent process itself (all its threads, not the workers) used
/// while the pool ran the 8 tasks, and how many of them each worker ran.
fn w6_cpu(pool: &ProcessPoolExecutor, n: u64) -> (Duration, Duration, Duration, Vec<usize>) {
    let t0 = Instant::now();
    for _ in 0..8 {
        burn(n);
    }
    let seq = t0.elapsed();
    let c0 = cpu_self();
    let t0 = Instant::now();
    let fs: Vec<_> = (0..8)
        .map(|_| pool.submit_fn(burn_pid, n).unwrap())
        .collect();
    let mut per_worker = std::collections::BTreeMap::new();
    for f in &fs {
        *per_worker.entry(f.result().unwrap().1).or_insert(0) += 1;
    }
    let par = t0.elapsed();
    (
        seq,
        par,
        cpu_self() - c0,
        per_worker.into_values().collect(),
    )
}

/// User + system CPU time of this process (its threads; not its children).
/// This process's CPU time (every thread), precise (`CLOCK_PROCESS_CPUTIME_ID`).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn cpu_self() -> Duration {
    // SAFETY: `ru` is a valid out-pointer for getrusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The `n` for which `burn(n)` takes about `secs` here.
fn calibrate_burn(secs: f64) -> u64 {
    let t0 = Instant::now();
    burn(1_000_000);
    let per = t0.elapsed().as_secs_f64() / 1e6;
    (secs / per) as u64
}

// ---------------------------------------------------------------------------------------
// Bulk data (W9).

const MB50: usize = 50_000_000;

/// Deterministic pseudo-random bytes (xorshift): no page is all zeros.
fn data(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    v
}

fn length(v: Vec<u8>) -> usize {
    v.len()
}

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

fn sum_slice(s: SharedSlice<u64>) -> u64 {
    s.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// W9a: (median round trip, median time the caller was blocked in `submit_fn`).
fn w9a(pool: &ProcessPoolExecutor, src: &[u8], runs: usize) -> (Duration, Duration) {
    let mut blocked = Vec::new();
    let rt = median(runs, || {
        let arg = src.to_vec();
        let t0 = Instant::now();
        let f = pool.submit_fn(length, arg).unwrap();
        blocked.push(t0.elapsed());
        assert_eq!(*f.result().unwrap(), src.len());
        t0.elapsed()
    });
    blocked.sort();
    (rt, blocked[blocked.len() / 2])
}

/// W9b: median echo round trip (the result checked byte for byte, outside the clock).
fn w9b(pool: &ProcessPoolExecutor, src: &[u8], runs: usize) -> Duration {
    median(runs, || {
        let arg = src.to_vec();
        let t0 = Instant::now();
        let f = pool.submit_fn(echo, arg).unwrap();
        f.result().unwrap();
        let d = t0.elapsed();
        assert!(f.result().unwrap()[..] == *src);
        d
    })
}

/// W9c: (2 threads, 2 workers, first call of the workers) summing `n` u64 in halves.
fn w9c(n: usize, runs: usize) -> (Duration, Duration, Duration, Duration) {
    let t0 = Instant::now();
    let s = SharedSlice::<u64>::new_with(n, |d| {
        for (i, x) in d.iter_mut().enumerate() {
            *x = i as u64;
        }
    })
    .unwrap();
    let made = t0.elapsed();
    let expect = (n as u64).wrapping_mul(n as u64 - 1) / 2;
    let halves = [s.slice(0..n / 2), s.slice(n / 2..n)];
    let threads = || {
        let t0 = Instant::now();
        let sum = std::thread::scope(|sc| {
            let hs: Vec<_> = halves
                .iter()
                .map(|h| sc.spawn(move || sum_slice(h.clone())))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold(0u64, u64::wrapping_add)
        });
        assert_eq!(sum, expect);
        t0.elapsed()
    };
    let pool = ProcessPoolExecutor::new(2).unwrap();
    // Both workers up, so that both halves run at once.
    let warm: Vec<_> = (0..2)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    warm.iter().for_each(|f| assert!(f.result().is_ok()));
    let procs = || {
        let t0 = Instant::now();
        let fs: Vec<_> = halves
            .iter()
            .map(|h| pool.submit_fn(sum_slice, h.clone()).unwrap())
            .collect();
        let sum = fs
            .iter()
            .map(|f| *f.result().unwrap())
            .fold(0u64, u64::wrapping_add);
        assert_eq!(sum, expect);
        t0.elapsed()
    };
    let first = procs();
    let (mut t, mut p) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        t.push(threads());
        p.push(procs());
    }
    t.sort();
    p.sort();
    (t[runs / 2], p[runs / 2], first, made)
}

/// The child process of the RSS figure: the parent's peak RSS above its RSS before the
/// argument was made, for one `submit_fn(length, arg)` of `n` bytes, ÷ `n`.
fn rss_child(n: usize) {
    let status = |field: &str| -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| {
                v.trim_start_matches(':')
                    .trim()
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap()
    };
    let pool = ProcessPoolExecutor::new(1).unwrap();
    assert_eq!(
        *pool
            .submit_fn(length, vec![1u8; 1 << 20])
            .unwrap()
            .result()
            .unwrap(),
        1 << 20
    );
    let base = status("VmRSS");
    // Linux: writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let arg = data(n);
    assert_eq!(*pool.submit_fn(length, arg).unwrap().result().unwrap(), n);
    let hwm = status("VmHWM");
    println!("{}", (hwm - base) as f64 * 1024.0 / n as f64);
}

/// Runs [`rss_child`] in a fresh process.
fn rss(n: usize) -> Option<f64> {
    let out = Command::new(std::env::current_exe().ok()?)
        .env(RSS_ROLE, n.to_string())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Echo round trips of each size with every payload in the pipes vs in segments: (size,
/// pipes, segments).
fn threshold_table(quick: bool) -> Vec<(usize, Duration, Duration)> {
    let sizes: &[usize] = if quick {
        &[4 << 10, 64 << 10, 1 << 20]
    } else {
        &[
            4 << 10,
            16 << 10,
            32 << 10,
            64 << 10,
            128 << 10,
            256 << 10,
            1 << 20,
            4 << 20,
            16 << 20,
        ]
    };
    let src = data(16 << 20);
    let pools = [usize::MAX, 0].map(|t| {
        let p = ProcessPoolExecutor::builder()
            .max_workers(1)
            .shared_memory_threshold(t)
            .build()
            .unwrap();
        p.submit_fn(add_one, 1).unwrap().result().unwrap();
        p
    });
    sizes
        .iter()
        .map(|&n| {
            let reps = (32_000_000 / n).clamp(9, 201) / if quick { 8 } else { 1 };
            let reps = reps.max(3) | 1;
            let mut d = [Duration::ZERO; 2];
            for _ in 0..3 {
                // Alternate the two, so that both see the same machine.
                for (k, pool) in pools.iter().enumerate() {
                    d[k] = median(reps, || {
                        let arg = src[..n].to_vec();
                        let t0 = Instant::now();
                        let f = pool.submit_fn(echo, arg).unwrap();
                        assert_eq!(f.result().unwrap().len(), n);
                        t0.elapsed()
                    })
                    .min(if d[k].is_zero() { Duration::MAX } else { d[k] });
                }
            }
            (n, d[0], d[1])
        })
        .collect()
}

const PYTHON_BULK: &str = r#"
import os, statistics, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor

def echo(b): return b

def status_kb(field):
    with open("/proc/self/status") as f:
        for l in f:
            if l.startswith(field + ":"):
                return int(l.split()[1])

def rss(n):
    with ProcessPoolExecutor(1) as ex:
        ex.submit(len, b"x" * (1 << 20)).result()
        base = status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        arg = os.urandom(n)
        assert ex.submit(len, arg).result() == n
        print("rss", (status_kb("VmHWM") - base) * 1024 / n)

if __name__ == "__main__":
    if sys.argv[1] == "rss":
        rss(int(sys.argv[2]))
        sys.exit(0)
    runs = int(sys.argv[1])
    data = os.urandom(50_000_000)
    with ProcessPoolExecutor(2) as ex:
        for _ in range(4): ex.submit(len, b"x").result()
        a, sub = [], []
        for _ in range(runs):
            t = time.perf_counter()
            f = ex.submit(len, data)
            sub.append(time.perf_counter() - t)
            assert f.result() == len(data)
            a.append(time.perf_counter() - t)
        b = []
        for _ in range(runs):
            t = time.perf_counter()
            r = ex.submit(echo, data).result()
            b.append(time.perf_counter() - t)
            assert r == data
    print("w9a_ms", statistics.median(a) * 1e3)
    print("w9a_submit_ms", statistics.median(sub) * 1e3)
    print("w9b_ms", statistics.median(b) * 1e3)
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, "rss", "100000000"])
"#;

/// Python's W9a, W9b and RSS figure.
fn python_bulk(runs: usize) -> Option<std::collections::HashMap<String, f64>> {
    run_python(PYTHON_BULK, &runs.to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// W9a, W9b, W9c, the RSS figure and the threshold table, with Python's figures (unless
/// `quick`).
fn bulk(quick: bool, what: &str) {
    let runs = if quick { 3 } else { 7 };
    let all = what == "bulk";
    if all || what == "w9" {
        let src = data(if quick { MB50 / 10 } else { MB50 });
        let pool = ProcessPoolExecutor::new(2).unwrap();
        for _ in 0..2 {
            w9a(&pool, &src, 1);
            w9b(&pool, &src, 1);
        }
        let (a, blocked) = w9a(&pool, &src, runs);
        let b = w9b(&pool, &src, runs);
        drop(pool);
        println!(
            "  W9a {} MB Vec<u8> → len:      {:>9.2} ms (target ≤ 60; submit_fn blocks {:.2} ms)",
            src.len() / 1_000_000,
            ms(a),
            ms(blocked)
        );
        println!(
            "  W9b {} MB echo:               {:>9.2} ms (target ≤ 120)",
            src.len() / 1_000_000,
            ms(b)
        );
        if !quick {
            if let Some(py) = python_bulk(runs) {
                let get = |k: &str| py.get(k).copied().unwrap_or(f64::NAN);
                println!(
                    "  Python, same data, same run:  W9a {:.1} ms ({:.1}× cfutures; submit \
                     blocks {:.2} ms), W9b {:.1} ms ({:.1}×), 100 MB argument peak RSS {:.2}×",
                    get("w9a_ms"),
                    get("w9a_ms") / ms(a),
                    get("w9a_submit_ms"),
                    get("w9b_ms"),
                    get("w9b_ms") / ms(b),
                    get("rss")
                );
            }
        }
    }
    if all || what == "rss" {
        let n = if quick { 10_000_000 } else { 100_000_000 };
        match rss(n) {
            Some(x) => println!(
                "  parent peak RSS, {} MB arg:    {:>9.3}× the argument (target ≤ 1.1)",
                n / 1_000_000,
                x
            ),
            None => println!("  parent peak RSS: not measured"),
        }
    }
    if all || what == "w9c" {
        let n = if quick { 8 << 20 } else { 128 << 20 };
        let (t, p, first, made) = w9c(n, runs);
        println!(
            "  W9c {} MiB SharedSlice<u64>, halves: 2 workers {:.2} ms vs 2 threads {:.2} ms = \
             {:.2}× (target ≤ 1.2; first call {:.1} ms; made in {:.0} ms)",
            (n * 8) >> 20,
            ms(p),
            ms(t),
            p.as_secs_f64() / t.as_secs_f64(),
            ms(first),
            ms(made)
        );
    }
    if all || what == "thresh" {
        println!("  echo round trip by size: pipes / segments (µs, best of 3 medians):");
        for (n, pipe, seg) in threshold_table(quick) {
            let size = if n >= 1 << 20 {
                format!("{} MiB", n >> 20)
            } else {
                format!("{} KiB", n >> 10)
            };
            println!(
                "    {size:>7}: {:>9.1} / {:>9.1}  = {:.2}×",
                us(pipe),
                us(seg),
                seg.as_secs_f64() / pipe.as_secs_f64()
            );
        }
    }
}

fn w8() -> Duration {
    let t0 = Instant::now();
    let pool = ProcessPoolExecutor::new(2).unwrap();
    assert_eq!(*pool.submit_fn(add_one, 1).unwrap().result().unwrap(), 2);
    pool.shutdown(true, false);
    drop(pool);
    t0.elapsed()
}

const PYTHON: &str = r#"
import time, sys
from concurrent.futures import ProcessPoolExecutor

def add_one(x): return x + 1
def double(x): return x * 2
def burn(n):
    x = 0
    for i in range(n): x = (x * 1103515245 + 12345) & 0xffffffff
    return x

if __name__ == "__main__":
    out = {}
    with ProcessPoolExecutor(2) as ex:
        list(ex.map(add_one, range(100)))
        n = 10000
        t = time.perf_counter()
        fs = [ex.submit(add_one, i) for i in range(n)]
        for f in fs: f.result()
        out["w5_throughput_us"] = (time.perf_counter() - t) / n * 1e6
        n = 2000
        t = time.perf_counter()
        for i in range(n): ex.submit(add_one, i).result()
        out["w5_round_trip_us"] = (time.perf_counter() - t) / n * 1e6
        t = time.perf_counter()
        r = list(ex.map(double, range(1000000), chunksize=1000))
        out["w3_ms"] = (time.perf_counter() - t) * 1e3
        n = int(sys.argv[1])
        t = time.perf_counter()
        for _ in range(8): burn(n)
        seq = time.perf_counter() - t
        t = time.perf_counter()
        list(ex.map(burn, [n] * 8))
        out["w6_speedup"] = seq / (time.perf_counter() - t)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        with ProcessPoolExecutor(2) as ex: ex.submit(add_one, 1).result()
        ts.append(time.perf_counter() - t)
    ts.sort()
    out["w8_ms"] = ts[2] * 1e3
    for k, v in out.items(): print(k, v)
"#;

fn python() -> Option<std::collections::HashMap<String, f64>> {
    run_python(PYTHON, "300000")
}

/// Runs a Python script with one argument; its `name value` lines.
fn run_python(code: &str, arg: &str) -> Option<std::collections::HashMap<String, f64>> {
    if std::env::var_os("CFPP_BENCH_NO_PYTHON").is_some() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("cfpp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let script = dir.join("bench_pool.py");
    std::fs::write(&script, code).ok()?;
    let out = Command::new("python3")
        .arg(&script)
        .arg(arg)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    )
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if std::env::var_os(PONG_ROLE).is_some() {
        pong();
        return;
    }
    if let Some(n) = std::env::var(RSS_ROLE).ok().and_then(|n| n.parse().ok()) {
        rss_child(n);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = if quick { 10 } else { 1 };

    if let Ok(only) = std::env::var("CFPP_BENCH_ONLY") {
        if matches!(only.as_str(), "bulk" | "w9" | "w9c" | "rss" | "thresh") {
            bulk(quick, &only);
            return;
        }
        // Profiling aid: one workload, repeated.
        let pool = ProcessPoolExecutor::new(2).unwrap();
        w5_throughput(&pool, 1000);
        let n = calibrate_burn(0.05);
        for _ in 0..20 {
            match only.as_str() {
                "w3" => println!("w3 {:?}", w3_map(&pool)),
                "w5" => println!("w5 {:?}", w5_throughput(&pool, 10_000)),
                "w5cpu" => {
                    // The parent's CPU time (its threads: submitter and I/O), not the workers'.
                    let c0 = process_cpu();
                    let t = w5_throughput(&pool, 10_000);
                    let c = process_cpu() - c0;
                    println!("w5cpu {t:?} parent-cpu-per-task {:?}", c / 10_000);
                }
                "w5sub" => {
                    let (a, b, read, lost) = w5_subscribed(&pool, 10_000, 1);
                    println!(
                        "w5 {a:?} with-subscriber {b:?} ratio {:.3} (events read {read}, lost {lost})",
                        b.as_secs_f64() / a.as_secs_f64()
                    );
                }
                "w6" => {
                    // As in the full run, W6 follows W3's tiny tasks.
                    w3_map(&pool);
                    let (seq, par, cpu, split) = w6_cpu(&pool, n);
                    println!(
                        "w6 {:.3} speedup; parent CPU {:?} while the pool ran ({:.2}% of its \
                         {:?}); tasks per worker {split:?}",
                        seq.as_secs_f64() / par.as_secs_f64(),
                        cpu,
                        100.0 * cpu.as_secs_f64() / par.as_secs_f64(),
                        par
                    );
                }
                _ => println!("rt {:?}", w5_round_trip(&pool, 5_000)),
            }
        }
        return;
    }
    let pp = median(3, || ping_pong(20_000 / scale));
    let pool = ProcessPoolExecutor::new(2).unwrap();
    w5_throughput(&pool, 1000); // warm up: both workers started
    let thr = median(5, || w5_throughput(&pool, 10_000 / scale));
    let (sub_plain, sub_with, sub_read, sub_lost) = w5_subscribed(&pool, 10_000 / scale, 5);
    let rt = median(5, || w5_round_trip(&pool, 5_000 / scale));
    let w3 = median(5, || w3_map(&pool));
    // Calibrate W6 so that one task takes ~50 ms here.
    let n = calibrate_burn(0.05 / scale as f64);
    let (seq, par) = w6(&pool, n);
    drop(pool);
    let w8 = median(11, w8);

    println!(
        "process-pool benchmarks (2 workers){}",
        if quick { " [quick]" } else { "" }
    );
    println!(
        "  raw pipe ping-pong (2 processes): {:>9.2} µs / round trip",
        us(pp)
    );
    println!(
        "  W5 throughput, 10k x+1:           {:>9.2} µs / task (target ≤ 5)",
        us(thr)
    );
    println!(
        "  W5 with-subscriber (alternated):  {:>9.2} µs / task vs {:.2} without = {:.3}× \
         ({sub_read} task events read, {sub_lost} lost)",
        us(sub_with),
        us(sub_plain),
        sub_with.as_secs_f64() / sub_plain.as_secs_f64()
    );
    println!(
        "  W5 round trip, one at a time:     {:>9.2} µs / task = {:.2}× ping-pong (target ≤ 2×)",
        us(rt),
        rt.as_secs_f64() / pp.as_secs_f64()
    );
    println!(
        "  W3 map x*2, 1M items, chunk 1000: {:>9.2} ms (target ≤ 30)",
        w3.as_secs_f64() * 1e3
    );
    println!(
        "  W6 8 CPU-bound tasks:             {:>9.2}× speedup vs sequential (target ≥ 1.9; seq {:.0} ms, pool {:.0} ms)",
        seq.as_secs_f64() / par.as_secs_f64(),
        seq.as_secs_f64() * 1e3,
        par.as_secs_f64() * 1e3
    );
    println!(
        "  W8 create, 1 task, shutdown:      {:>9.2} ms (target ≤ 3)",
        w8.as_secs_f64() * 1e3
    );
    println!("bulk data (W9):");
    bulk(quick, "bulk");
    if quick {
        return;
    }
    match python() {
        None => println!("python3: not run"),
        Some(py) => {
            let get = |k: &str| py.get(k).copied().unwrap_or(f64::NAN);
            println!(
                "Python ProcessPoolExecutor (same run), and how many times faster cfutures is:"
            );
            println!(
                "  W5 throughput:  {:>9.2} µs / task  ({:.0}×)",
                get("w5_throughput_us"),
                get("w5_throughput_us") / us(thr)
            );
            println!(
                "  W5 round trip:  {:>9.2} µs / task  ({:.0}×)",
                get("w5_round_trip_us"),
                get("w5_round_trip_us") / us(rt)
            );
            println!(
                "  W3 map:         {:>9.2} ms         ({:.0}×)",
                get("w3_ms"),
                get("w3_ms") / (w3.as_secs_f64() * 1e3)
            );
            println!("  W6 speedup:     {:>9.2}×", get("w6_speedup"));
            println!(
                "  W8:             {:>9.2} ms         ({:.1}×)",
                get("w8_ms"),
                get("w8_ms") / (w8.as_secs_f64() * 1e3)
            );
        }
    }
}
