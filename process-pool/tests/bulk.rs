//! Bulk data through the process pool: shared-memory segments and shared slices.

mod util;

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

fn len(v: Vec<u8>) -> usize {
    v.len()
}

#[test]
fn round_trips() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    for n in [0usize, 1, 65535, 65536, 65537, 1 << 20, 50_000_000] {
        let v: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let f = pool.submit_fn(echo, v.clone()).unwrap();
        let back = f.result_timeout(WAIT).unwrap();
        assert!(*back == v, "{n}");
        let f = pool.submit_fn(len, v).unwrap();
        assert_eq!(*f.result_timeout(WAIT).unwrap(), n);
    }
}
