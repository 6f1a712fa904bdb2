//! Segments: reuse rules, what a receiver refuses, and descriptors matched to frames.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use proptest::prelude::*;

use super::*;

fn memfd(len: usize) -> OwnedFd {
    shm::create(c"test", len).unwrap()
}

#[test]
fn capacities_round_up() {
    assert_eq!(capacity(1), DEFAULT_THRESHOLD);
    assert_eq!(capacity(DEFAULT_THRESHOLD + 1), 2 * DEFAULT_THRESHOLD);
    assert_eq!(capacity(1 << 20), 1 << 20);
    assert_eq!(capacity((1 << 20) + 1), 2 << 20);
    assert_eq!(capacity(50_000_000), 48 << 20);
}

#[test]
fn a_receiver_maps_only_sealed_segments_that_hold_the_payload() {
    let mut cache = MapCache::default();
    // Not sealed: a writer could shrink it under our mapping.
    let e = cache.map(memfd(4096), 10).unwrap_err();
    assert!(e.contains("not a sealed"), "{e}");
    // Sealed, but shorter than the payload it is said to hold.
    let fd = memfd(4096);
    shm::seal_against_shrinking(fd.as_fd()).unwrap();
    let e = cache.map(fd, 4097).unwrap_err();
    assert!(e.contains("4097"), "{e}");
    // Not a file at all.
    let (a, _b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    assert!(cache.map(a, 1).is_err());
    // Sealed and long enough: mapped, and a second descriptor of the same file finds the
    // same mapping.
    let fd = memfd(8192);
    shm::seal_against_shrinking(fd.as_fd()).unwrap();
    let again = fd.try_clone().unwrap();
    let m1 = cache.map(fd, 8192).unwrap();
    let m2 = cache.map(again, 100).unwrap();
    assert!(Arc::ptr_eq(&m1, &m2));
    // Nothing is kept past its idle time.
    assert!(cache.trim(Instant::now()).is_some());
    assert_eq!(cache.trim(Instant::now() + IDLE), None);
}

#[test]
fn at_most_four_mappings_are_cached() {
    let mut cache = MapCache::default();
    let maps: Vec<_> = (0..6)
        .map(|_| {
            let fd = memfd(4096);
            shm::seal_against_shrinking(fd.as_fd()).unwrap();
            cache.map(fd, 1).unwrap()
        })
        .collect();
    let cached = maps.iter().filter(|m| Arc::strong_count(m) > 1).count();
    assert_eq!(cached, 4);
}

#[test]
fn argument_segments_are_reused_only_after_a_result() {
    let pool = ArgSegments::new(DEFAULT_THRESHOLD);
    let lease = pool.take(100_000).unwrap();
    let ident = shm::identity(lease.seg.as_ref().unwrap().fd.as_fd()).unwrap();
    // Dropped without a result (the job failed): freed, not reused.
    drop(lease);
    assert!(pool.lock().segs.is_empty());
    // After a result: back in the pool, and the next payload that fits gets it.
    let mut bulk = Bulk {
        lease: Some(pool.take(100_000).unwrap()),
        attachments: Vec::new(),
        announced: false,
    };
    let ident2 = shm::identity(bulk.fds()[0]).unwrap();
    assert_ne!(ident, ident2);
    bulk.result_in();
    drop(bulk);
    assert_eq!(pool.lock().segs.len(), 1);
    let again = pool.take(70_000).unwrap();
    assert_eq!(
        shm::identity(again.seg.as_ref().unwrap().fd.as_fd()).unwrap(),
        ident2
    );
    // Readers get a read-only descriptor: they cannot write or resize it.
    let ro = again.seg.as_ref().unwrap().reader_fd();
    assert!(rustix::io::pwrite(ro, &[1], 0).is_err());
    assert!(rustix::fs::ftruncate(ro, 0).is_err());
    // Too large to keep: used once.
    let mut huge = pool.take(RETAIN + 1).unwrap();
    huge.returnable = true;
    drop(huge);
    assert!(pool.lock().segs.is_empty());
    // At most MAX_IN_USE at once: then payloads stay in their frames.
    let held: Vec<_> = (0..MAX_IN_USE - 1)
        .map(|_| pool.take(1000).unwrap())
        .collect();
    assert!(pool.take(1000).is_err());
    drop(held);
    assert!(pool.take(1000).is_ok());
    // Idle ones go after IDLE.
    let mut back = again;
    back.returnable = true;
    drop(back);
    assert!(pool.trim(Instant::now()).is_some());
    assert_eq!(pool.trim(Instant::now() + IDLE), None);
    assert!(pool.lock().segs.is_empty());
}

#[test]
fn a_result_segment_is_written_again_only_once_released() {
    let claims = Arc::new(ClaimPage::create().unwrap());
    let mut res = ResultSegments::new(DEFAULT_THRESHOLD);
    res.claims = Some(claims.clone());
    let (sock, peer) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let send = |res: &mut ResultSegments, len: usize| -> u8 {
        let (buf, tag) = res.payload(len).unwrap();
        buf.fill(tag);
        let ext = Ext {
            attachments: 0,
            payload: Placement::Segment {
                len: len as u64,
                tag,
            },
        };
        res.send_beside(sock.as_fd(), &ext).unwrap();
        res.sent();
        tag
    };
    let a = send(&mut res, 100_000);
    // Not released yet: another slot.
    let b = send(&mut res, 100_000);
    assert_ne!(a, b);
    claims.release(usize::from(a));
    assert_eq!(send(&mut res, 90_000), a, "a released segment is reused");
    // Too large to keep: used once.
    assert_eq!(send(&mut res, RETAIN + 1), ONE_SHOT);
    // Every descriptor went out, one message per result.
    let mut q = FdQueue::default();
    assert_eq!(q.take(peer.as_fd(), 4, false).unwrap().len(), 4);
    assert!(q.take(peer.as_fd(), 1, false).is_err(), "no more");
}

/// Frame: id u32 | nfds u8 | body_len u16 | body. Each descriptor sent with it is a memfd
/// holding the frame's id and its index.
fn frame(id: u32, body: usize, nfds: usize) -> (Vec<u8>, Vec<OwnedFd>) {
    let mut b = id.to_le_bytes().to_vec();
    b.push(nfds as u8);
    b.extend_from_slice(&(body as u16).to_le_bytes());
    b.extend((0..body).map(|i| (i as u32 ^ id) as u8));
    let fds = (0..nfds)
        .map(|k| {
            let f = memfd(8);
            let mut m = [0u8; 8];
            m[..4].copy_from_slice(&id.to_le_bytes());
            m[4..].copy_from_slice(&(k as u32).to_le_bytes());
            rustix::io::pwrite(&f, &m, 0).unwrap();
            f
        })
        .collect();
    (b, fds)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Frames on a pipe, their descriptors on a socket just before each: the receiver,
    /// reading the pipe in random pieces, gets exactly each frame's own descriptors.
    #[test]
    fn descriptors_match_their_frames(
        frames in prop::collection::vec((0usize..3000, 0usize..=4), 1..50),
        chunks in prop::collection::vec(1usize..700, 1..20),
    ) {
        let (sock_a, sock_b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        let n = frames.len();
        let sender = std::thread::spawn(move || {
            let mut w = std::fs::File::from(pipe_w);
            for (id, &(body, nfds)) in frames.iter().enumerate() {
                let (bytes, fds) = frame(id as u32, body, nfds);
                if nfds > 0 {
                    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
                    send_fds_blocking(sock_a.as_fd(), &borrowed).unwrap();
                }
                w.write_all(&bytes).unwrap();
            }
        });
        let mut r = std::fs::File::from(pipe_r);
        let mut q = FdQueue::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut tmp = vec![0u8; 1024];
        let (mut next, mut ci) = (0u32, 0);
        while next < n as u32 {
            let want = chunks[ci % chunks.len()];
            ci += 1;
            let got = r.read(&mut tmp[..want]).unwrap();
            prop_assert!(got > 0);
            buf.extend_from_slice(&tmp[..got]);
            while buf.len() >= 7 {
                let body = u16::from_le_bytes([buf[5], buf[6]]) as usize;
                if buf.len() < 7 + body {
                    break;
                }
                let id = u32::from_le_bytes(buf[..4].try_into().unwrap());
                prop_assert_eq!(id, next);
                let fds = q.take(sock_b.as_fd(), buf[4] as usize, true).unwrap();
                for (k, f) in fds.iter().enumerate() {
                    let mut m = [0u8; 8];
                    rustix::io::pread(f, &mut m, 0).unwrap();
                    prop_assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), id);
                    prop_assert_eq!(u32::from_le_bytes(m[4..].try_into().unwrap()), k as u32);
                }
                buf.drain(..7 + body);
                next += 1;
            }
        }
        sender.join().unwrap();
        prop_assert!(q.fifo.is_empty(), "descriptors no frame took");
    }
}
