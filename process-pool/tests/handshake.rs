//! The handshake: a worker that is not the same build as its parent refuses to serve, says
//! why on the result pipe, and exits (the pool then reports it as broken).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

#[test]
fn a_worker_of_another_build_refuses() {
    // If this binary ever ran as the child without worker mode, it must not recurse.
    if std::env::var_os("CFPP_TEST_HANDSHAKE_CHILD").is_some() {
        return;
    }
    // Link the crate (its constructor is what serves in the child).
    cfutures_process_pool::init();
    let mut cmd_fds = [0; 2];
    let mut res_fds = [0; 2];
    // SAFETY: valid out-arrays of two ints.
    unsafe {
        assert_eq!(libc::pipe(cmd_fds.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(res_fds.as_mut_ptr()), 0);
    }
    // SAFETY: pipe just returned these descriptors; we own them.
    let (cmd_r, cmd_w, res_r, res_w) = unsafe {
        (
            OwnedFd::from_raw_fd(cmd_fds[0]),
            OwnedFd::from_raw_fd(cmd_fds[1]),
            OwnedFd::from_raw_fd(res_fds[0]),
            OwnedFd::from_raw_fd(res_fds[1]),
        )
    };
    let (c, r) = (cmd_r.as_raw_fd(), res_w.as_raw_fd());
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.env("CFPP_TEST_HANDSHAKE_CHILD", "1");
    child.env(
        "CFUTURES_PROCESS_POOL_WORKER",
        format!("cfpp1;{};1;2;0;1,2,3,4,5", std::process::id()),
    );
    // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
    unsafe {
        child.pre_exec(move || {
            // Move the sources out of the way first, then into place as fds 3 and 4.
            let c2 = libc::fcntl(c, libc::F_DUPFD, 20);
            let r2 = libc::fcntl(r, libc::F_DUPFD, 20);
            if c2 < 0 || r2 < 0 || libc::dup2(c2, 3) < 0 || libc::dup2(r2, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = child.spawn().unwrap();
    drop(res_w);
    drop(cmd_r);
    let mut said = Vec::new();
    std::fs::File::from(res_r).read_to_end(&mut said).unwrap();
    let status = child.wait().unwrap();
    drop(cmd_w);
    assert_eq!(status.code(), Some(97), "{status:?}");
    let text = String::from_utf8_lossy(&said);
    assert!(text.contains("not the same build"), "{text}");
}
