//! `map` from cfutures-combinators over the process pool: one chunk is one frame and one task.

mod util;

use cfutures_combinators::ExecutorExt;
use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

fn double(x: u64) -> u64 {
    x * 2
}

fn fail_on_5(x: u32) -> u32 {
    assert!(x != 5, "five");
    x
}

fn fail_on_some(x: i64) -> i64 {
    assert!(![0, 5, 6, 11].contains(&x), "item {x}");
    -x
}

#[test]
fn map_with_chunksize() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
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
}

#[test]
fn a_failing_item_fails_only_itself() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let out: Vec<_> = pool
        .map_builder()
        .chunksize(4)
        .timeout(WAIT)
        .map(fail_on_5, 0..10u32)
        .unwrap()
        .collect();
    for (i, r) in out.iter().enumerate() {
        if i == 5 {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.task_error().and_then(|t| t.panic_message()), Some("five"));
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u32);
        }
    }
}

#[test]
fn several_failing_items_in_a_chunk_fail_only_themselves() {
    // Chunks [0..4) [4..8) [8..12): failures first in a chunk, twice in a row, and last.
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let out: Vec<_> = pool
        .map_builder()
        .chunksize(4)
        .timeout(WAIT)
        .map(fail_on_some, 0..14i64)
        .unwrap()
        .collect();
    assert_eq!(out.len(), 14);
    for (i, r) in out.iter().enumerate() {
        if [0, 5, 6, 11].contains(&i) {
            let e = r.as_ref().unwrap_err().task_error().unwrap();
            assert_eq!(e.panic_message(), Some(format!("item {i}").as_str()));
            // Where it panicked, recorded in the worker, for the first failure of a chunk
            // and for the ones after it alike.
            let cfutures_core::TaskError::Panic { location, .. } = e else {
                panic!("a panic: {e}");
            };
            let loc = location.as_deref().expect("a location");
            assert!(loc.contains("tests/map.rs"), "{loc}");
        } else {
            assert_eq!(*r.as_ref().unwrap(), -(i as i64));
        }
    }
}

fn negate(x: i32) -> i32 {
    x.wrapping_neg()
}

fn halve(x: f64) -> f64 {
    x / 2.0
}

fn is_odd(x: u16) -> bool {
    x % 2 == 1
}

fn shout(s: String) -> String {
    s.to_uppercase()
}

fn widen(x: u8) -> u64 {
    u64::from(x) << 56
}

/// Chunks of numbers travel packed, others as postcard: every kind comes back intact.
#[test]
fn items_of_every_kind_come_back_intact() {
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let input: Vec<i32> = (-3000..3000)
        .map(|x| x * 7919)
        .chain([i32::MIN, i32::MAX])
        .collect();
    let out: Vec<i32> = pool
        .map_builder()
        .chunksize(100)
        .timeout(WAIT)
        .map(negate, input.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        out,
        input.iter().map(|x| x.wrapping_neg()).collect::<Vec<_>>()
    );

    let input: Vec<f64> = (0..1000)
        .map(|x| f64::from(x) * 0.37 - 100.0)
        .chain([f64::MAX, -0.0])
        .collect();
    let out: Vec<f64> = pool
        .map_builder()
        .chunksize(64)
        .timeout(WAIT)
        .map(halve, input.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, input.iter().map(|x| x / 2.0).collect::<Vec<_>>());

    let out: Vec<bool> = pool
        .map_builder()
        .chunksize(10)
        .timeout(WAIT)
        .map(is_odd, 0..1000u16)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(out.iter().enumerate().all(|(i, &b)| b == (i % 2 == 1)));

    let out: Vec<u64> = pool
        .map_builder()
        .chunksize(7)
        .timeout(WAIT)
        .map(widen, 0..=255u8)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(out.iter().enumerate().all(|(i, &y)| y == (i as u64) << 56));

    let out: Vec<String> = pool
        .map_builder()
        .chunksize(3)
        .timeout(WAIT)
        .map(shout, ["a", "b", "c", "d"].map(String::from))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, ["A", "B", "C", "D"]);
}
