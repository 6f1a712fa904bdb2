//! `MapChunk::run`: every item's result in order, each panic caught on its own item, and —
//! on the in-place path (items and results of one layout) as on the other — every value
//! dropped exactly once, whatever panics.

use std::panic;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use cfutures_core::{ChunkOutput, MapChunk, Task};
use proptest::prelude::*;

/// A value that counts live instances in a shared counter.
struct Counted {
    n: u64,
    live: Arc<AtomicIsize>,
}

impl Counted {
    fn new(n: u64, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Counted {
            n,
            live: live.clone(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Same layout as `Counted` (in-place path), different type.
struct Doubled(Counted);

fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let r = f();
    panic::set_hook(hook);
    r
}

/// Runs `n` counted items through `f`, which panics on the items in `panics`; checks
/// every result and that nothing leaks or is dropped twice.
fn check<R>(
    n: u64,
    panics: &[u64],
    f: impl Fn(Counted) -> R + Send + Sync,
    value: impl Fn(&R) -> u64,
) {
    let live = Arc::new(AtomicIsize::new(0));
    let items: Vec<Counted> = (0..n).map(|i| Counted::new(i, &live)).collect();
    let panics = panics.to_vec();
    let f = move |c: Counted| {
        if panics.contains(&c.n) {
            panic!("item {}", c.n);
        }
        f(c)
    };
    let out = quiet(|| MapChunk::new(Arc::new(f), items).run().unwrap());
    let results: Vec<Result<R, _>> = out.into_iter().collect();
    assert_eq!(results.len(), n as usize);
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(value(v), 2 * i as u64),
            Err(e) => {
                assert!(e.is_panic());
                assert!(e.to_string().contains(&format!("item {i}")), "{e}");
            }
        }
    }
    drop(results);
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "leaked or double-dropped values"
    );
}

#[test]
fn in_place_all_succeed() {
    check(
        100,
        &[],
        |c| Doubled(Counted::new(c.n * 2, &c.live)),
        |d| d.0.n,
    );
}

#[test]
fn in_place_with_panics_first_middle_last() {
    check(
        10,
        &[0, 4, 5, 9],
        |c| Doubled(Counted::new(c.n * 2, &c.live)),
        |d| d.0.n,
    );
}

#[test]
fn other_layout_with_panics() {
    check(10, &[3, 7], |c| (c.n * 2, c.n), |v| v.0);
}

#[test]
fn a_chunk_of_plain_numbers_stays_compact() {
    let out = MapChunk::new(Arc::new(|x: u64| x * 2), (0..1000).collect())
        .run()
        .unwrap();
    match out {
        ChunkOutput::Values(v) => assert_eq!(v, (0..1000).map(|x| x * 2).collect::<Vec<u64>>()),
        ChunkOutput::Mixed(_) => panic!("no item failed"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_panics_in_place_or_not(n in 0u64..40, panics in proptest::collection::vec(0u64..40, 0..6)) {
        check(n, &panics, |c| Doubled(Counted::new(c.n * 2, &c.live)), |d| d.0.n);
        check(n, &panics, |c| c.n * 2, |v| *v);
    }
}
