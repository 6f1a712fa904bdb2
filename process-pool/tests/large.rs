//! A 64 MiB argument and a 64 MiB result cross in one frame each.

mod util;

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

const MIB64: usize = 64 << 20;

fn grow(s: String) -> String {
    let mut s = s;
    s.push_str("!!");
    s
}

#[test]
fn sixty_four_mib_argument_and_result() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let big = "x".repeat(MIB64);
    let small = pool.submit_fn(add_one, 1).unwrap();
    let f = pool.submit_fn(grow, big).unwrap();
    let after = pool.submit_fn(add_one, 2).unwrap();
    let out = f.result_timeout(WAIT).unwrap();
    assert_eq!(out.len(), MIB64 + 2);
    assert!(out.ends_with("x!!"));
    assert_eq!(*small.result_timeout(WAIT).unwrap(), 2);
    assert_eq!(*after.result_timeout(WAIT).unwrap(), 3);
}
