//! Promise → future hand-off across two threads, against crossbeam-channel and std mpsc.
//!
//! ```sh
//! cargo bench -p cfutures-core --bench handoff
//! taskset -c 0 cargo bench -p cfutures-core --bench handoff   # both threads on one CPU
//! ```
//!
//! * **ping-pong**: thread A sets a result that thread B waits for, then B sets one that A
//!   waits for; A times each round trip (two hand-offs). The same with a crossbeam
//!   `bounded(1)` pair and a std `mpsc` pair. Futures and promises are made before the
//!   timed loop (a pool makes them at submit time, not in the hand-off).
//! * **delayed**: the setter busy-waits a fixed delay before each set, so the waiter has
//!   spun, yielded and perhaps parked by then; the figure is the time from the set to the
//!   waiter waking (what a caller of `result()` pays on top of the task's own time).
//!
//! Figures are medians and 99th percentiles in nanoseconds. `HANDOFF_ROUNDS` (default
//! 100000) sets the number of round trips.

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cfutures_core::{pending, Future, Promise};

struct Stats {
    median: f64,
    p99: f64,
}

fn stats(mut ns: Vec<u64>) -> Stats {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64;
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn rounds() -> usize {
    std::env::var("HANDOFF_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

type Pairs = (Vec<Promise<u64>>, Vec<Future<u64>>);

fn pairs(n: usize) -> Pairs {
    (0..n).map(|_| pending::<u64>()).unzip()
}

/// Round-trip times (ns) of futures ping-pong.
fn futures_ping_pong(n: usize) -> Vec<u64> {
    let (ping_p, ping_f) = pairs(n);
    let (pong_p, pong_f) = pairs(n);
    let b = Arc::new(Barrier::new(2));
    let b2 = b.clone();
    let echo = thread::spawn(move || {
        b2.wait();
        for (f, p) in ping_f.into_iter().zip(pong_p) {
            let v = *f.result().unwrap();
            p.set_result(v).unwrap();
        }
    });
    b.wait();
    let mut out = Vec::with_capacity(n);
    for (i, (p, f)) in ping_p.into_iter().zip(pong_f).enumerate() {
        let t = Instant::now();
        p.set_result(i as u64).unwrap();
        black_box(f.result().unwrap());
        out.push(t.elapsed().as_nanos() as u64);
    }
    echo.join().unwrap();
    out
}

fn crossbeam_ping_pong(n: usize) -> Vec<u64> {
    let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(1);
    let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u64>(1);
    let echo = thread::spawn(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).unwrap();
        }
    });
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        ping_tx.send(i as u64).unwrap();
        black_box(pong_rx.recv().unwrap());
        out.push(t.elapsed().as_nanos() as u64);
    }
    drop(ping_tx);
    echo.join().unwrap();
    out
}

fn mpsc_ping_pong(n: usize) -> Vec<u64> {
    let (ping_tx, ping_rx) = mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = mpsc::channel::<u64>();
    let echo = thread::spawn(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).unwrap();
        }
    });
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        ping_tx.send(i as u64).unwrap();
        black_box(pong_rx.recv().unwrap());
        out.push(t.elapsed().as_nanos() as u64);
    }
    drop(ping_tx);
    echo.join().unwrap();
    out
}

/// The floor: two threads spinning on atomics (yielding only after 10k spins). Only
/// meaningful when both threads have a CPU of their own.
fn atomic_ping_pong(n: usize) -> Vec<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    fn wait_for(a: &AtomicU64, v: u64) {
        let mut spins = 0u32;
        // Acquire: pairs with the other thread's Release store.
        while a.load(Ordering::Acquire) != v {
            spins += 1;
            if spins < 10_000 {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
    let ping = Arc::new(AtomicU64::new(0));
    let pong = Arc::new(AtomicU64::new(0));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let echo = thread::spawn(move || {
        for i in 1..=n as u64 {
            wait_for(&ping2, i);
            // Release: publishes the round to the waiting thread.
            pong2.store(i, Ordering::Release);
        }
    });
    let mut out = Vec::with_capacity(n);
    for i in 1..=n as u64 {
        let t = Instant::now();
        // Release: publishes the round to the echo thread.
        ping.store(i, Ordering::Release);
        wait_for(&pong, i);
        out.push(t.elapsed().as_nanos() as u64);
    }
    echo.join().unwrap();
    out
}

fn busy_wait(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Set-to-wake latencies (ns) when the setter works for `delay` before each set.
fn futures_delayed(n: usize, delay: Duration) -> Vec<u64> {
    let (ps, fs) = pairs(n);
    let (acks_p, acks_f) = pairs(n);
    let b = Arc::new(Barrier::new(2));
    let b2 = b.clone();
    let setter = thread::spawn(move || {
        b2.wait();
        let mut set_at = Vec::with_capacity(ps.len());
        for (p, ack) in ps.into_iter().zip(acks_f) {
            busy_wait(delay);
            set_at.push(Instant::now());
            p.set_result(0).unwrap();
            ack.result().unwrap();
        }
        set_at
    });
    b.wait();
    let mut woke_at = Vec::with_capacity(n);
    for (f, ack) in fs.into_iter().zip(acks_p) {
        f.result().unwrap();
        woke_at.push(Instant::now());
        ack.set_result(0).unwrap();
    }
    let set_at = setter.join().unwrap();
    set_at
        .iter()
        .zip(&woke_at)
        .map(|(s, w)| w.saturating_duration_since(*s).as_nanos() as u64)
        .collect()
}

fn crossbeam_delayed(n: usize, delay: Duration) -> Vec<u64> {
    let (tx, rx) = crossbeam_channel::bounded::<Instant>(1);
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<()>(1);
    let setter = thread::spawn(move || {
        for _ in 0..n {
            busy_wait(delay);
            tx.send(Instant::now()).unwrap();
            ack_rx.recv().unwrap();
        }
    });
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = rx.recv().unwrap();
        out.push(s.elapsed().as_nanos() as u64);
        ack_tx.send(()).unwrap();
    }
    setter.join().unwrap();
    out
}

fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let n = rounds();
    println!(
        "promise -> future hand-off, {n} round trips, {} CPU(s) available to this process",
        cpus()
    );
    // Warm up threads, allocator and CPU frequency.
    futures_ping_pong(n / 10);
    crossbeam_ping_pong(n / 10);

    println!("\nping-pong round trip (2 hand-offs), ns:");
    println!("{:<28} {:>10} {:>10}", "", "median", "p99");
    let fut = stats(futures_ping_pong(n));
    let cb = stats(crossbeam_ping_pong(n));
    let std = stats(mpsc_ping_pong(n));
    for (name, s) in [
        ("cfutures Promise/Future", &fut),
        ("crossbeam bounded(1)", &cb),
        ("std mpsc", &std),
    ] {
        println!("{name:<28} {:>10.0} {:>10.0}", s.median, s.p99);
    }
    if cpus() > 1 {
        let floor = stats(atomic_ping_pong(n));
        println!(
            "{:<28} {:>10.0} {:>10.0}",
            "(floor: atomics, spinning)", floor.median, floor.p99
        );
    }
    println!(
        "ratio cfutures/crossbeam: median {:.2}, p99 {:.2}",
        fut.median / cb.median,
        fut.p99 / cb.p99
    );
    println!(
        "ratio cfutures/std mpsc:  median {:.2}, p99 {:.2}",
        fut.median / std.median,
        fut.p99 / std.p99
    );

    let dn = (n / 10).max(1000);
    println!("\ndelayed set: set -> waiter awake, ns ({dn} hand-offs each):");
    println!(
        "{:<12} {:>12} {:>10} {:>12} {:>10} {:>8}",
        "delay", "cfutures med", "p99", "crossbeam med", "p99", "ratio"
    );
    for us in [0u64, 5, 20, 100] {
        let d = Duration::from_micros(us);
        let f = stats(futures_delayed(dn, d));
        let c = stats(crossbeam_delayed(dn, d));
        println!(
            "{:<12} {:>12.0} {:>10.0} {:>12.0} {:>10.0} {:>8.2}",
            format!("{us} us"),
            f.median,
            f.p99,
            c.median,
            c.p99,
            f.median / c.median
        );
    }
}
