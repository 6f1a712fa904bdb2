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
