//! Bulk data: what makes large arguments and results cheap to send.
//!
//! # Automatic: nothing to write
//!
//! Byte buffers and vectors of plain numbers cross at memory speed with no annotation:
//!
//! * as the whole argument or result of `submit_fn`, or as `map`'s items and results:
//!   `Vec<u8>`, `Vec<f64>`, `Vec<u32>`, `Box<[i64]>`, `String`, … (`Vec<P>` and `Box<[P]>`
//!   for every `P` in `u8` … `u128`, `i8` … `i128`, `f32`, `f64`);
//! * anywhere inside a task, an argument or a result (struct fields, tuples, `Option`,
//!   enum variants, map values, vectors of them): `Vec<u8>`, `Box<[u8]>`, `&[u8]`,
//!   `Vec<i8>`, `Vec<f32>`, `Vec<f64>`; `String` always.
//!
//! Each is one memory copy on each side instead of a serde call per element; above a
//! threshold (64 KiB by default) the process pool moves them through shared memory instead
//! of its pipes (see its `DESIGN-NOTES.md`).
//!
//! # Opt-in: other vectors of plain data inside a struct
//!
//! Nested vectors of wider integers (`Vec<u32>`, `Vec<i64>`, …) or of your own
//! plain-old-data types keep serde's element-by-element form unless you ask: wrap them in
//! [`PodVec`], or annotate the field with `#[serde(with = "cfutures_remote::bulk::pod_vec")]`
//! (re-exported as `cfutures_process_pool::bulk::pod_vec`); [`Bytes`] does the same for a
//! `Vec<u8>` in any serde format. These use `serialize_bytes`, so they are fast in any
//! format, not only the pool's.
//!
//! ```
//! use cfutures_remote::bulk::PodVec;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Frame {
//!     pixels: Vec<u8>,                                   // automatic
//!     depth: Vec<f32>,                                   // automatic
//!     #[serde(with = "cfutures_remote::bulk::pod_vec")]
//!     ids: Vec<u32>,                                     // opt-in
//!     timestamps: PodVec<u64>,                           // opt-in
//! }
//! ```
//!
//! # Shared, read-only data for many tasks: [`SharedSlice`]
//!
//! A [`SharedSlice<T>`] (and [`SharedBytes`]) holds plain data in shared memory, read-only.
//! Sending it to a process-pool task costs O(1) whatever its size — a descriptor, not the
//! bytes — and every worker reads the same pages. See its documentation.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, Range};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

pub use bytemuck::{Pod, Zeroable};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::codec::pod_vec_from_bytes;
use crate::oob::{self, SourceSlot};
use crate::shm::{self, Mapping};

// ---------------------------------------------------------------------------------------
// Opt-in wrappers.

/// A byte buffer that serializes with `serialize_bytes`: one copy in any serde format.
///
/// Inside the process pool a plain `Vec<u8>` is already as fast; `Bytes` is for types that
/// also go through other serde formats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        pod_vec::deserialize(d).map(Bytes)
    }
}

/// A `Vec<T>` of plain-old-data that serializes as its raw bytes (little-endian, the
/// machine's layout of `T`): one copy, in any serde format.
///
/// `T: Pod` (from [`bytemuck`](https://docs.rs/bytemuck): any bit pattern is a value, no
/// padding) covers the numbers, arrays of them, and your own `#[repr(C)]` structs with
/// `#[derive(Pod, Zeroable)]` (which needs `bytemuck` with its `derive` feature in your
/// `Cargo.toml`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodVec<T: Pod>(pub Vec<T>);

impl<T: Pod> From<Vec<T>> for PodVec<T> {
    fn from(v: Vec<T>) -> Self {
        PodVec(v)
    }
}

impl<T: Pod> Deref for PodVec<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Pod> Serialize for PodVec<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        pod_vec::serialize(&self.0, s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for PodVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        pod_vec::deserialize(d).map(PodVec)
    }
}

/// `#[serde(with = "cfutures_remote::bulk::pod_vec")]` for a `Vec<T>` field of
/// plain-old-data (`T: Pod`): the field serializes as its raw bytes, like [`PodVec`].
pub mod pod_vec {
    use super::*;

    /// Serializes `v` as its raw bytes.
    ///
    /// # Errors
    ///
    /// What the serializer returns.
    pub fn serialize<T: Pod, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        #[cfg(not(target_endian = "little"))]
        compile_error!("pod_vec's wire form is little-endian; add a byte-swapping path");
        s.serialize_bytes(bytemuck::cast_slice(v))
    }

    /// Deserializes raw bytes (or, from a format that wrote a sequence, byte by byte) into
    /// a `Vec<T>`.
    ///
    /// # Errors
    ///
    /// If the bytes are not a whole number of `T`s.
    pub fn deserialize<'de, T: Pod, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_byte_buf(PodVisitor::<T>(PhantomData))
    }
}

/// Reads raw bytes (or a sequence of bytes) into a `Vec<T>`.
struct PodVisitor<T>(PhantomData<T>);

impl<'de, T: Pod> Visitor<'de> for PodVisitor<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the raw bytes of [{}]", std::any::type_name::<T>())
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<T>, E> {
        if v.len() % std::mem::size_of::<T>().max(1) != 0 {
            return Err(E::invalid_length(v.len(), &self));
        }
        Ok(pod_vec_from_bytes(v))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<T>, E> {
        if std::mem::size_of::<T>() == 1 && std::mem::align_of::<T>() == 1 {
            // Same size and alignment as `u8`: the buffer is the vector.
            return Ok(bytemuck::allocation::cast_vec(v));
        }
        self.visit_bytes(&v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<T>, A::Error> {
        let mut v: Vec<u8> = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = a.next_element::<u8>()? {
            v.push(b);
        }
        self.visit_bytes(&v)
    }
}

// ---------------------------------------------------------------------------------------
// SharedSlice.

/// A segment of shared data, mapped read-only in this process.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) fd: OwnedFd,
    map: Mapping,
    ident: (u64, u64),
}

impl Drop for Segment {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(&self.ident).is_some_and(|w| w.strong_count() == 0) {
            live.remove(&self.ident);
        }
    }
}

/// The segments mapped in this process, by identity: data that comes back (in a result),
/// or a second time, reuses the mapping.
static LIVE: std::sync::LazyLock<Mutex<Live>> = std::sync::LazyLock::new(Default::default);

/// Live segments by file identity (device, inode).
type Live = HashMap<(u64, u64), Weak<Segment>>;

enum Repr<T> {
    Shared(Arc<Segment>),
    Heap(Arc<Vec<T>>),
}

impl<T> Clone for Repr<T> {
    fn clone(&self) -> Self {
        match self {
            Repr::Shared(s) => Repr::Shared(s.clone()),
            Repr::Heap(h) => Repr::Heap(h.clone()),
        }
    }
}

/// Read-only plain data in shared memory: sending it to a process-pool task costs O(1),
/// whatever its size, and every worker reads the same pages (Python's
/// `multiprocessing.shared_memory`, joblib's memory-mapped arrays — for Rust types).
///
/// * **Make it once** ([`new_with`](Self::new_with), [`from_slice`](Self::from_slice)): the
///   data is written into a fresh shared-memory segment, which is then sealed: from then
///   on no process can change it (Linux: the kernel's file seals; macOS: workers get a
///   read-only descriptor). It dereferences to `&[T]`.
/// * **Send it** inside any task, argument or result (`submit_fn(f, slice.clone())`, a field
///   of a task struct, `map` over [`slice`](Self::slice) views): through a process pool it
///   crosses as a descriptor and an offset; each worker maps the segment once and keeps it
///   mapped while tasks keep using it.
/// * **Cloning** is an `Arc` clone; [`slice`](Self::slice) makes a view of part of it in
///   O(1) (one view per task, for `map`).
/// * **Freed** when the last handle in any process is dropped (workers keep what they read
///   mapped for at most a second after its last use, so that the next task finds it).
///
/// Elsewhere it degrades gracefully: a thread pool moves the handle (nothing is copied);
/// any other serde use — an MPI worker on another host, `serde_json` — writes the bytes,
/// and the receiver gets a private copy ([`is_shared`](Self::is_shared) is then `false`).
///
/// `T: Pod` (see [`PodVec`]): any bit pattern is a valid `T` (bytes from another process
/// are always valid values) and `T` has no padding (its bytes are all initialised).
///
/// # Examples
///
/// ```
/// use cfutures_remote::bulk::SharedSlice;
///
/// let data = SharedSlice::<u64>::new_with(1 << 20, |d| {
///     for (i, x) in d.iter_mut().enumerate() {
///         *x = i as u64;
///     }
/// })
/// .unwrap();
/// let half = data.slice(0..1 << 19);
/// assert_eq!(half.iter().sum::<u64>(), (1u64 << 19) * ((1 << 19) - 1) / 2);
/// assert_eq!(data[12345], 12345);
/// ```
///
/// `cfutures_process_pool::SharedSlice` is this type; its crate documentation shows it
/// summed by tasks in worker processes.
pub struct SharedSlice<T: Pod> {
    repr: Repr<T>,
    /// The first element's byte offset in the segment (in elements for the heap form).
    off: usize,
    len: usize,
    _t: PhantomData<T>,
}

/// [`SharedSlice`] of bytes.
pub type SharedBytes = SharedSlice<u8>;

impl<T: Pod> Clone for SharedSlice<T> {
    fn clone(&self) -> Self {
        SharedSlice {
            repr: self.repr.clone(),
            off: self.off,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> SharedSlice<T> {
    /// `len` elements, zero-initialised, then written by `fill`, in a fresh shared-memory
    /// segment that is then sealed read-only.
    ///
    /// # Errors
    ///
    /// If the segment cannot be made (descriptors or memory exhausted, or `len` elements
    /// overflow `usize` bytes).
    ///
    /// # Panics
    ///
    /// If `T`'s alignment is larger than a page (4096 bytes).
    pub fn new_with(len: usize, fill: impl FnOnce(&mut [T])) -> io::Result<Self> {
        assert!(
            std::mem::align_of::<T>() <= 4096,
            "SharedSlice: an element aligned to more than a page"
        );
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let (fd, ro) = shm::create_pair(c"cfutures-shared", bytes, !cfg!(target_os = "linux"))?;
        if bytes == 0 {
            fill(&mut []);
        } else {
            let mut w = Mapping::map_rw(fd.as_fd(), bytes)?;
            // SAFETY: the file was just made and nobody else has a descriptor of it, so no
            // other process can read or write it during this borrow.
            let b = unsafe { w.as_mut_slice() };
            fill(bytemuck::cast_slice_mut(b));
            // (The writable mapping goes here: a file mapped writable cannot be sealed.)
        }
        // Linux: seal it for good. Elsewhere: keep only the read-only descriptor, so nobody
        // holds a way to write it.
        let fd = match ro {
            Some(ro) if !cfg!(target_os = "linux") => ro,
            _ => {
                shm::seal_read_only(fd.as_fd())?;
                fd
            }
        };
        let seg = Segment::adopt(fd, bytes)?;
        Ok(SharedSlice {
            repr: Repr::Shared(seg),
            off: 0,
            len,
            _t: PhantomData,
        })
    }

    /// A copy of `v` in a fresh sealed segment (see [`new_with`](Self::new_with)).
    ///
    /// # Errors
    ///
    /// As [`new_with`](Self::new_with).
    pub fn from_slice(v: &[T]) -> io::Result<Self> {
        Self::new_with(v.len(), |d| d.copy_from_slice(v))
    }

    /// A view of `range` of it, sharing the same memory (O(1)).
    ///
    /// # Panics
    ///
    /// If `range` is out of bounds or decreasing.
    pub fn slice(&self, range: Range<usize>) -> Self {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "SharedSlice::slice: {range:?} out of 0..{}",
            self.len
        );
        let step = match self.repr {
            Repr::Shared(_) => std::mem::size_of::<T>(),
            Repr::Heap(_) => 1,
        };
        SharedSlice {
            repr: self.repr.clone(),
            off: self.off + range.start * step,
            len: range.end - range.start,
            _t: PhantomData,
        }
    }

    /// Whether the data is in shared memory (`false`: a private copy, which is what a
    /// `SharedSlice` decoded from a serde format other than the process pool's is).
    pub fn is_shared(&self) -> bool {
        matches!(self.repr, Repr::Shared(_))
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        match &self.repr {
            Repr::Heap(v) => &v[self.off..self.off + self.len],
            Repr::Shared(seg) => {
                if self.len == 0 || std::mem::size_of::<T>() == 0 {
                    // (A zero-sized `T` or an empty view reads no memory.)
                    return &[];
                }
                // SAFETY: (1) the segment is sealed read-only (Linux), or nobody holds a
                // writable descriptor of it (elsewhere; see `new_with` and `decode`), so no
                // process writes these bytes while the borrow lives; (2) the view lies
                // inside the mapping (`off + len * size_of::<T>() <= map.len()`, checked
                // when the view was made or decoded), which lives as long as `seg`, which
                // `self` keeps; (3) the address is aligned for `T` (a page-aligned base and
                // an offset that is a multiple of `align_of::<T>()`, checked likewise);
                // (4) `T: Pod`: any bits are a valid `T`.
                unsafe {
                    std::slice::from_raw_parts(seg.map.as_ptr().add(self.off).cast::<T>(), self.len)
                }
            }
        }
    }

    /// The bytes of the view.
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.as_slice())
    }
}

impl Segment {
    /// Takes `fd` (sealed, or read-only) as a segment of `bytes`: maps it read-only, or
    /// reuses the mapping of the same file if one is live here.
    fn adopt(fd: OwnedFd, bytes: usize) -> io::Result<Arc<Segment>> {
        let ident = shm::identity(fd.as_fd())?;
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seg) = live.get(&ident).and_then(Weak::upgrade) {
            // The same file, mapped already (its size cannot have changed: it is sealed,
            // or read-only for everyone). `fd` is closed.
            return Ok(seg);
        }
        oob::shared_exists();
        let len = shm::size(fd.as_fd())? as usize;
        if len < bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a shared segment is shorter than its data",
            ));
        }
        let map = Mapping::map_ro(fd.as_fd(), len)?;
        let seg = Arc::new(Segment { fd, map, ident });
        live.insert(ident, Arc::downgrade(&seg));
        Ok(seg)
    }
}

impl<T: Pod> Deref for SharedSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> AsRef<[T]> for SharedSlice<T> {
    fn as_ref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSlice")
            .field("len", &self.len)
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl<T: Pod + PartialEq> PartialEq for SharedSlice<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// The bytes, serialized with `serialize_bytes`.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// What crosses: the bytes, or (for a transport that carries attachments) a reference.
#[derive(Serialize)]
enum WireOut<'a> {
    Inline(RawBytes<'a>),
    Segment { attachment: u32, off: u64, len: u64 },
}

#[derive(Deserialize)]
#[serde(bound = "")]
enum WireIn<T: Pod> {
    Inline(HeapVec<T>),
    Segment { attachment: u32, off: u64, len: u64 },
}

struct HeapVec<T>(Vec<T>);

impl<'de, T: Pod> Deserialize<'de> for HeapVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(PodVisitor::<T>(PhantomData))
            .map(HeapVec)
    }
}

impl<T: Pod> Serialize for SharedSlice<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Repr::Shared(seg) = &self.repr {
            if let Some(attachment) = oob::attach(seg) {
                return WireOut::Segment {
                    attachment,
                    off: self.off as u64,
                    len: self.len as u64,
                }
                .serialize(s);
            }
        }
        WireOut::Inline(RawBytes(self.bytes())).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for SharedSlice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match WireIn::<T>::deserialize(d)? {
            WireIn::Inline(HeapVec(v)) => Ok(SharedSlice {
                len: v.len(),
                repr: Repr::Heap(Arc::new(v)),
                off: 0,
                _t: PhantomData,
            }),
            WireIn::Segment {
                attachment,
                off,
                len,
            } => decode_segment(attachment, off, len).map_err(de::Error::custom),
        }
    }
}

/// A reference to attachment `i` of the frame being decoded: `len` elements at byte `off`.
fn decode_segment<T: Pod>(i: u32, off: u64, len: u64) -> Result<SharedSlice<T>, String> {
    let size = std::mem::size_of::<T>() as u64;
    let (Ok(off), Ok(len)) = (usize::try_from(off), usize::try_from(len)) else {
        return Err("SharedSlice: a view past the segment's end".into());
    };
    let end = (len as u64)
        .checked_mul(size)
        .and_then(|b| b.checked_add(off as u64))
        .ok_or("SharedSlice: a view past the segment's end")? as usize;
    if off % std::mem::align_of::<T>() != 0 {
        return Err("SharedSlice: a misaligned view".into());
    }
    let (seg, trusted) = oob::source(|src| {
        let Some(src) = src else {
            return Err(
                "SharedSlice: a reference to shared memory, decoded without the \
                        descriptors that came with it (outside the process pool it was sent \
                        through?)"
                    .to_owned(),
            );
        };
        let trusted = src.trusted;
        let slot = src
            .slots
            .get_mut(i as usize)
            .ok_or("SharedSlice: a reference to a descriptor that did not come with the frame")?;
        match std::mem::replace(slot, SourceSlot::Taken) {
            SourceSlot::Mapped(seg) => {
                *slot = SourceSlot::Mapped(seg.clone());
                Ok((seg, trusted))
            }
            SourceSlot::Fd(fd) => {
                let seg = adopt_received(fd, trusted)?;
                *slot = SourceSlot::Mapped(seg.clone());
                Ok((seg, trusted))
            }
            SourceSlot::Taken => Err("SharedSlice: a descriptor was refused".to_owned()),
        }
    })?;
    if end > seg.map.len() {
        return Err("SharedSlice: a view past the segment's end".into());
    }
    let sealed = shm::is_sealed_read_only(seg.fd.as_fd());
    if !sealed && !trusted {
        // Nothing guarantees that the sender cannot change the bytes while we read them
        // (no seals here): take a private copy, with raw copies (never a `&[u8]` over
        // memory another process may write).
        let mut v: Vec<T> = bytemuck::allocation::zeroed_vec(len);
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut v[..]);
        // SAFETY: `off..end` lies inside the mapping (checked above), which `seg` keeps
        // mapped; `dst` is private memory of `end - off` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(seg.map.as_ptr().add(off), dst.as_mut_ptr(), end - off)
        };
        return Ok(SharedSlice {
            len,
            repr: Repr::Heap(Arc::new(v)),
            off: 0,
            _t: PhantomData,
        });
    }
    oob::used(&seg);
    Ok(SharedSlice {
        repr: Repr::Shared(seg),
        off,
        len,
        _t: PhantomData,
    })
}

/// Maps a received segment descriptor, after checking what makes a read-only `&[T]` over
/// it sound: sealed against writes and shrinking (Linux); elsewhere, a trusted sender (see
/// [`oob::Source`]) or a private copy (the caller's job).
fn adopt_received(fd: OwnedFd, trusted: bool) -> Result<Arc<Segment>, String> {
    if !shm::is_regular_file(fd.as_fd()) {
        return Err("SharedSlice: the descriptor is not a shared-memory segment".into());
    }
    if cfg!(target_os = "linux") && !shm::is_sealed_read_only(fd.as_fd()) {
        return Err("SharedSlice: the segment is not sealed read-only".into());
    }
    if !cfg!(target_os = "linux") && !trusted && !shm::is_sealed_against_shrinking(fd.as_fd()) {
        return Err("SharedSlice: the segment can be resized".into());
    }
    Segment::adopt(fd, 0).map_err(|e| format!("SharedSlice: cannot map the segment: {e}"))
}

#[cfg(test)]
mod tests;
