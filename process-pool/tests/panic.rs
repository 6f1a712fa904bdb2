//! A panicking task fails its future with the message and location; the worker lives.

mod util;

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

fn boom(x: u32) -> u32 {
    if x == 7 {
        panic!("boom at {x}");
    }
    x
}

#[test]
fn panic_message_and_location() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let before = pool.submit_fn(pid, ()).unwrap();
    let f = pool.submit_fn(boom, 7).unwrap();
    let after = pool.submit_fn(pid, ()).unwrap();
    let e = f.exception_timeout(WAIT).unwrap().expect("failed");
    assert!(e.is_panic(), "{e:?}");
    assert_eq!(e.panic_message(), Some("boom at 7"));
    match &e {
        cfutures_core::TaskError::Panic { location, .. } => {
            let loc = location.as_deref().expect("a location");
            assert!(loc.contains("tests/panic.rs"), "{loc}");
        }
        other => panic!("{other:?}"),
    }
    // Same worker before and after: it survived.
    assert_eq!(
        before.result_timeout(WAIT).unwrap(),
        after.result_timeout(WAIT).unwrap()
    );
    assert_eq!(
        *pool
            .submit_fn(boom, 3)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        3
    );
}
