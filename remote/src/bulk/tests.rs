//! SharedSlice: an O(1) reference with an attachment sink, the bytes without one; what a
//! receiver refuses; the kernel refuses every write to a sealed segment.

use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};

use super::*;
use crate::codec;
use crate::oob;

#[derive(Serialize, Deserialize, Debug)]
struct Task {
    name: String,
    data: SharedSlice<u64>,
    again: SharedSlice<u64>,
    lo: usize,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(v, codec::VecOut::new(&mut out)).unwrap();
    out
}

fn counting(n: usize) -> SharedSlice<u64> {
    SharedSlice::<u64>::new_with(n, |d| {
        for (i, x) in d.iter_mut().enumerate() {
            *x = i as u64;
        }
    })
    .unwrap()
}

#[test]
fn with_a_sink_it_is_a_reference_and_without_one_the_bytes() {
    let n = 1 << 20; // 8 MiB
    let s = counting(n);
    assert!(s.is_shared());
    let t = Task {
        name: "sum".into(),
        data: s.slice(1000..n),
        again: s.slice(0..10),
        lo: 1000,
    };

    // For a transport that carries attachments: O(1) bytes, one descriptor (two views of
    // one segment share it).
    let (bytes, att) = oob::with_sink(|| encode(&t));
    assert!(bytes.len() < 48, "{} bytes", bytes.len());
    assert_eq!(att.len(), 1);
    assert!(shm::is_sealed_read_only(att[0].fd()));
    let fds: Vec<OwnedFd> = att
        .iter()
        .map(|a| a.fd().try_clone_to_owned().unwrap())
        .collect();
    drop((t, s, att));
    // The sender's handles are gone: the receiver maps the descriptor it got.
    let back: Task = oob::with_source(fds, false, || codec::decode(&bytes)).unwrap();
    assert!(back.data.is_shared());
    assert_eq!(back.data.len(), n - 1000);
    assert_eq!(back.data[0], 1000);
    assert_eq!(back.data[n - 1001], n as u64 - 1);
    assert_eq!(&back.again[..], &(0..10).collect::<Vec<u64>>()[..]);

    // Anywhere else (a plain serde encode, an MPI peer): the bytes, decoded as a copy.
    let out = encode(&back);
    assert!(out.len() > 8 * (n - 1000));
    let copy: Task = codec::decode(&out).unwrap();
    assert!(!copy.data.is_shared());
    assert_eq!(copy.data, back.data);
    assert_eq!(copy.data.slice(5..7)[..], [1005, 1006]);

    // A reference decoded without its descriptor is an error, not a crash.
    let (bytes, att) = oob::with_sink(|| encode(&back));
    drop((back, att));
    let e = codec::decode::<Task>(&bytes).unwrap_err();
    assert!(e.to_string().contains("without the descriptors"), "{e}");
    let e = oob::with_source(Vec::new(), true, || codec::decode::<Task>(&bytes)).unwrap_err();
    assert!(e.to_string().contains("without the descriptors"), "{e}");
    // With descriptors, but not the one it names.
    let other = shm::create(c"other", 8).unwrap();
    #[derive(Serialize)]
    enum WireOut {
        #[allow(dead_code)]
        Inline(Vec<u8>),
        Segment {
            attachment: u32,
            off: u64,
            len: u64,
        },
    }
    let second = encode(&WireOut::Segment {
        attachment: 1,
        off: 0,
        len: 1,
    });
    let e = oob::with_source(vec![other], true, || {
        codec::decode::<SharedSlice<u64>>(&second)
    })
    .unwrap_err();
    assert!(e.to_string().contains("did not come with the frame"), "{e}");
}

#[test]
fn an_unsealed_or_foreign_descriptor_is_refused() {
    #[derive(Serialize)]
    enum WireOut {
        #[allow(dead_code)]
        Inline(Vec<u8>),
        Segment {
            attachment: u32,
            off: u64,
            len: u64,
        },
    }
    let forged = |off: u64, len: u64| {
        encode(&WireOut::Segment {
            attachment: 0,
            off,
            len,
        })
    };
    // An unsealed memfd: someone could change it under our `&[u64]`.
    let fd = shm::create(c"test", 4096).unwrap();
    let r: Result<SharedSlice<u64>, _> =
        oob::with_source(vec![fd], false, || codec::decode(&forged(0, 8)));
    assert!(r.unwrap_err().to_string().contains("not sealed"));
    // A directory is not a segment.
    let dir: OwnedFd = std::fs::File::open("/").unwrap().into();
    let r: Result<SharedSlice<u64>, _> =
        oob::with_source(vec![dir], false, || codec::decode(&forged(0, 8)));
    assert!(r.is_err());
    // A view past the end, or misaligned, of a genuine segment.
    let s = counting(512);
    let (_, att) = oob::with_sink(|| encode(&s));
    for (off, len) in [(0, 513), (8, 512), (4, 1), (u64::MAX - 7, 1), (0, u64::MAX)] {
        let fd = att[0].fd().try_clone_to_owned().unwrap();
        let r: Result<SharedSlice<u64>, _> =
            oob::with_source(vec![fd], false, || codec::decode(&forged(off, len)));
        assert!(r.is_err(), "off {off}, len {len}");
    }
    // The exact end is fine.
    let fd = att[0].fd().try_clone_to_owned().unwrap();
    let r: SharedSlice<u64> =
        oob::with_source(vec![fd], false, || codec::decode(&forged(8, 511))).unwrap();
    assert_eq!(r[510], 511);
}

#[test]
fn many_threads_read_one_slice() {
    let s = SharedSlice::<u32>::new_with(1 << 20, |d| {
        for (i, x) in d.iter_mut().enumerate() {
            *x = i as u32;
        }
    })
    .unwrap();
    let sums: Vec<u64> = std::thread::scope(|sc| {
        (0..8)
            .map(|_| {
                let s = s.clone();
                sc.spawn(move || s.iter().map(|&x| x as u64).sum::<u64>())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    let n = 1u64 << 20;
    assert!(sums.iter().all(|&x| x == n * (n - 1) / 2));
}

#[test]
fn empty_and_tiny_slices() {
    let e = SharedSlice::<u64>::from_slice(&[]).unwrap();
    assert!(e.is_empty());
    let (b, att) = oob::with_sink(|| encode(&e));
    let fds = att
        .iter()
        .map(|a| a.fd().try_clone_to_owned().unwrap())
        .collect();
    let back: SharedSlice<u64> = oob::with_source(fds, true, || codec::decode(&b)).unwrap();
    assert!(back.is_empty());
    let one = SharedBytes::from_slice(&[42]).unwrap();
    assert_eq!(one[..], [42]);
    assert_eq!(one.slice(1..1).len(), 0);
    let copy: SharedBytes = codec::decode(&encode(&one)).unwrap();
    assert_eq!(copy[..], [42]);
}

#[test]
fn a_sealed_segment_cannot_be_written_by_anyone() {
    use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
    let s = SharedSlice::<u8>::from_slice(&[7u8; 8192]).unwrap();
    // The receiver's view of it: the descriptor a worker gets.
    let (_, att) = oob::with_sink(|| encode(&s));
    let fd = att[0].fd();
    assert!(shm::is_sealed_read_only(fd));
    // write(2): refused.
    assert!(rustix::io::pwrite(fd, &[1], 0).is_err());
    // A writable shared mapping: refused.
    // SAFETY: a fresh mapping at a kernel-chosen address (it fails here, as asserted).
    let w = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            8192,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    };
    assert!(w.is_err(), "writable mmap of a sealed memfd");
    // A read-only shared mapping upgraded with mprotect: refused.
    // SAFETY: as above; unmapped below.
    let r = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            8192,
            ProtFlags::READ,
            MapFlags::SHARED,
            fd,
            0,
        )
    }
    .unwrap();
    // SAFETY: `r` is our 8 KiB mapping.
    let up = unsafe { rustix::mm::mprotect(r, 8192, MprotectFlags::READ | MprotectFlags::WRITE) };
    assert!(
        up.is_err(),
        "mprotect(PROT_WRITE) of a sealed memfd's mapping"
    );
    // Shrinking: refused.
    assert!(rustix::fs::ftruncate(fd, 0).is_err());
    // SAFETY: our mapping, unmapped once.
    unsafe { rustix::mm::munmap(r, 8192).unwrap() };
    assert!(s.iter().all(|&b| b == 7));
    let _ = fd.as_fd();
}

#[test]
fn the_last_handle_frees_the_segment() {
    let s = counting(4096);
    let ino = match &s.repr {
        Repr::Shared(seg) => seg.ident.1,
        Repr::Heap(_) => unreachable!(),
    };
    // Mappings of this segment's file in this process.
    let maps = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.split_whitespace().nth(4) == Some(&ino.to_string()))
            .count()
    };
    let view = s.slice(10..20);
    drop(s);
    assert_eq!(maps(), 1, "a view keeps the segment");
    assert_eq!(view[0], 10);
    drop(view);
    assert_eq!(maps(), 0, "the last handle unmaps it");
}
