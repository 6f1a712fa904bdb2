//! Bulk data (issue 12): payloads of every size cross byte-exact, in the frame or through
//! shared memory, both ways; a worker killed while it reads or writes a large payload fails
//! only its task and leaves no segment behind; a `SharedSlice` is read by many tasks at
//! once, each worker mapping it once; a proptest over random payload sizes and shapes.
//!
//! The tests that count the parent's descriptors and mappings, and the 256 MiB round trip,
//! run each in a process of its own (`run_isolated`), so that no other test's segments are
//! counted, and so that the large one's memory is not added to the others'.

mod util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cfutures_combinators::ExecutorExt;
use cfutures_core::{Submit, Task, TaskError};
use cfutures_process_pool::{PodVec, ProcessPoolExecutor, RemoteTask, SharedSlice};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use util::*;

/// The default threshold: payloads (encoded) of at least this many bytes go out of line.
const T: usize = 64 << 10;

/// Deterministic bytes of length `n` (no page is all zeros).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ seed;
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    v
}

/// The length of postcard's varint of `n`.
fn varint_len(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

/// The raw length of a `Vec<u8>` whose encoding is `enc` bytes (or the nearest below).
fn raw_for_encoded(enc: usize) -> usize {
    (0..=enc).rev().find(|&n| n + varint_len(n) == enc).unwrap()
}

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

fn length(v: Vec<u8>) -> usize {
    v.len()
}

fn echo_f64(v: Vec<f64>) -> Vec<f64> {
    v
}

fn echo_u32(v: Vec<u32>) -> Vec<u32> {
    v
}

fn echo_string(s: String) -> String {
    s
}

/// Mappings of the pool's argument segments in this (worker) process.
fn arg_segments(_: Vec<u8>) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("cfutures-arg"))
        .count()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Record {
    name: String,
    pixels: Vec<u8>,
    depth: Vec<f32>,
    ids: PodVec<u32>,
    tags: BTreeMap<String, Vec<u8>>,
    note: Option<Vec<u8>>,
}

impl Task for Record {
    type Output = Record;
    fn run(mut self) -> Result<Record, TaskError> {
        self.name.push('!');
        self.pixels.reverse();
        Ok(self)
    }
}
impl RemoteTask for Record {}

fn record(n: usize, seed: u64) -> Record {
    Record {
        name: format!("record {seed}"),
        pixels: bytes(n, seed),
        depth: (0..n / 16).map(|i| i as f32 * 0.25).collect(),
        ids: PodVec((0..n as u32 / 32).collect()),
        tags: [("a".to_owned(), bytes(n / 8, seed + 1))]
            .into_iter()
            .collect(),
        note: (n % 2 == 0).then(|| bytes(n / 4, seed + 2)),
    }
}

#[test]
fn round_trips_around_the_threshold_are_byte_exact() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    // Raw lengths, and raw lengths whose *encoding* is T - 1, T, T + 1 bytes (the
    // threshold counts encoded bytes).
    let mut sizes = vec![0, 1, T - 1, T, T + 1];
    sizes.extend([T - 1, T, T + 1].map(raw_for_encoded));
    sizes.extend([3 << 20, (3 << 20) + 1]);
    for (i, &n) in sizes.iter().enumerate() {
        let v = bytes(n, i as u64);
        let back = pool.submit_fn(echo, v.clone()).unwrap();
        let len = pool.submit_fn(length, v.clone()).unwrap();
        assert!(
            *back.result_timeout(WAIT).unwrap() == v,
            "echo of {n} bytes"
        );
        assert_eq!(*len.result_timeout(WAIT).unwrap(), n);
        // Other bulk types, at the top level and inside a task.
        let f: Vec<f64> = (0..n / 8).map(|k| k as f64 / 3.0).collect();
        let u: Vec<u32> = (0..n as u32 / 4)
            .map(|k| k.wrapping_mul(2_654_435_761))
            .collect();
        let s = "é".repeat(n / 2);
        let r = record(n, i as u64);
        let ff = pool.submit_fn(echo_f64, f.clone()).unwrap();
        let uf = pool.submit_fn(echo_u32, u.clone()).unwrap();
        let sf = pool.submit_fn(echo_string, s.clone()).unwrap();
        let rf = pool.submit(r.clone()).unwrap();
        assert!(*ff.result_timeout(WAIT).unwrap() == f);
        assert!(*uf.result_timeout(WAIT).unwrap() == u);
        assert!(*sf.result_timeout(WAIT).unwrap() == s);
        let mut expect = r;
        expect.name.push('!');
        expect.pixels.reverse();
        assert!(*rf.result_timeout(WAIT).unwrap() == expect);
    }
}

#[test]
fn payloads_of_at_least_the_threshold_go_through_shared_memory() {
    // A fresh worker has mapped no argument segment; one of T - 1 encoded bytes maps none,
    // one of T encoded bytes maps one.
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let below = pool
        .submit_fn(arg_segments, vec![1u8; raw_for_encoded(T - 1)])
        .unwrap();
    assert_eq!(*below.result_timeout(WAIT).unwrap(), 0);
    let at = pool
        .submit_fn(arg_segments, vec![1u8; raw_for_encoded(T)])
        .unwrap();
    assert_eq!(*at.result_timeout(WAIT).unwrap(), 1);
    // With the threshold at `usize::MAX`, never.
    let pipes = ProcessPoolExecutor::builder()
        .max_workers(1)
        .shared_memory_threshold(usize::MAX)
        .build()
        .unwrap();
    let f = pipes.submit_fn(arg_segments, vec![1u8; 8 << 20]).unwrap();
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 0);
}

#[test]
fn map_with_large_items() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let items: Vec<Vec<u8>> = (0..12).map(|i| bytes(300_000 + i * 7, i as u64)).collect();
    for chunksize in [1, 5] {
        let out: Vec<Vec<u8>> = pool
            .map_builder()
            .chunksize(chunksize)
            .timeout(WAIT)
            .map(echo, items.clone())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(out == items, "chunksize {chunksize}");
    }
    // Items of numbers travel packed, a large chunk of them out of line.
    let big: Vec<u64> = (0..200_000).map(|x| x * 3).collect();
    let out: Vec<u64> = pool
        .map_builder()
        .chunksize(100_000)
        .timeout(WAIT)
        .map(|x: u64| x + 1, big.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(out.iter().zip(&big).all(|(y, x)| *y == x + 1));
}

/// A 256 MiB payload both ways, byte-exact, in a process of its own.
#[test]
fn a_256_mib_payload_round_trips() {
    run_isolated(
        "a_256_mib_payload_round_trips_alone",
        Duration::from_secs(120),
    );
}

#[test]
#[ignore = "run by a_256_mib_payload_round_trips, in a process of its own"]
fn a_256_mib_payload_round_trips_alone() {
    if !isolated() {
        return;
    }
    const N: usize = 256 << 20;
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let v = bytes(N, 256);
    let back = pool.submit_fn(echo, v.clone()).unwrap();
    assert!(*back.result_timeout(WAIT).unwrap() == v);
}

// ---------------------------------------------------------------------------------------
// A worker killed while it reads, or writes, a large payload.

/// Env var naming the file a worker writes its pid to when it is in the middle of reading
/// (or writing) a large payload; it then waits to be killed.
const MARK: &str = "CFPP_BULK_MARK";

/// Reports its worker's pid (to the file `MARK` names), then waits to be killed.
fn report_and_wait() {
    let path = std::env::var(MARK).unwrap();
    std::fs::write(path, std::process::id().to_string()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Deserializing it reports and waits: placed between two large fields, the worker is
/// killed in the middle of reading its argument.
struct ReadMark;

impl Serialize for ReadMark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for ReadMark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        report_and_wait();
        unreachable!()
    }
}

/// Serializing it the second time in a process (the first is the size pass; the second,
/// writing into the result segment) reports and waits: the worker is killed in the middle
/// of writing its result.
struct WriteMark;

impl Serialize for WriteMark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static CALLS: AtomicU32 = AtomicU32::new(0);
        if CALLS.fetch_add(1, Ordering::Relaxed) == 1 {
            report_and_wait();
        }
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for WriteMark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| WriteMark)
    }
}

#[derive(Serialize, Deserialize)]
struct BigIn {
    a: Vec<u8>,
    mark: ReadMark,
    b: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct BigOut {
    a: Vec<u8>,
    mark: WriteMark,
    b: Vec<u8>,
}

fn read_then_die(_: BigIn) -> usize {
    unreachable!("killed while reading its argument")
}

fn make_then_die(n: usize) -> BigOut {
    BigOut {
        a: vec![1; n],
        mark: WriteMark,
        b: vec![2; n],
    }
}

/// Memfd descriptors and mappings in process `pid`.
fn memfds(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:"))
                })
                .count()
        })
        .unwrap_or(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.lines().filter(|l| l.contains("/memfd:")).count())
        .unwrap_or(0);
    (fds, maps)
}

/// The inodes of the memfd segments named `name` that `pid` maps.
fn segment_inodes(pid: u32, name: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(name))
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .collect()
}

/// Whether any process we can see maps, or holds a descriptor of, inode `ino`.
fn anyone_holds(ino: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let maps = std::fs::read_to_string(p.path().join("maps")).unwrap_or_default();
        if maps
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(ino))
        {
            return true;
        }
        std::fs::read_dir(p.path().join("fd")).is_ok_and(|fds| {
            fds.flatten().any(|f| {
                std::fs::metadata(f.path())
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m).to_string() == ino)
            })
        })
    })
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "{what}: still not so after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills the worker of `f` once it reports that it is in the middle of reading or writing
/// (mapping a segment `name`d so); checks that `f` fails with the death, that nobody holds
/// the segment afterwards, and that the pool serves.
fn kill_mid_transfer<R>(
    pool: &ProcessPoolExecutor,
    f: &cfutures_core::Future<R>,
    name: &str,
    mark: &std::path::Path,
    big: &[u8],
) {
    let pid = wait_for_pid(mark);
    // The worker is in the middle of it: it maps the segment it reads (the parent's) or
    // writes (its own).
    let inodes = segment_inodes(pid, name);
    assert!(!inodes.is_empty(), "worker {pid} maps no {name} segment");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let Err(err) = f.result_timeout(WAIT) else {
        panic!("{name}: the task survived its worker's death");
    };
    assert!(
        matches!(err.task_error(), Some(TaskError::WorkerDied { .. })),
        "{name}: {err}"
    );
    // Nothing holds the segment any more: the worker's died with it; the parent freed its
    // own (the job failed, so it is not reused).
    for ino in &inodes {
        eventually(&format!("{name} segment {ino} freed"), || {
            !anyone_holds(ino)
        });
    }
    // The pool serves, large payloads included.
    let back = pool.submit_fn(echo, big.to_vec()).unwrap();
    assert!(*back.result_timeout(WAIT).unwrap() == big);
    assert_eq!(
        *pool
            .submit_fn(add_one, 1)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        2
    );
    assert!(!pool.is_broken());
}

#[test]
fn a_worker_killed_while_reading_or_writing_a_large_payload_fails_only_its_task() {
    run_isolated(
        "a_worker_killed_while_reading_or_writing_a_large_payload_fails_only_its_task_alone",
        Duration::from_secs(120),
    );
}

#[test]
#[ignore = "run by a_worker_killed_while_reading_or_writing_a_large_payload_fails_only_its_task, \
            in a process of its own"]
fn a_worker_killed_while_reading_or_writing_a_large_payload_fails_only_its_task_alone() {
    if !isolated() {
        return;
    }
    const HALF: usize = 64 << 20;
    let me = std::process::id();
    let before = memfds(me);
    let mark = pid_file("bulk-mark");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .worker_env(MARK, &mark)
        .build()
        .unwrap();
    let big = bytes(3 << 20, 7);
    assert!(pool
        .submit_fn(length, big.clone())
        .unwrap()
        .result_timeout(WAIT)
        .is_ok());
    for round in 0..4 {
        if round % 2 == 0 {
            let arg = BigIn {
                a: vec![3; HALF],
                mark: ReadMark,
                b: vec![4; HALF],
            };
            let f = pool.submit_fn(read_then_die, arg).unwrap();
            kill_mid_transfer(&pool, &f, "cfutures-arg", &mark, &big);
        } else {
            let f = pool.submit_fn(make_then_die, HALF).unwrap();
            kill_mid_transfer(&pool, &f, "cfutures-result", &mark, &big);
        }
    }
    drop(pool);
    assert!(
        children().iter().all(|&c| !alive(c)),
        "a worker outlived the pool"
    );
    // No segment, descriptor or mapping is left in the parent.
    assert_eq!(
        memfds(me),
        before,
        "memfd descriptors and mappings after the pool"
    );
}

/// Workers SIGKILLed every few ms while tasks with payloads of 1 KiB to 2 MiB stream both
/// ways: every future resolves, byte-exact or `WorkerDied`; the pool serves afterwards;
/// nothing is left in the parent once it is dropped.
#[test]
fn a_kill_storm_with_large_payloads() {
    run_isolated(
        "a_kill_storm_with_large_payloads_alone",
        Duration::from_secs(120),
    );
}

#[test]
#[ignore = "run by a_kill_storm_with_large_payloads, in a process of its own"]
fn a_kill_storm_with_large_payloads_alone() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    if !isolated() {
        return;
    }
    let me = std::process::id();
    let before = memfds(me);
    let pool = Arc::new(ProcessPoolExecutor::new(2).unwrap());
    assert!(pool
        .submit_fn(length, vec![0; 10])
        .unwrap()
        .result_timeout(WAIT)
        .is_ok());
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (stop, pool) = (stop.clone(), pool.clone());
        std::thread::spawn(move || {
            let mut kills = 0u32;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if let Some(&p) = pool.worker_pids().get(n % 2) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(p as i32, libc::SIGKILL) };
                    kills += 1;
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(3 + (n % 7) as u64 * 3));
            }
            kills
        })
    };
    let mut futures = Vec::new();
    let t0 = Instant::now();
    let mut i = 0u64;
    while t0.elapsed() < Duration::from_millis(1500) || futures.len() < 200 {
        let n = match i % 4 {
            0 => 1 << 10,
            1 => T + (i as usize % 100),
            2 => 300_000,
            _ => 2 << 20,
        };
        let v = bytes(n, i);
        futures.push((v.clone(), pool.submit_fn(echo, v).unwrap()));
        i += 1;
        if futures.len() % 8 == 0 {
            // Keep a few in flight, not thousands.
            let _ = futures[futures.len() - 8].1.result_timeout(WAIT);
        }
    }
    let (mut ok, mut died) = (0, 0);
    for (k, (v, f)) in futures.iter().enumerate() {
        match f.result_timeout(WAIT) {
            Ok(back) => {
                assert!(*back == *v, "task {k}: a wrong result");
                ok += 1;
            }
            Err(e) => match e.task_error() {
                Some(TaskError::WorkerDied { .. }) => died += 1,
                _ => panic!("task {k}: expected a value or WorkerDied, got {e}"),
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    assert!(kills > 10, "the storm killed only {kills} workers");
    assert!(ok > 0 && died > 0, "{ok} ok, {died} died");
    assert!(!pool.is_broken());
    // It serves afterwards.
    let v = bytes(3 << 20, 99);
    let back = pool.submit_fn(echo, v.clone()).unwrap();
    assert!(*back.result_timeout(WAIT).unwrap() == v);
    let pool = Arc::into_inner(pool).unwrap();
    drop(pool);
    assert!(
        children().iter().all(|&c| !alive(c)),
        "a worker outlived the pool"
    );
    assert_eq!(
        memfds(me),
        before,
        "memfd descriptors and mappings after the pool"
    );
}

// ---------------------------------------------------------------------------------------
// SharedSlice.

fn sum_view(s: SharedSlice<u64>) -> (u64, u32) {
    (
        s.iter().fold(0u64, |a, &x| a.wrapping_add(x)),
        std::process::id(),
    )
}

/// How many times this worker maps the segment of inode `ino`.
fn maps_of(ino: u64) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(&ino.to_string()))
        .count()
}

fn inode_of(s: &SharedSlice<u64>) -> u64 {
    // The segment a view of it names: the one mapping this process has of that data.
    let addr = s.as_ptr() as usize;
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let (lo, hi) = w.next()?.split_once('-')?;
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).ok()?,
                usize::from_str_radix(hi, 16).ok()?,
            );
            (lo <= addr && addr < hi).then(|| w.nth(3)?.parse().ok())?
        })
        .unwrap()
}

fn sum_and_maps((s, ino): (SharedSlice<u64>, u64)) -> (u64, u32, usize) {
    let (sum, pid) = sum_view(s);
    (sum, pid, maps_of(ino))
}

fn counting(n: usize) -> SharedSlice<u64> {
    SharedSlice::<u64>::new_with(n, |d| {
        for (i, x) in d.iter_mut().enumerate() {
            *x = i as u64;
        }
    })
    .unwrap()
}

#[test]
fn a_shared_slice_is_read_by_many_tasks_at_once() {
    let n = 8 << 20; // 64 MiB
    let data = counting(n);
    let ino = inode_of(&data);
    let pool = ProcessPoolExecutor::new(2).unwrap();
    // 64 views, 64 tasks, on both workers at once.
    let parts = 64;
    let step = n / parts;
    let futures: Vec<_> = (0..parts)
        .map(|k| {
            let view = data.slice(k * step..(k + 1) * step);
            pool.submit_fn(sum_and_maps, (view, ino)).unwrap()
        })
        .collect();
    let mut pids = std::collections::HashSet::new();
    for (k, f) in futures.iter().enumerate() {
        let (sum, pid, maps) = *f.result_timeout(WAIT).unwrap();
        let expect: u64 = (k * step..(k + 1) * step).map(|i| i as u64).sum();
        assert_eq!(sum, expect, "part {k}");
        // Every task in a worker reads the same mapping: each worker maps the segment once.
        assert_eq!(maps, 1, "part {k}: the worker maps the slice {maps} times");
        pids.insert(pid);
    }
    // Through `map` too, one view per item.
    let views: Vec<_> = (0..parts)
        .map(|k| data.slice(k * step..(k + 1) * step))
        .collect();
    let sums: Vec<u64> = pool
        .map_builder()
        .chunksize(4)
        .timeout(WAIT)
        .map(sum_view, views)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(
        sums.iter().fold(0u64, |a, &x| a.wrapping_add(x)),
        (n as u64) * (n as u64 - 1) / 2
    );
    let _ = pids;
}

fn make_shared(n: usize) -> SharedSlice<u64> {
    counting(n)
}

fn pass_back(s: SharedSlice<u64>) -> SharedSlice<u64> {
    s.slice(1..s.len())
}

#[test]
fn shared_slices_come_back_from_workers() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    // Made in a worker, read here: shared memory, not a copy.
    let made = pool.submit_fn(make_shared, 1 << 20).unwrap();
    let s = made.result_timeout(WAIT).unwrap().clone();
    assert!(s.is_shared());
    assert_eq!(s.len(), 1 << 20);
    assert_eq!(s[12345], 12345);
    // Sent to a worker and back: still the same memory here.
    let back = pool.submit_fn(pass_back, s.clone()).unwrap();
    let b = back.result_timeout(WAIT).unwrap();
    assert!(b.is_shared());
    assert_eq!(
        b.as_ptr(),
        s[1..].as_ptr(),
        "the data came back to its own mapping"
    );
    // With segments off, shared slices still cross by reference.
    let pipes = ProcessPoolExecutor::builder()
        .max_workers(1)
        .shared_memory_threshold(usize::MAX)
        .build()
        .unwrap();
    let f = pipes.submit_fn(sum_view, s.clone()).unwrap();
    assert_eq!(
        f.result_timeout(WAIT).unwrap().0,
        (1u64 << 20) * ((1 << 20) - 1) / 2
    );
}

#[test]
fn a_shared_slice_is_freed_in_workers_after_its_last_handle() {
    run_isolated(
        "a_shared_slice_is_freed_in_workers_after_its_last_handle_alone",
        Duration::from_secs(60),
    );
}

fn maps_in(pid: u32, ino: u64) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(&ino.to_string()))
        .count()
}

#[test]
#[ignore = "run by a_shared_slice_is_freed_in_workers_after_its_last_handle, in a process of \
            its own"]
fn a_shared_slice_is_freed_in_workers_after_its_last_handle_alone() {
    if !isolated() {
        return;
    }
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let data = counting(1 << 20);
    let ino = inode_of(&data);
    let f = pool.submit_fn(sum_view, data.clone()).unwrap();
    let (_, pid) = *f.result_timeout(WAIT).unwrap();
    // The worker keeps it mapped for the next tasks...
    assert_eq!(maps_in(pid, ino), 1);
    drop(data);
    assert_eq!(
        maps_in(std::process::id(), ino),
        0,
        "the parent's last handle is gone"
    );
    // ... and lets it go a while after its last use.
    eventually("the worker unmaps the slice", || maps_in(pid, ino) == 0);
    eventually("nobody holds the slice", || !anyone_holds(&ino.to_string()));
}

// ---------------------------------------------------------------------------------------
// Random sizes and shapes.

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Piece {
    Bytes(Vec<u8>),
    Floats(Vec<f64>),
    Words(PodVec<u32>),
    Text(String),
    Nested(Vec<Vec<u8>>),
    Nothing,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Parcel {
    pieces: Vec<Piece>,
    head: Vec<u8>,
    number: u64,
}

impl Task for Parcel {
    type Output = Parcel;
    fn run(self) -> Result<Parcel, TaskError> {
        Ok(self)
    }
}
impl RemoteTask for Parcel {}

/// A size: mostly around the threshold, sometimes small, rarely a few MiB.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..300,
        4 => (T - 64)..(T + 64),
        2 => 0usize..4 * T,
        1 => (1usize << 20)..(3 << 20),
    ]
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        (size(), any::<u64>()).prop_map(|(n, s)| Piece::Bytes(bytes(n, s))),
        (size(), any::<u64>()).prop_map(|(n, s)| Piece::Floats(
            bytes(n / 8 * 8, s)
                .chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .filter(|x| !x.is_nan())
                .collect()
        )),
        size().prop_map(|n| Piece::Words(PodVec((0..n as u32 / 4).collect()))),
        size().prop_map(|n| Piece::Text("ü".repeat(n / 2))),
        prop::collection::vec(size(), 0..4)
            .prop_map(|ns| Piece::Nested(ns.iter().map(|&n| bytes(n / 4, n as u64)).collect())),
        Just(Piece::Nothing),
    ]
}

fn parcel() -> impl Strategy<Value = Parcel> {
    (prop::collection::vec(piece(), 0..4), size(), any::<u64>()).prop_map(|(pieces, n, number)| {
        Parcel {
            pieces,
            head: bytes(n, number),
            number,
        }
    })
}

fn pools() -> &'static [ProcessPoolExecutor; 2] {
    static POOLS: std::sync::OnceLock<[ProcessPoolExecutor; 2]> = std::sync::OnceLock::new();
    POOLS.get_or_init(|| {
        [T, 1024].map(|t| {
            ProcessPoolExecutor::builder()
                .max_workers(2)
                .shared_memory_threshold(t)
                .build()
                .unwrap()
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random shapes and sizes cross both ways byte-exact, as a task and as `submit_fn`'s
    /// argument, through the default threshold and a small one.
    #[test]
    fn random_payloads_round_trip(p in parcel(), raw in size()) {
        for pool in pools() {
            let f = pool.submit(p.clone()).unwrap();
            prop_assert_eq!(f.result_timeout(WAIT).unwrap(), &p);
            let v = bytes(raw, p.number);
            let g = pool.submit_fn(echo, v.clone()).unwrap();
            prop_assert!(*g.result_timeout(WAIT).unwrap() == v);
        }
    }
}
