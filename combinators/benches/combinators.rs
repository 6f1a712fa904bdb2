//! Benchmarks of `wait`, `as_completed` and `map`.
//!
//! `cargo bench -p cfutures-combinators` (add `-- --quick` for fewer repetitions).
//!
//! * `wait` / `as_completed` over 10k, 100k and 1M futures, already finished and still
//!   pending. Pending futures are completed by another thread, either concurrently (it
//!   starts with the call) or — the strict case, for `FIRST_EXCEPTION` and `as_completed` —
//!   only after every waiter is installed (the bench wraps each future to count
//!   installations), so that the time covers installing n waiters, then n completions with
//!   their notifications, one after the other; per-future cost should be flat in n.
//! * Thread-pool `map` of `x * 2` over 1M items at several chunk sizes, and `map_vec` (a
//!   `Vec` in, a `Vec` out, the workers reading and writing in place), against rayon's
//!   `par_iter().map().collect()` (and `into_par_iter()` on a moved `Vec`) measured in the
//!   same run, on the same number of threads.

use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_combinators::{as_completed, wait, ExecutorExt, ReturnWhen};
use cfutures_core::{pending, Completion, Future, FutureId, State, Waitable, Waiter, WaiterKey};
use cfutures_thread_pool::ThreadPoolExecutor;
use rayon::prelude::*;

/// A future that counts waiter installations, so the completer can start after them.
#[derive(Clone)]
struct Counted {
    f: Future<u64>,
    installs: Arc<AtomicUsize>,
}

impl PartialEq for Counted {
    fn eq(&self, o: &Self) -> bool {
        self.f == o.f
    }
}
impl Eq for Counted {}
impl Hash for Counted {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.f.hash(h)
    }
}

impl Waitable for Counted {
    fn id(&self) -> FutureId {
        Waitable::id(&self.f)
    }
    fn state(&self) -> State {
        self.f.state()
    }
    fn completion(&self) -> Option<Completion> {
        self.f.completion()
    }
    fn install_waiter(&self, w: &Arc<dyn Waiter>) -> Result<WaiterKey, Completion> {
        let r = self.f.install_waiter(w);
        // One writer (`wait` and `as_completed` install from the calling thread), so a load
        // and a store, not a locked increment: the instrument should cost next to nothing.
        // Relaxed: a count the completer polls; it then completes through the futures' own
        // synchronisation.
        self.installs
            .store(self.installs.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        r
    }
    fn remove_waiter(&self, key: WaiterKey) {
        self.f.remove_waiter(key)
    }
    fn cancel(&self) -> bool {
        self.f.cancel()
    }
    fn wait_deadline(&self, d: Option<Instant>) -> bool {
        self.f.wait_deadline(d)
    }
}

fn finished(n: usize) -> Vec<Future<u64>> {
    (0..n as u64).map(Future::ready).collect()
}

/// `n` pending futures, and a thread that completes them once all `n` waiters are installed.
fn pending_with_completer(n: usize) -> (Vec<Counted>, std::thread::JoinHandle<()>) {
    let installs = Arc::new(AtomicUsize::new(0));
    let (promises, futures): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| {
            let (p, f) = pending::<u64>();
            (
                p,
                Counted {
                    f,
                    installs: installs.clone(),
                },
            )
        })
        .unzip();
    let t = std::thread::spawn(move || {
        // Poll gently: spinning on the counter would bounce its cache line with every
        // installation and slow the installing thread down.
        while installs.load(Ordering::Relaxed) < n {
            std::thread::sleep(Duration::from_micros(20));
        }
        for (i, p) in promises.into_iter().enumerate() {
            p.set_result(i as u64).unwrap();
        }
    });
    (futures, t)
}

/// `n` pending futures, and a thread that completes them as soon as `go` is set (the
/// timed call sets it as it starts).
fn pending_with_go(
    n: usize,
) -> (
    Vec<Future<u64>>,
    Arc<AtomicUsize>,
    std::thread::JoinHandle<()>,
) {
    let (promises, fs): (Vec<_>, Vec<_>) = (0..n).map(|_| pending::<u64>()).unzip();
    let go = Arc::new(AtomicUsize::new(0));
    let g = go.clone();
    let completer = std::thread::spawn(move || {
        while g.load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
        for (i, p) in promises.into_iter().enumerate() {
            p.set_result(i as u64).unwrap();
        }
    });
    (fs, go, completer)
}

/// A few hundred nanoseconds of arithmetic.
fn heavy(x: u64) -> u64 {
    let mut h = x | 1;
    for _ in 0..64 {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
    }
    h
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per(d: Duration, n: usize) -> String {
    format!("{:.0} ns", d.as_nanos() as f64 / n as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn bench_wait_as_completed(reps: usize) {
    println!("## wait / as_completed (median of {reps})\n");
    println!("| op | futures | n | total | per future |");
    println!("|---|---|---|---|---|");
    for n in [10_000, 100_000, 1_000_000] {
        let reps = if n >= 1_000_000 { reps.min(3) } else { reps };
        // Already finished.
        let mut tw = Vec::new();
        let mut ta = Vec::new();
        for _ in 0..reps {
            let fs = finished(n);
            let t = Instant::now();
            let r = wait(fs.iter().cloned(), None, ReturnWhen::AllCompleted);
            tw.push(t.elapsed());
            assert_eq!(r.done.len(), n);
            drop(r);
            let mut got = Vec::with_capacity(n);
            let t = Instant::now();
            got.extend(as_completed(fs.iter().cloned(), None).map(Result::unwrap));
            ta.push(t.elapsed());
            assert_eq!(got.len(), n);
            drop(got);
        }
        let (tw, ta) = (median(tw), median(ta));
        println!(
            "| wait ALL_COMPLETED | finished | {n} | {} | {} |",
            ms(tw),
            per(tw, n)
        );
        println!(
            "| as_completed | finished | {n} | {} | {} |",
            ms(ta),
            per(ta, n)
        );

        // Pending. ALL_COMPLETED: completed by another thread that starts with the call.
        // FIRST_EXCEPTION (no failure, so it waits for all) and as_completed: completed by
        // another thread after every waiter is installed.
        let mut tw = Vec::new();
        let mut tx = Vec::new();
        let mut ta = Vec::new();
        let mut txc = Vec::new();
        let mut tac = Vec::new();
        for _ in 0..reps {
            let (fs, go, completer) = pending_with_go(n);
            let t = Instant::now();
            go.store(1, Ordering::Release);
            let r = wait(fs.iter().cloned(), None, ReturnWhen::AllCompleted);
            tw.push(t.elapsed());
            completer.join().unwrap();
            assert_eq!(r.done.len(), n);
            drop(r);

            // Completed concurrently: the completer starts with the call.
            let (fs, go, completer) = pending_with_go(n);
            let t = Instant::now();
            go.store(1, Ordering::Release);
            let r = wait(fs, None, ReturnWhen::FirstException);
            txc.push(t.elapsed());
            completer.join().unwrap();
            assert_eq!(r.done.len(), n);
            drop(r);

            let (fs, go, completer) = pending_with_go(n);
            let mut got = Vec::with_capacity(n);
            let t = Instant::now();
            go.store(1, Ordering::Release);
            for f in as_completed(fs, None) {
                got.push(f.unwrap());
            }
            tac.push(t.elapsed());
            completer.join().unwrap();
            assert_eq!(got.len(), n);
            drop(got);

            let (fs, completer) = pending_with_completer(n);
            let t = Instant::now();
            let r = wait(fs, None, ReturnWhen::FirstException);
            tx.push(t.elapsed());
            completer.join().unwrap();
            assert_eq!(r.done.len(), n);
            drop(r);

            let (fs, completer) = pending_with_completer(n);
            // Keep the yielded handles (dropped after timing, as `wait`'s sets are).
            let mut got = Vec::with_capacity(n);
            let t = Instant::now();
            for f in as_completed(fs, None) {
                got.push(f.unwrap());
            }
            ta.push(t.elapsed());
            completer.join().unwrap();
            assert_eq!(got.len(), n);
            drop(got);
        }
        let tx = median(tx);
        let (tw, ta) = (median(tw), median(ta));
        let (txc, tac) = (median(txc), median(tac));
        println!(
            "| wait ALL_COMPLETED | pending, completed concurrently | {n} | {} | {} |",
            ms(tw),
            per(tw, n)
        );
        println!(
            "| wait FIRST_EXCEPTION | pending, completed concurrently | {n} | {} | {} |",
            ms(txc),
            per(txc, n)
        );
        println!(
            "| as_completed | pending, completed concurrently | {n} | {} | {} |",
            ms(tac),
            per(tac, n)
        );
        println!(
            "| wait FIRST_EXCEPTION | pending, completed after all installs | {n} | {} | {} |",
            ms(tx),
            per(tx, n)
        );
        println!(
            "| as_completed | pending, completed after all installs | {n} | {} | {} |",
            ms(ta),
            per(ta, n)
        );
    }
    println!();
}

fn bench_map(reps: usize) {
    let n = 1_000_000u64;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let input: Vec<u64> = (0..n).collect();
    let expected: Vec<u64> = input.iter().map(|x| x * 2).collect();

    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .unwrap();
    let pool = ThreadPoolExecutor::new(workers).unwrap();
    // Warm up both pools (start their threads).
    rayon_pool.install(|| input.par_iter().map(|x| x * 2).collect::<Vec<u64>>());
    let _ = pool
        .map_builder()
        .chunksize(10_000)
        .map(|x: u64| x * 2, input.iter().copied())
        .unwrap()
        .count();

    let time_rayon = || {
        let t = Instant::now();
        let out: Vec<u64> = rayon_pool.install(|| input.par_iter().map(|x| x * 2).collect());
        let d = t.elapsed();
        assert_eq!(out, expected);
        d
    };
    let time_map = |chunksize: usize, buffersize: Option<usize>| {
        let t = Instant::now();
        let mut b = pool.map_builder().chunksize(chunksize);
        if let Some(n) = buffersize {
            b = b.buffersize(n);
        }
        let out: Vec<u64> = b
            .map(|x: u64| x * 2, input.iter().copied())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let d = t.elapsed();
        assert_eq!(out, expected);
        d
    };
    // map_vec takes the input by value: the `Vec` is made before the clock starts (as a
    // program that owns its data and hands it over would), and, on another row, inside it.
    let time_map_vec = |chunksize: Option<usize>, clone_inside: bool| {
        let owned = (!clone_inside).then(|| input.clone());
        let t = Instant::now();
        let owned = owned.unwrap_or_else(|| input.clone());
        let mut b = pool.map_builder();
        if let Some(c) = chunksize {
            b = b.chunksize(c);
        }
        let out: Vec<u64> = b.map_vec(|x: u64| x * 2, owned).unwrap();
        let d = t.elapsed();
        assert_eq!(out, expected);
        d
    };
    let time_rayon_owned = || {
        let owned = input.clone();
        let t = Instant::now();
        let out: Vec<u64> = rayon_pool.install(|| owned.into_par_iter().map(|x| x * 2).collect());
        let d = t.elapsed();
        assert_eq!(out, expected);
        d
    };
    let time_seq = || {
        let t = Instant::now();
        let out: Vec<u64> = black_box(&input).iter().map(|x| x * 2).collect();
        let d = t.elapsed();
        assert_eq!(out, expected);
        d
    };

    println!("## map of x * 2 over 1M items, {workers} threads (median of {reps})\n");
    println!("| what | chunksize | buffersize | tasks | time | vs rayon |");
    println!("|---|---|---|---|---|---|");
    // (chunksize, buffersize): unbounded submits everything at the call; a small buffersize
    // keeps few chunks in flight, so their memory is reused instead of freshly faulted in.
    let b = 4 * workers;
    let chunks: Vec<(usize, Option<usize>)> = vec![
        (10_000, None),
        (50_000, None),
        (250_000, None),
        (2_000, Some(2 * workers)),
        (4_000, Some(2 * workers)),
        (4_000, Some(b)),
        (8_000, Some(b)),
        (16_000, Some(2 * workers)),
        (16_000, Some(b)),
        (32_000, Some(b)),
        (2_000, Some(8 * workers)),
        (1_000, Some(16 * workers)),
    ];
    // Interleave the runs so that load changes hit every variant alike, in a new random
    // order each repetition: what a variant finds depends on the one run before it
    // (whether the allocator just gave 16 MB back to the kernel, so that the next output
    // `Vec` is faulted in afresh, at ~2 µs a page on these VMs), and a fixed order would
    // charge that to the same variant every time.
    const FIXED: usize = 6;
    let k = FIXED + chunks.len();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); k];
    let mut order: Vec<usize> = (0..k).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..reps {
        for i in (1..k).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for &v in &order {
            let d = match v {
                0 => time_rayon(),
                1 => time_seq(),
                2 => time_rayon_owned(),
                3 => time_map_vec(None, false),
                4 => time_map_vec(Some(15_625), false),
                5 => time_map_vec(None, true),
                _ => {
                    let (c, b) = chunks[v - FIXED];
                    time_map(c, b)
                }
            };
            times[v].push(d);
        }
    }
    let mut times = times.into_iter();
    let mut next = || median(times.next().expect("one per variant"));
    let (tr, ts, tro) = (next(), next(), next());
    let (tv0, tv1, tv2) = (next(), next(), next());
    let tm: Vec<Duration> = (0..chunks.len()).map(|_| next()).collect();
    let ratio = |d: Duration| format!("{:.2}×", d.as_secs_f64() / tr.as_secs_f64());
    println!(
        "| rayon par_iter().map().collect() | – | – | – | {} | 1.00× |",
        ms(tr)
    );
    println!(
        "| sequential iter().map().collect() | – | – | – | {} | {} |",
        ms(ts),
        ratio(ts)
    );
    println!(
        "| rayon into_par_iter().map().collect(), input moved in | – | – | – | {} | {} |",
        ms(tro),
        ratio(tro)
    );
    let auto = (n as usize).div_ceil(8 * workers).max(1024);
    println!(
        "| pool.map_vec, input moved in | {auto} (auto) | – | {} | {} | {} |",
        (n as usize).div_ceil(auto),
        ms(tv0),
        ratio(tv0)
    );
    println!(
        "| pool.map_vec, input moved in | 15625 | – | 64 | {} | {} |",
        ms(tv1),
        ratio(tv1)
    );
    println!(
        "| pool.map_vec(input.clone()), clone timed | {auto} (auto) | – | {} | {} | {} |",
        (n as usize).div_ceil(auto),
        ms(tv2),
        ratio(tv2)
    );
    for (i, &(c, b)) in chunks.iter().enumerate() {
        let d = tm[i];
        let tasks = (n as usize).div_ceil(c);
        let b = b.map_or("–".to_owned(), |b| b.to_string());
        println!(
            "| pool.map | {c} | {b} | {tasks} | {} | {} |",
            ms(d),
            ratio(d)
        );
    }

    // The same with a function that does some work (a fraction of a microsecond per item):
    // the per-item cost of `map` is then in the noise.
    let rayon_heavy = || {
        let t = Instant::now();
        let out: Vec<u64> = rayon_pool.install(|| input.par_iter().map(|&x| heavy(x)).collect());
        black_box(out);
        t.elapsed()
    };
    let map_heavy = || {
        let t = Instant::now();
        let out: Vec<u64> = pool
            .map_builder()
            .chunksize(4_000)
            .buffersize(b)
            .map(heavy, input.iter().copied())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        black_box(out);
        t.elapsed()
    };
    let (mut hr, mut hm) = (Vec::new(), Vec::new());
    for _ in 0..reps.min(5) {
        hr.push(rayon_heavy());
        hm.push(map_heavy());
    }
    let (hr, hm) = (median(hr), median(hm));
    let cost = per(hr * workers as u32, n as usize);
    println!(
        "| rayon, heavier f ({cost}/item) | – | – | – | {} | 1.00× |",
        ms(hr)
    );
    println!(
        "| pool.map, heavier f ({cost}/item) | 4000 | {b} | 250 | {} | {:.2}× |",
        ms(hm),
        hm.as_secs_f64() / hr.as_secs_f64()
    );

    println!();
}

fn bench_map_per_task(reps: usize) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = ThreadPoolExecutor::new(workers).unwrap();
    println!("## map per-task overhead: chunksize 1 over 100k items, {workers} threads\n");
    println!("| what | chunksize | tasks | time | per item |");
    println!("|---|---|---|---|---|");
    let small: Vec<u64> = (0..100_000).collect();
    let mut t1 = Vec::new();
    for _ in 0..reps.min(3) {
        let t = Instant::now();
        let c = pool
            .map(|x: u64| x * 2, small.iter().copied())
            .unwrap()
            .count();
        t1.push(t.elapsed());
        assert_eq!(c, small.len());
    }
    let d = median(t1);
    println!(
        "| pool.map, 100k items | 1 | 100000 | {} | {} |",
        ms(d),
        per(d, small.len())
    );
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; ignore it.
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 7 };
    // Optional filters, matched against "wait as_completed", "map-1m", "map-per-task".
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    if run("wait as_completed") {
        bench_wait_as_completed(reps);
    }
    if run("map-1m") {
        bench_map(reps);
    }
    if run("map-per-task") {
        bench_map_per_task(reps);
    }
}
