//! Three (or more) "hosts" on this machine: network namespaces on a bridge, each with its
//! own address and, through a stand-in rsh agent, its own hostname (UTS namespace), so Open
//! MPI treats them as separate nodes (`../shared/MPI.md`, "Three hosts on one machine").
//!
//! Every name is unique to the run (`$CFUTURES_NETNS_PREFIX`, the pid and a counter), every
//! namespace is deleted on drop, after its processes are killed (a partitioned `orted` would
//! otherwise keep it alive). Nothing is added to the root namespace: the bridge lives in a
//! namespace of its own and all addresses are inside.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The subnet of the hosts: host `i` (from 1) is `10.77.0.i`.
pub const SUBNET: &str = "10.77.0.0/24";

/// Why the hosts cannot be made here, or `None` when they can (root, `ip`, `unshare`,
/// `mpirun.openmpi`, and a namespace can actually be created).
pub fn unavailable() -> Option<String> {
    let uid = run_out("id", &["-u"]).unwrap_or_default();
    if uid.trim() != "0" {
        return Some(format!("not root (uid {})", uid.trim()));
    }
    for tool in ["ip", "unshare", "mpirun.openmpi", "timeout"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` not found on PATH"));
        }
    }
    // A namespace of our own, created and deleted: containers without CAP_SYS_ADMIN fail here.
    let probe = format!("{}probe{}", prefix(), std::process::id());
    match run("ip", &["netns", "add", &probe]) {
        Ok(()) => {
            let _ = run("ip", &["netns", "del", &probe]);
            None
        }
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

fn prefix() -> String {
    std::env::var("CFUTURES_NETNS_PREFIX").unwrap_or_else(|_| "cft".to_string())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn run_out(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    run_out(cmd, args).map(drop)
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// `n` hosts, up until dropped.
pub struct Hosts {
    base: String,
    n: usize,
    made: Vec<String>,
    dir: PathBuf,
}

impl Hosts {
    /// Makes `n` hosts (`n` ≤ 250). On error, what was made is deleted again.
    pub fn up(n: usize) -> Result<Hosts, String> {
        assert!((1..=250).contains(&n));
        let base = format!(
            "{}{}x{}",
            prefix(),
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("cfutures-{base}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut hosts = Hosts {
            base,
            n,
            made: Vec::new(),
            dir,
        };
        hosts.build()?;
        Ok(hosts)
    }

    fn build(&mut self) -> Result<(), String> {
        let sw = format!("{}sw", self.base);
        run("ip", &["netns", "add", &sw])?;
        self.made.push(sw.clone());
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 1..=self.n {
            let ns = self.ns(i);
            run("ip", &["netns", "add", &ns])?;
            self.made.push(ns.clone());
            let peer = format!("p{i}");
            run(
                "ip",
                &[
                    "link", "add", "veth0", "netns", &ns, "type", "veth", "peer", "name", &peer,
                    "netns", &sw,
                ],
            )?;
            run(
                "ip",
                &["-n", &sw, "link", "set", &peer, "master", "br0", "up"],
            )?;
            let addr = format!("{}/24", self.addr(i));
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "veth0"])?;
            run("ip", &["-n", &ns, "link", "set", "veth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // The stand-in rsh agent: host address -> its namespace, with its own hostname.
        let agent = format!(
            "#!/bin/sh\n\
             while [ \"${{1#-}}\" != \"$1\" ]; do shift; done\n\
             host=$1; shift; n=${{host##*.}}\n\
             exec ip netns exec {base}h$n unshare --uts sh -c \"hostname h$n; $*\"\n",
            base = self.base
        );
        write_exec(&self.agent(), &agent)?;
        let hostfile: String = (1..=self.n)
            .map(|i| format!("{} slots=1\n", self.addr(i)))
            .collect();
        std::fs::write(self.hostfile(), hostfile).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The namespace of host `i` (from 1).
    pub fn ns(&self, i: usize) -> String {
        format!("{}h{i}", self.base)
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("10.77.0.{i}")
    }

    /// The hostfile naming every host with one slot.
    pub fn hostfile(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// The rsh agent that `mpirun` uses to start `orted` on the other hosts.
    pub fn agent(&self) -> PathBuf {
        self.dir.join("rsh")
    }

    /// A scratch directory of this run (deleted on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `timeout -k 10 <secs> mpirun ... -n <np> <prog> <args>` started on host 1 (as `h1`),
    /// placing ranks (and spawned processes) on the hosts in order, TCP only, on the hosts'
    /// subnet. `env` is passed to every rank (`-x`).
    pub fn mpirun(
        &self,
        secs: u32,
        np: usize,
        env: &[(&str, &str)],
        prog: &Path,
        args: &[&str],
    ) -> Command {
        let mut line = format!(
            "hostname h1; exec mpirun.openmpi --hostfile {} --mca plm_rsh_agent {} \
             --mca oob_tcp_if_include {SUBNET} --mca btl tcp,self \
             --mca btl_tcp_if_include {SUBNET} --mca pml ob1 -n {np}",
            self.hostfile().display(),
            self.agent().display()
        );
        for (k, v) in env {
            line.push_str(&format!(" -x {k}={}", shell_quote(v)));
        }
        line.push_str(&format!(" {}", shell_quote(&prog.display().to_string())));
        for a in args {
            line.push_str(&format!(" {}", shell_quote(a)));
        }
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "10", &secs.to_string(), "ip", "netns", "exec"])
            .arg(self.ns(1))
            .args(["unshare", "--uts", "sh", "-c", &line])
            .stdin(Stdio::null());
        cmd
    }

    /// Takes host `i`'s link down: a partition, as a pulled cable.
    pub fn link_down(&self, i: usize) -> Result<(), String> {
        run("ip", &["-n", &self.ns(i), "link", "set", "veth0", "down"])
    }

    fn kill_all(&self) {
        for ns in &self.made {
            if let Ok(pids) = run_out("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    let _ = run("kill", &["-9", pid]);
                }
            }
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.kill_all();
        for ns in self.made.drain(..).rev() {
            if let Err(e) = run("ip", &["netns", "del", &ns]) {
                eprintln!("netns: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_exec(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs `cmd` to its end (its own timeout bounds it), then returns its output; stdout and
/// stderr are also echoed so that a failing test shows what MPI said.
pub fn output(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("start mpirun");
    eprintln!(
        "--- exit: {}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits at most `limit` for `cond`, checking every 20 ms; true if it became true.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
