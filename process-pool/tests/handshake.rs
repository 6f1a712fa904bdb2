//! The handshake: a worker that is not the same build as its parent refuses to serve, says
//! why on its result pipe (to the verified parent), one line on its standard error, and exits
//! (the pool then reports it as broken).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

#[test]
fn a_worker_of_another_build_refuses() {
    // If this binary ever ran as the child without worker mode, it must not recurse.
    if std::env::var_os("CFPP_TEST_HANDSHAKE_CHILD").is_some() {
        return;
    }
    // Link the crate (its constructor is what serves in the child).
    cfutures_process_pool::init();
    let (cmd_r, mut cmd_w) = pipe();
    let (mut res_r, res_w) = pipe();
    let (_ctl, ctl_child) = UnixStream::pair().unwrap();
    let claims = tempfile_of(4096);
    let fds = [
        cmd_r.as_raw_fd(),
        res_w.as_raw_fd(),
        ctl_child.as_raw_fd(),
        claims.as_raw_fd(),
    ];
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.env("CFPP_TEST_HANDSHAKE_CHILD", "1");
    child.env(
        "CFUTURES_PROCESS_POOL_WORKER",
        format!("cfpp2:{}:40", std::process::id()),
    );
    child.stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
    unsafe {
        child.pre_exec(move || {
            // Move the sources out of the way first, then into place as fds 40 to 43.
            for (i, fd) in fds.iter().enumerate() {
                let hi = libc::fcntl(*fd, libc::F_DUPFD, 60 + i as i32);
                if hi < 0 || libc::dup2(hi, 40 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = child.spawn().unwrap();
    drop((cmd_r, res_w, ctl_child, claims));
    cmd_w
        .write_all(&cfutures_remote::handshake::greeting_frame(
            b"another build",
            Default::default(),
        ))
        .unwrap();
    let mut said = Vec::new();
    res_r.read_to_end(&mut said).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(97), "{status:?}");
    let text = String::from_utf8_lossy(&said);
    assert!(text.contains("not the same build"), "{text}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not the same build"), "{err}");
}

/// A pipe: `(read, write)`.
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe just returned these descriptors; we own them.
    unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// A file of `len` zero bytes, open for reading and writing, already unlinked.
fn tempfile_of(len: u64) -> OwnedFd {
    let path = std::env::temp_dir().join(format!("cfpp-claims-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(len).unwrap();
    std::fs::remove_file(&path).unwrap();
    f.into()
}
