//! A worker never outlives its parent: SIGKILL the parent while tasks run (this test binary
//! re-run as the parent, in a child process), and no worker is alive a second later.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

const ROLE: &str = "CFPP_TEST_PARENT_ROLE";

#[test]
#[ignore = "the parent process of `parent_sigkilled_while_tasks_run`, run by it"]
fn parent_role() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let fs: Vec<_> = (0..2).map(|_| pool.submit_fn(spin, ()).unwrap()).collect();
    let t0 = Instant::now();
    while (pool.worker_pids().len() < 2 || !fs.iter().all(|f| f.running())) && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids: Vec<String> = pool.worker_pids().iter().map(|p| p.to_string()).collect();
    println!("PIDS {}", pids.join(" "));
    std::thread::sleep(WAIT);
    // Not reached: the test kills this process first. (If it were, the pool would wait on
    // the endless tasks; make sure it cannot.)
    pool.kill_workers();
}

#[test]
fn parent_sigkilled_while_tasks_run() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "parent_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test parent_role ... " on the same line first.
            if let Some((_, rest)) = line.split_once("PIDS ") {
                let pids: Vec<u32> = rest
                    .split_whitespace()
                    .map(|p| p.parse().unwrap())
                    .collect();
                let _ = tx.send(pids);
                return;
            }
        }
    });
    let pids = rx
        .recv_timeout(WAIT)
        .expect("the parent reported its workers");
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| alive(p)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t0 = Instant::now();
    while pids.iter().any(|&p| alive(p)) && t0.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &p in &left {
        // Clean up before failing.
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "workers {left:?} outlived their parent by a second"
    );
}
