//! Child processes with their output in files and their leftovers killed: shared by the MPI
//! tests (`tests/util`) and the W10 benchmark (`examples/w10.rs`, which includes this file by
//! path).
//!
//! Output goes to files, not pipes: a process MPI leaves behind (a singleton's `orted` that
//! missed its parent's death, a worker of an mpi4py executor that cannot shut down) must not
//! hold the caller up by keeping a pipe open. Every process of a run is marked by an
//! environment variable that they all inherit, and those still alive are SIGKILLed once the
//! command returned.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs `c` (already under `timeout`) marked with `var`; `tag` names its output files.
pub(crate) fn run_marked(mut c: Command, var: &str, tag: &str) -> std::io::Result<Output> {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let mark = format!("{}-{n}", std::process::id());
    let dir = std::env::temp_dir();
    let (out_p, err_p) = (
        dir.join(format!("{tag}-{mark}.out")),
        dir.join(format!("{tag}-{mark}.err")),
    );
    c.env(var, &mark)
        .stdout(std::fs::File::create(&out_p)?)
        .stderr(std::fs::File::create(&err_p)?);
    let status = c.status();
    kill_marked(var, &mark);
    let out = status.map(|status| Output {
        status,
        stdout: std::fs::read(&out_p).unwrap_or_default(),
        stderr: std::fs::read(&err_p).unwrap_or_default(),
    });
    let _ = std::fs::remove_file(&out_p);
    let _ = std::fs::remove_file(&err_p);
    out
}

/// SIGKILLs the processes whose environment has `<var>=<mark>` (leftovers of that run only).
fn kill_marked(var: &str, mark: &str) {
    let needle = format!("{var}={mark}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
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
