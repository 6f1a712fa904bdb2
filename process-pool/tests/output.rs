//! A task printing 10 MiB to stdout cannot corrupt the protocol: its output goes elsewhere.

mod util;

use std::io::Read;

use cfutures_process_pool::{ProcessPoolExecutor, WorkerOutput};
use util::*;

fn chatty(lines: u32) -> u32 {
    let line = "y".repeat(1023);
    for _ in 0..lines {
        println!("{line}");
    }
    lines
}

#[test]
fn printing_ten_mib_to_stdout() {
    let path = std::env::temp_dir().join(format!("cfpp-output-{}.txt", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .worker_output(WorkerOutput::File(file))
        .build()
        .unwrap();
    let f = pool.submit_fn(chatty, 10 * 1024).unwrap();
    let g = pool.submit_fn(add_one, 1).unwrap();
    assert_eq!(*f.result_timeout(WAIT).unwrap(), 10 * 1024);
    assert_eq!(*g.result_timeout(WAIT).unwrap(), 2);
    pool.shutdown(true, false);
    let mut s = String::new();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(s.len(), 10 << 20);
    assert!(s.lines().all(|l| l.len() == 1023));
}
