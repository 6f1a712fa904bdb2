//! `try_map` / `try_map_unordered`: `map` over a function returning `Result`, whose items are
//! `Result<R, Error>` with the function's error inside `Error::Failed` — as
//! `submit(fallible(..))` gives it — on the real thread pool, `InlineExecutor` and the
//! test-only `common::Threads`.

mod common;

use std::num::ParseIntError;

use cfutures_combinators::{ExecutorExt, MapBuilder};
use cfutures_core::{fallible, Error, InlineExecutor};
use cfutures_thread_pool::ThreadPoolExecutor;
use common::*;

fn parse(s: &str) -> Result<u32, ParseIntError> {
    s.parse()
}

const INPUT: [&str; 5] = ["1", "two", "3", "", "5"];

fn check_in_order(out: Vec<Result<u32, Error>>) {
    assert_eq!(out.len(), 5);
    for (i, want) in [(0, 1), (2, 3), (4, 5)] {
        assert_eq!(*out[i].as_ref().unwrap(), want);
    }
    for i in [1, 3] {
        let e = out[i].as_ref().unwrap_err();
        assert!(e.is_failed(), "{e:?}");
        // The function's own error, downcastable, as from `submit(fallible(..))`.
        let te = e.task_error().unwrap();
        assert!(te.is_error());
        assert!(te.downcast_ref::<ParseIntError>().is_some());
    }
}

#[test]
fn try_map_puts_the_functions_error_inside_error_failed() {
    let pool = ThreadPoolExecutor::new(3).unwrap();
    check_in_order(pool.try_map(parse, INPUT).unwrap().collect());
    for chunksize in [1, 2, 5] {
        let out = pool
            .map_builder()
            .chunksize(chunksize)
            .try_map(parse, INPUT)
            .unwrap()
            .collect();
        check_in_order(out);
    }
    check_in_order(
        InlineExecutor::new()
            .try_map(parse, INPUT)
            .unwrap()
            .collect(),
    );
    let threads = Threads::new(2);
    check_in_order(
        MapBuilder::new(&threads)
            .buffersize(1)
            .try_map(parse, INPUT)
            .unwrap()
            .collect(),
    );
}

#[test]
fn try_map_items_are_what_submit_fallible_gives() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let mapped: Vec<String> = pool
        .try_map(parse, INPUT)
        .unwrap()
        .map(|r| format!("{r:?}"))
        .collect();
    let submitted: Vec<String> = INPUT
        .iter()
        .map(|s| pool.submit(fallible(move || parse(s))).unwrap())
        .map(|f| format!("{:?}", f.result_timeout(LONG).copied()))
        .collect();
    assert_eq!(mapped, submitted);
}

#[test]
fn try_map_keeps_panics_and_string_errors() {
    quiet_planned_panics();
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let out: Vec<_> = pool
        .try_map(
            |x: u32| match x {
                0 => Err(format!("{PLANNED}: zero")),
                1 => panic!("{PLANNED}: one"),
                x => Ok(x * 10),
            },
            [2, 0, 1, 3],
        )
        .unwrap()
        .collect();
    assert_eq!(*out[0].as_ref().unwrap(), 20);
    let zero = out[1].as_ref().unwrap_err().task_error().unwrap();
    assert!(zero.is_error());
    assert_eq!(zero.to_string(), format!("{PLANNED}: zero"));
    let one = out[2].as_ref().unwrap_err().task_error().unwrap();
    assert!(one.is_panic());
    assert_eq!(*out[3].as_ref().unwrap(), 30);
}

#[test]
fn try_map_unordered_yields_every_item_once_and_counts_progress() {
    let pool = ThreadPoolExecutor::new(3).unwrap();
    let mut it = pool.try_map_unordered(parse, INPUT).unwrap();
    let mut ok: Vec<u32> = Vec::new();
    let mut failed = 0;
    for r in it.by_ref() {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => {
                assert!(e
                    .task_error()
                    .unwrap()
                    .downcast_ref::<ParseIntError>()
                    .is_some());
                failed += 1;
            }
        }
    }
    ok.sort();
    assert_eq!((ok, failed), (vec![1, 3, 5], 2));
    assert_eq!(it.progress().to_string(), "5/5");

    let mut it = pool
        .map_builder()
        .chunksize(2)
        .try_map(parse, INPUT)
        .unwrap();
    assert!(it.next().unwrap().is_ok());
    assert_eq!(it.progress().total, 5);
}
