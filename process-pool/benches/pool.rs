//! Process-pool benchmarks, with a raw pipe ping-pong and Python's `ProcessPoolExecutor`
//! measured in the same run, printing ratios.
//!
//! `cargo bench -p cfutures-process-pool` (set `CFPP_BENCH_NO_PYTHON=1` to skip Python).
//!
//! * W5 throughput: 10,000 tiny tasks (`x + 1`) on 2 workers, per task.
//! * W5 round trip: one tiny task at a time, vs a raw pipe ping-pong between two processes.
//! * W3: `map` of `x * 2` over 1,000,000 items with `chunksize = 1000` (cfutures-combinators'
//!   `map` over the pool).
//! * W6: 8 CPU-bound tasks on 2 workers vs the same 8 run sequentially.
//! * W8: create a pool of 2, run one task, shut down.
//!
//! Profiling aid: `CFPP_BENCH_ONLY=w3|w5|rt|w6` runs one workload 20 times and prints each
//! run (`w6`, after a W3 as in the full run, also prints the CPU time the parent itself
//! used while the pool ran, and how many of the 8 tasks each worker ran).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cfutures_combinators::ExecutorExt;
use cfutures_process_pool::ProcessPoolExecutor;

const PONG_ROLE: &str = "CFPP_BENCH_PONG";

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
    if std::env::var_os("CFPP_BENCH_NO_PYTHON").is_some() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("cfpp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let script = dir.join("bench_pool.py");
    std::fs::write(&script, PYTHON).ok()?;
    let out = Command::new("python3")
        .arg(&script)
        .arg("300000")
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
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = if quick { 10 } else { 1 };

    if let Ok(only) = std::env::var("CFPP_BENCH_ONLY") {
        // Profiling aid: one workload, repeated.
        let pool = ProcessPoolExecutor::new(2).unwrap();
        w5_throughput(&pool, 1000);
        let n = calibrate_burn(0.05);
        for _ in 0..20 {
            match only.as_str() {
                "w3" => println!("w3 {:?}", w3_map(&pool)),
                "w5" => println!("w5 {:?}", w5_throughput(&pool, 10_000)),
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
