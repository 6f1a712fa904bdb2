//! The identity of a build, for a handshake between machines.
//!
//! On one machine the process pool names its executable by device, inode, size and
//! modification time (cheap, and exact there). Across machines an inode means nothing: the
//! same program is a copy on each host. [`build_id`] is a hash of the executable's bytes
//! instead, so a worker on another host proves it runs the very same build (and so the same
//! code layout, which the function offsets of [`crate::wire`] rely on) whatever its path.

use std::hash::Hasher;
use std::io::{self, Read};
use std::sync::OnceLock;

/// A 16-byte hash of this process's executable file, and its length (computed once per
/// process; hashing a 50 MB debug binary takes tens of milliseconds).
///
/// # Errors
///
/// If the executable cannot be read (on Linux it is read through `/proc/self/exe`, which
/// still works when the file was replaced after the program started).
pub fn build_id() -> io::Result<Vec<u8>> {
    static ID: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    ID.get_or_init(|| compute().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn exe_path() -> io::Result<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        Ok("/proc/self/exe".into())
    } else {
        std::env::current_exe()
    }
}

fn compute() -> io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(exe_path()?)?;
    hash_reader(&mut f)
}

/// The identity of what `r` reads: two SipHash-1-3 digests with fixed, distinct keys, and
/// the length (not a cryptographic hash: it tells builds apart, it does not authenticate).
pub(crate) fn hash_reader(r: &mut impl Read) -> io::Result<Vec<u8>> {
    #[allow(deprecated)] // SipHasher13 is not public; `SipHasher` (2-4) is stable and fixed.
    let (mut a, mut b) = (
        std::hash::SipHasher::new_with_keys(0x6366_7574_7572_6573, 0x6275_696c_642d_6964),
        std::hash::SipHasher::new_with_keys(0x6964_2d6f_662d_6275, 0x696c_6421_2121_2121),
    );
    let mut buf = vec![0u8; 1 << 16];
    let mut len: u64 = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        a.write(&buf[..n]);
        b.write(&buf[..n]);
        len += n as u64;
    }
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&a.finish().to_le_bytes());
    out.extend_from_slice(&b.finish().to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_id_other_bytes_other_id() {
        let a = hash_reader(&mut &b"one build"[..]).unwrap();
        assert_eq!(a, hash_reader(&mut &b"one build"[..]).unwrap());
        assert_ne!(a, hash_reader(&mut &b"one build!"[..]).unwrap());
        assert_ne!(a, hash_reader(&mut &b"One build"[..]).unwrap());
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn this_executable_has_a_stable_id() {
        let id = build_id().unwrap();
        assert_eq!(id, build_id().unwrap());
        assert_eq!(id.len(), 24);
    }
}
