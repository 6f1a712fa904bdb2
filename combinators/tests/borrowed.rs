//! `wait(&futures, ..)` and `as_completed(&futures, ..)`: the combinators take borrowed
//! futures (any iterable of `&Future<T>` or `&AnyFuture`), yield the references, and leave
//! the caller's collection to use afterwards.

mod common;

use std::time::Duration;

use cfutures_combinators::{as_completed, wait, ReturnWhen};
use cfutures_core::{pending, AnyFuture, Future};
use common::*;

#[test]
fn wait_takes_a_borrowed_vec() {
    let (p, slow) = pending::<u32>();
    let futures: Vec<Future<u32>> = vec![Future::ready(1), slow, Future::ready(3)];
    let r = wait(&futures, Some(Duration::ZERO), ReturnWhen::AllCompleted);
    assert_eq!(r.done.len(), 2);
    assert!(r.not_done.contains(&&futures[1]));
    let r = wait(&futures, Some(LONG), ReturnWhen::FirstCompleted);
    assert!(r.done.contains(&&futures[0]));

    let t = std::thread::spawn(move || p.set_result(2).unwrap());
    let r = wait(futures.iter(), Some(LONG), ReturnWhen::AllCompleted);
    assert_eq!(r.done.len(), 3);
    t.join().unwrap();
    // The caller still owns its futures.
    let values: Vec<u32> = futures.iter().map(|f| *f.result().unwrap()).collect();
    assert_eq!(values, [1, 2, 3]);
}

#[test]
fn wait_takes_borrowed_erased_futures_and_slices() {
    let a = Future::ready(1u8);
    let b = Future::ready("two");
    let all: [AnyFuture; 2] = [a.erase(), b.erase()];
    let r = wait(&all, None, ReturnWhen::AllCompleted);
    assert_eq!(r.done.len(), 2);
    let slice: &[AnyFuture] = &all;
    assert_eq!(wait(slice, None, ReturnWhen::FirstException).done.len(), 2);
}

#[test]
fn as_completed_takes_a_borrowed_vec_and_yields_the_references() {
    let mut promises = Vec::new();
    let mut futures = Vec::new();
    for _ in 0..4 {
        let (p, f) = pending::<usize>();
        promises.push(p);
        futures.push(f);
    }
    let t = std::thread::spawn(move || {
        for (i, p) in promises.into_iter().enumerate().rev() {
            p.set_result(i).unwrap();
        }
    });
    let mut seen: Vec<usize> = as_completed(&futures, Some(LONG))
        .map(|f| {
            let f: &Future<usize> = f.unwrap();
            *f.result().unwrap()
        })
        .collect();
    t.join().unwrap();
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3]);
    // Duplicates collapse, as with owned handles.
    let twice = [&futures[0], &futures[0], &futures[1]];
    assert_eq!(as_completed(twice, None).count(), 2);
    assert_eq!(futures.len(), 4, "still the caller's");
}

#[test]
fn as_completed_over_references_times_out_like_owned() {
    let (_p, never) = pending::<u8>();
    let futures = vec![Future::ready(1u8), never];
    let mut it = as_completed(&futures, Some(Duration::from_millis(10)));
    assert!(it.next().unwrap().is_ok());
    let err = it.next().unwrap().unwrap_err();
    assert_eq!(err.to_string(), "1 (of 2) futures unfinished");
    assert!(it.next().is_none());
}
