//! How the thread pool reports a task's panic: the future fails with the message **and** the
//! location (`file:line:column`, as the process pool reports it); the panic hook prints it
//! as for any thread, unless the pool was built with `quiet_panics(true)`, which keeps the
//! hook quiet for this pool's tasks only. And zero workers: the one error both pools give.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use cfutures_core::{ChunkOutput, InvalidArgument, MapChunk};
use cfutures_thread_pool::ThreadPoolExecutor;

const LIMIT: Duration = Duration::from_secs(30);

/// The messages of the panics the hook was asked to print, by message.
static PRINTED: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// Replaces the panic hook (before any pool of this binary installs cfutures' hook, which
/// chains to it) with one that records what it would have printed.
fn record_printed_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            *PRINTED
                .lock()
                .unwrap()
                .get_or_insert_with(HashMap::new)
                .entry(msg)
                .or_default() += 1;
        }));
    });
}

fn times_printed(msg: &str) -> usize {
    PRINTED
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(msg).copied())
        .unwrap_or(0)
}

#[test]
fn a_task_panic_carries_its_location_and_is_printed_by_default() {
    record_printed_panics();
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let line = line!() + 1;
    let f = pool.submit(|| -> u8 { panic!("printed panic") }).unwrap();
    let err = f.result_timeout(LIMIT).unwrap_err();
    let e = err.task_error().unwrap();
    assert_eq!(e.panic_message(), Some("printed panic"));
    assert_eq!(
        e.to_string(),
        format!("task panicked at {}:{line}:36: printed panic", file!())
    );
    assert_eq!(times_printed("printed panic"), 1, "the hook printed it");
}

#[test]
fn quiet_panics_keeps_the_hook_quiet_for_the_pools_tasks_only() {
    record_printed_panics();
    let quiet = ThreadPoolExecutor::builder()
        .max_workers(2)
        .quiet_panics(true)
        .build()
        .unwrap();
    let line = line!() + 1;
    let f = quiet.submit(|| -> u8 { panic!("quiet panic") }).unwrap();
    let err = f.result_timeout(LIMIT).unwrap_err();
    assert_eq!(
        err.task_error().unwrap().to_string(),
        format!("task panicked at {}:{line}:37: quiet panic", file!()),
        "still reported through the future, with the location"
    );
    // map chunks too (each item caught on its own).
    let chunk = MapChunk::new(
        Arc::new(|x: u8| if x == 1 { panic!("quiet panic") } else { x }),
        vec![0, 1, 2],
    );
    let out = match quiet.submit(chunk).unwrap().into_result().unwrap() {
        ChunkOutput::Mixed(out) => out,
        ChunkOutput::Values(_) => panic!("item 1 panicked"),
    };
    assert!(out[1].as_ref().unwrap_err().to_string().contains(file!()));
    assert_eq!(times_printed("quiet panic"), 0, "nothing printed");

    // Another pool, and this thread, still print.
    let loud = ThreadPoolExecutor::new(1).unwrap();
    let f = loud.submit(|| -> u8 { panic!("loud panic") }).unwrap();
    assert!(f.result_timeout(LIMIT).is_err());
    assert_eq!(times_printed("loud panic"), 1);
    let _ = std::panic::catch_unwind(|| panic!("caller panic"));
    assert_eq!(times_printed("caller panic"), 1);
}

#[test]
fn quiet_panics_runs_the_users_initializer_first() {
    record_printed_panics();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .quiet_panics(true)
        .thread_name_prefix("quiet-init")
        .initializer(|| Err::<(), _>("initializer refused"))
        .build()
        .unwrap();
    let f = pool.submit(|| 1).unwrap();
    let err = f.result_timeout(LIMIT).unwrap_err();
    assert!(err.is_broken(), "{err:?}");
    assert!(err.to_string().contains("initializer refused"), "{err}");
}

#[test]
fn zero_workers_is_cores_invalid_argument() {
    let e = ThreadPoolExecutor::new(0).unwrap_err();
    assert_eq!(e, InvalidArgument::zero_workers());
    assert!(e.is_zero_workers());
    assert_eq!(e.to_string(), "max_workers must be greater than 0");
    let e = ThreadPoolExecutor::builder()
        .thread_name_prefix("a\0b")
        .build()
        .unwrap_err();
    assert!(!e.is_zero_workers());
    assert_eq!(
        e.message(),
        "thread_name_prefix must not contain a NUL byte"
    );
}
