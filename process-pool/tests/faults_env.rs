//! The fault matrix, continued (issue 11): faults of the process around the pool — who can
//! put a program in worker mode, resource limits that make starts fail, a fork of the parent.
//! Each runs in a process of its own where it changes process-wide state.

mod util;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cfutures_process_pool::ProcessPoolExecutor;
use util::*;

/// Runs this test binary as a child (running no test: `--exact` of a name that does not
/// exist), with `env` and `pre_exec`; returns its exit code and standard error.
fn run_child(
    env: &[(&str, String)],
    pre_exec: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> (Option<i32>, String) {
    // Link the crate (its constructor is what decides worker mode in the child).
    cfutures_process_pool::init();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "no test has this name"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: the closure only makes async-signal-safe calls (the callers' dup2/fcntl).
    unsafe { cmd.pre_exec(pre_exec) };
    let mut child = cmd.spawn().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code(), err)
}

/// Point 6: Set by hand (a user, a script, an attacker): one clear line, no secret, exit 97.
#[test]
fn a_worker_variable_set_by_hand_is_refused_with_one_line() {
    for value in ["1", "cfpp2:1:20", "cfpp1;1;2;3;4;5,6"] {
        let (code, err) = run_child(
            &[("CFUTURES_PROCESS_POOL_WORKER", value.to_owned())],
            || Ok(()),
        );
        assert_eq!(code, Some(97), "{value}: {err}");
        assert_eq!(err.lines().count(), 1, "{value}: {err:?}");
        assert!(
            err.starts_with("cfutures-process-pool: not serving"),
            "{err}"
        );
        assert!(
            !err.contains(value),
            "the refusal echoes the variable: {err}"
        );
    }
}

/// Point 6: A crafted value naming descriptors that are not a pool's socket: the process writes to
/// none of them (here a pipe at the named descriptor and at 3 and 4, where earlier versions
/// answered), and refuses.
#[test]
fn a_refusal_writes_into_no_descriptor_it_did_not_verify() {
    let mut fds = [0; 2];
    // SAFETY: a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe just returned these descriptors; we own them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wfd = w.as_raw_fd();
    let (code, err) = run_child(
        &[(
            "CFUTURES_PROCESS_POOL_WORKER",
            format!("cfpp2:{}:40", std::process::id()),
        )],
        move || {
            // SAFETY: async-signal-safe calls only, on descriptors of this process.
            unsafe {
                let hi = libc::fcntl(wfd, libc::F_DUPFD, 60);
                for target in [3, 4, 40, 41, 42, 43] {
                    if libc::dup2(hi, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        },
    );
    drop(w);
    let mut written = Vec::new();
    std::fs::File::from(r).read_to_end(&mut written).unwrap();
    assert_eq!(code, Some(97), "{err}");
    assert!(
        written.is_empty(),
        "the refusal wrote {written:?} to a pipe"
    );
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

/// Point 6: A privileged process (setuid: `AT_SECURE`) never enters worker mode. Needs root and
/// `setpriv` (to run a setuid-root copy of this binary as another user); skipped with a
/// reason otherwise.
#[test]
fn a_privileged_process_never_serves() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs root and setpriv to make a setuid program");
        return;
    }
    let dir = std::env::temp_dir().join(format!("cfpp-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("prog");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&copy)
        .args(["--exact", "no test has this name"])
        .env("CFUTURES_PROCESS_POOL_WORKER", "cfpp2:1:40")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") || err.contains("nosuid") {
        eprintln!("skipped: the temporary directory does not allow setuid programs: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(97), "{err}");
    assert!(err.contains("elevated privileges"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 1. Spawns that fail with resource limits.

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// `EMFILE` (as under `ulimit -n`) while a second worker is needed: the first keeps serving,
/// the start is retried with backoff, and once the limit is lifted the pool grows.
#[test]
fn descriptor_exhaustion_does_not_break_a_healthy_pool() {
    run_isolated(
        "descriptor_exhaustion_does_not_break_a_healthy_pool_alone",
        Duration::from_secs(120),
    );
}

#[test]
#[ignore = "run by descriptor_exhaustion_does_not_break_a_healthy_pool, in a process of its own"]
fn descriptor_exhaustion_does_not_break_a_healthy_pool_alone() {
    if !isolated() {
        return;
    }
    let pool = ProcessPoolExecutor::new(2).unwrap();
    assert_eq!(
        *pool
            .submit_fn(add_one, 0)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        1
    );
    assert_eq!(pool.worker_pids().len(), 1);
    // No descriptor left: the next socketpair fails with EMFILE.
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let saved = lim;
    lim.rlim_cur = open.saturating_sub(1);
    // SAFETY: valid pointer to an rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let futures: Vec<_> = (0..20u64)
        .map(|i| pool.submit_fn(nap, i % 3).unwrap())
        .collect();
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(*f.result_timeout(WAIT).unwrap(), i as u64 % 3);
    }
    assert!(!pool.is_broken());
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) }, 0);
    // With the limit lifted, the second worker starts.
    let t0 = Instant::now();
    while pool.worker_pids().len() < 2 {
        let more: Vec<_> = (0..4u64).map(|_| pool.submit_fn(nap, 5).unwrap()).collect();
        for f in &more {
            f.result_timeout(WAIT).unwrap();
        }
        assert!(
            t0.elapsed() < WAIT,
            "no second worker once the limit was lifted"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A fork of the parent.

/// A forked child of the parent holds copies of the pool (and of its sockets): in the child
/// the pool refuses work instead of hanging, dropping it there returns at once, and the
/// parent's own shutdown is not held up by the copies.
#[test]
fn a_fork_of_the_parent_neither_hangs_nor_holds_up_the_pool() {
    run_isolated(
        "a_fork_of_the_parent_neither_hangs_nor_holds_up_the_pool_alone",
        Duration::from_secs(60),
    );
}

#[test]
#[ignore = "run by a_fork_of_the_parent_neither_hangs_nor_holds_up_the_pool, in a process of its own"]
fn a_fork_of_the_parent_neither_hangs_nor_holds_up_the_pool_alone() {
    if !isolated() {
        return;
    }
    let pool = ProcessPoolExecutor::new(2).unwrap();
    let warm: Vec<_> = (0..4u64)
        .map(|i| pool.submit_fn(add_one, i).unwrap())
        .collect();
    for f in &warm {
        f.result_timeout(WAIT).unwrap();
    }
    let mut fds = [0; 2];
    // SAFETY: a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child uses the pool's refusal paths, `write`, `sleep` and `_exit` (glibc
    // keeps malloc usable in the child of a multi-threaded fork).
    let child = unsafe { libc::fork() };
    if child == 0 {
        let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let refused = pool.submit_fn(add_one, 1).is_err_and(|e| e.is_broken());
            drop(pool);
            refused
        }));
        let said = [u8::from(checks.unwrap_or(false))];
        // SAFETY: async-signal-safe calls; the child holds the copies of the pool's sockets
        // for a while, as a long-lived child would, then ends without running destructors.
        unsafe {
            libc::write(fds[1], said.as_ptr().cast(), 1);
            libc::sleep(20);
            libc::_exit(0);
        }
    }
    assert!(child > 0);
    // SAFETY: closing our copy of the write end; reading one byte into a valid buffer.
    let said = unsafe {
        libc::close(fds[1]);
        let mut b = [0u8; 1];
        let n = libc::read(fds[0], b.as_mut_ptr().cast(), 1);
        libc::close(fds[0]);
        (n == 1).then_some(b[0])
    };
    // The parent carries on, and shuts down while the child still holds the copies.
    assert_eq!(
        *pool
            .submit_fn(add_one, 41)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        42
    );
    let t0 = Instant::now();
    drop(pool);
    let took = t0.elapsed();
    // SAFETY: kill and waitpid on our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
    }
    assert_eq!(
        said,
        Some(1),
        "in the forked child the pool did not refuse work"
    );
    assert!(
        took < Duration::from_secs(15),
        "shutdown waited for the forked child"
    );
}
