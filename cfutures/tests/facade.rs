//! The facade: one `use` gives a typical program everything; the layered crates' items are
//! the same items (re-exports, no logic).

use std::time::Duration;

use cfutures::prelude::*;

#[test]
fn one_use_is_enough_for_submit_map_wait_and_as_completed() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let fs: Vec<Future<u32>> = (0..4)
        .map(|i| pool.submit(move || i * i).unwrap())
        .collect();
    let r = wait(&fs, Some(Duration::from_secs(30)), ReturnWhen::AllCompleted);
    assert_eq!(r.done.len(), 4);
    let n = as_completed(&fs, None).filter(Result::is_ok).count();
    assert_eq!(n, 4);
    let doubled: Vec<u32> = pool
        .map(|x: u32| x * 2, 0..3)
        .unwrap()
        .collect::<Result<_, Error>>()
        .unwrap();
    assert_eq!(doubled, [0, 2, 4]);
    let parsed: Vec<Result<u32, Error>> = pool
        .try_map(|s: &str| s.parse(), ["1", "x"])
        .unwrap()
        .collect();
    assert!(parsed[1].as_ref().unwrap_err().is_failed());
}

#[test]
fn the_facade_re_exports_the_layered_crates_items() {
    // The same types, not copies: a value of one is a value of the other.
    let pool: cfutures_thread_pool::ThreadPoolExecutor =
        cfutures::ThreadPoolExecutor::new(1).unwrap();
    let f: cfutures_core::Future<u8> = pool.submit(|| 1).unwrap();
    let g: cfutures::Future<u8> = f;
    assert_eq!(*g.result().unwrap(), 1);
    let _: cfutures::thread_pool::Builder = cfutures_thread_pool::Builder::new();
    let _: cfutures::combinators::ReturnWhen = cfutures_combinators::ReturnWhen::FirstCompleted;
    let e: cfutures::InvalidArgument = cfutures::ThreadPoolExecutor::new(0).unwrap_err();
    assert!(e.is_zero_workers());
}
