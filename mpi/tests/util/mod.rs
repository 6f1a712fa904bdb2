//! Running the MPI test program: one MPI process (or one `mpirun`) per check, each under a
//! hard `timeout -k 10`, with the environment MPI needs on these machines.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output};

/// The test program (`src/bin/testprog.rs`).
pub const PROG: &str = env!("CARGO_BIN_EXE_cfutures-mpi-testprog");

/// Why the MPI tests cannot run here (printed, and the test passes), if they cannot.
pub fn skip_reason() -> Option<String> {
    if !cfutures_mpi::ENABLED {
        return Some("cfutures-mpi was built without its `mpi` feature".into());
    }
    if !on_path(&mpirun()) {
        return Some(format!(
            "{} is not on PATH (Open MPI is not installed)",
            mpirun()
        ));
    }
    if !on_path("timeout") {
        return Some("`timeout` (coreutils) is not on PATH".into());
    }
    None
}

/// Prints why it skips and returns true, or returns false.
pub fn skip() -> bool {
    match skip_reason() {
        Some(why) => {
            eprintln!("SKIPPED: {why}");
            true
        }
        None => false,
    }
}

/// `mpirun.openmpi` (a binary linked against Open MPI and started by MPICH's `mpiexec` runs
/// N singletons), or `$CFUTURES_MPIRUN`.
pub fn mpirun() -> String {
    std::env::var("CFUTURES_MPIRUN").unwrap_or_else(|_| "mpirun.openmpi".into())
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn base(secs: u32) -> Command {
    let mut c = Command::new("timeout");
    c.arg("-k").arg("10").arg(secs.to_string());
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .stdin(std::process::Stdio::null());
    c
}

static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Runs `c` with its output in files, not pipes: a process MPI leaves behind (a singleton's
/// `orted` that missed its parent's death was seen once) must not hold the test up by
/// keeping a pipe open. Every process of the run (marked by an environment variable that
/// they all inherit) is killed once `timeout` returned.
fn run(mut c: Command) -> Output {
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mark = format!("{}-{n}", std::process::id());
    let dir = std::env::temp_dir();
    let (out_p, err_p) = (
        dir.join(format!("cfutures-mpi-test-{mark}.out")),
        dir.join(format!("cfutures-mpi-test-{mark}.err")),
    );
    c.env("CFUTURES_MPI_TEST_RUN", &mark)
        .stdout(std::fs::File::create(&out_p).expect("output file"))
        .stderr(std::fs::File::create(&err_p).expect("output file"));
    let status = c.status().expect("run the test program");
    kill_marked(&mark);
    let out = Output {
        status,
        stdout: std::fs::read(&out_p).unwrap_or_default(),
        stderr: std::fs::read(&err_p).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&out_p);
    let _ = std::fs::remove_file(&err_p);
    out
}

/// SIGKILLs the processes whose environment has `CFUTURES_MPI_TEST_RUN=<mark>` (leftovers
/// of this run only).
fn kill_marked(mark: &str) {
    let needle = format!("CFUTURES_MPI_TEST_RUN={mark}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            eprintln!("killing a process left behind by the run: {pid}");
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// The program alone (spawn mode from a singleton), under a `secs` kill-after timeout.
pub fn run_alone(scenario: &str, secs: u32) -> Output {
    let mut c = base(secs);
    c.arg(PROG).arg(scenario);
    run(c)
}

/// `mpirun -n <n> <extra> prog scenario`, under a `secs` kill-after timeout.
pub fn run_mpirun(n: u32, extra: &[&str], scenario: &str, secs: u32) -> Output {
    let mut c = base(secs);
    c.arg(mpirun()).arg("-n").arg(n.to_string());
    c.args(extra).arg(PROG).arg(scenario);
    run(c)
}

/// Asserts the run printed `ok <scenario>` and exited 0; prints its output either way.
pub fn assert_ok(out: &Output, scenario: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "--- {scenario}: {:?}\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert_ne!(
        out.status.code(),
        Some(124),
        "{scenario} timed out (killed by `timeout`)"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("ok {scenario}"))),
        "{scenario} did not pass"
    );
    assert!(
        out.status.success(),
        "{scenario} exited with {:?}",
        out.status
    );
}

/// As [`assert_ok`], but the exit status may be a failure (the job ended by MPI_Abort after
/// the checks passed); it must not be `timeout`'s.
pub fn assert_ok_ended(out: &Output, scenario: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "--- {scenario}: {:?}\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        !matches!(out.status.code(), Some(124) | Some(137)),
        "{scenario} timed out (killed by `timeout`)"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("ok {scenario}"))),
        "{scenario} did not pass"
    );
}
