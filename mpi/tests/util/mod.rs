//! Running the MPI test program: one MPI process (or one `mpirun`) per check, each under a
//! hard `timeout -k 10`, with the environment MPI needs on these machines.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output};

mod marked;

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

/// Runs `c` through [`marked::run_marked`] (output in files, leftovers killed).
fn run(c: Command) -> Output {
    marked::run_marked(c, "CFUTURES_MPI_TEST_RUN", "cfutures-mpi-test")
        .expect("run the test program")
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
