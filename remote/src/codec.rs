//! The codec: postcard, with bulk payloads at memory speed.
//!
//! Every payload is postcard, with three fast paths (see `DESIGN-NOTES.md`, "Bulk data"):
//!
//! 1. **Top level, by type.** An argument, task output or chunk of type `Vec<P>` or
//!    `Box<[P]>` for a plain number `P` (`u8` … `u128`, `i8` … `i128`, `f32`, `f64`), or
//!    `String`, travels as `varint(n)` and its `n` elements' raw little-endian bytes: one
//!    memory copy each way. For `u8`, `i8`, `f32`, `f64` and `String` these are postcard's
//!    own bytes; for the wider integers they replace postcard's varints. Both ends decide by
//!    the static type being encoded and decoded, which is the same on both (the same
//!    monomorphized trampoline), so they always agree.
//! 2. **Nested, "tier 0".** [`FastSer`] and [`FastDe`] wrap postcard's serializer and a
//!    postcard reader of our own, and recognise `Vec<u8>`, `Box<[u8]>`, `&[u8]`, `Vec<i8>`,
//!    `Vec<f32>` and `Vec<f64>` at any depth (struct fields, tuple and sequence elements,
//!    map keys and values, newtype variants, `Some`). Their postcard encoding *is*
//!    `varint(n) | raw bytes` already, so the fast and the plain path write the same bytes:
//!    whichever path each side takes, the value round-trips (a hand-written, asymmetric
//!    `Serialize`/`Deserialize` cannot desynchronise anything). Wider integer vectors keep
//!    postcard's varints when nested (changing their bytes would break such impls); the
//!    opt-in wrappers of [`crate::bulk`] (`PodVec`, `pod_vec`, `Bytes`) cover them.
//! 3. **Decode destinations.** Vectors of 4 MiB or more are allocated zeroed (fresh pages
//!    from the kernel, no memset) and hinted for transparent huge pages before the copy
//!    (Linux): a fresh 50 MB `Vec` costs ~7 ms to fill instead of ~30 ms of 4 KiB faults.
//!
//! The reader ([`FastDe`] over a [`Cursor`]) is a complete postcard 1.x reader — varints with
//! postcard's length and last-byte checks, zigzag, little-endian floats, `char` as a string,
//! option and bool tags, enum indices — property-tested to accept and reject exactly what
//! postcard does, with the same values (`tests` below). Keeping the input position in our
//! own cursor (instead of delegating to postcard's deserializer) is what keeps it as fast
//! as postcard on number-heavy data.

use std::any::TypeId;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

use bytemuck::Pod;
use postcard::ser_flavors::Flavor;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

pub(crate) type Error = postcard::Error;
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// A decoding error: postcard's, or a message from a `Deserialize` impl (which postcard's
/// own deserializer would drop, keeping only "custom error").
#[derive(Debug)]
pub(crate) enum DeError {
    Postcard(Error),
    Custom(String),
}

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeError::Postcard(e) => e.fmt(f),
            DeError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError::Custom(msg.to_string())
    }
}

impl From<Error> for DeError {
    fn from(e: Error) -> Self {
        DeError::Postcard(e)
    }
}

type DeResult<T> = std::result::Result<T, DeError>;

// ---------------------------------------------------------------------------------------
// Output flavors.

/// Appends to a borrowed `Vec`, refusing to grow it past `limit` bytes (then `over` is
/// set): the in-band attempt of an encoding that goes out of line when it is large.
pub(crate) struct VecOut<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) limit: usize,
    pub(crate) over: bool,
}

impl<'a> VecOut<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        VecOut {
            buf,
            limit: usize::MAX,
            over: false,
        }
    }
}

impl Flavor for VecOut<'_> {
    type Output = ();
    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        if self.buf.len() >= self.limit {
            self.over = true;
            return Err(Error::SerializeBufferFull);
        }
        self.buf.push(b);
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() > self.limit.saturating_sub(self.buf.len()) {
            self.over = true;
            return Err(Error::SerializeBufferFull);
        }
        // Postcard extends with one varint (1 to 10 bytes) at a time: a byte loop beats a
        // call to memcpy there.
        if data.len() <= 16 {
            self.buf.reserve(16);
            for &b in data {
                self.buf.push(b);
            }
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Writes into a slice of the exact encoded size (an out-of-line buffer); `pos` bytes
/// written so far.
pub(crate) struct SliceOut<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) pos: usize,
}

impl Flavor for SliceOut<'_> {
    type Output = usize;
    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        let slot = self
            .buf
            .get_mut(self.pos)
            .ok_or(Error::SerializeBufferFull)?;
        *slot = b;
        self.pos += 1;
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self
            .pos
            .checked_add(data.len())
            .filter(|&e| e <= self.buf.len())
            .ok_or(Error::SerializeBufferFull)?;
        self.buf[self.pos..end].copy_from_slice(data);
        self.pos = end;
        Ok(())
    }
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.pos)
    }
}

#[inline]
fn varint_bytes(mut v: u64, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = v as u8 | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    &buf[..=i]
}

#[inline]
fn put_raw<F: Flavor>(out: &mut F, n: usize, raw: &[u8]) -> Result<()> {
    let mut b = [0u8; 10];
    out.try_extend(varint_bytes(n as u64, &mut b))?;
    out.try_extend(raw)
}

/// Encoded size of `varint(n) | raw`.
pub(crate) fn raw_size(n: usize, raw_len: usize) -> usize {
    let mut b = [0u8; 10];
    varint_bytes(n as u64, &mut b).len() + raw_len
}

// ---------------------------------------------------------------------------------------
// Layer 1: the top level, by type.

/// `T` as a `U`, if `typeid` says they are the same type.
///
/// Types that differ only in lifetimes share a `TypeId`; every `U` this is called with
/// has no lifetime, so equal ids mean equal types.
#[inline(always)]
fn view<T: ?Sized, U: 'static>(v: &T) -> Option<&U> {
    if typeid::of::<T>() == TypeId::of::<U>() {
        // SAFETY: `T` is `U` (equal `TypeId`s, and `U` has no lifetime parameter), so the
        // thin pointer to the start of `v` points to a valid `U` for the borrow's lifetime.
        Some(unsafe { &*(v as *const T).cast::<U>() })
    } else {
        None
    }
}

/// `(n, raw bytes)` of a top-level bulk value, if `T` is one.
#[inline]
pub(crate) fn bulk_view<T: ?Sized>(v: &T) -> Option<(usize, &[u8])> {
    // Every bulk type is a `Vec` or a boxed slice: a size test (a constant once inlined)
    // spares everything else the type comparisons.
    let size = std::mem::size_of_val(v);
    if size != std::mem::size_of::<Vec<u8>>() && size != std::mem::size_of::<Box<[u8]>>() {
        return None;
    }
    macro_rules! pods {
        ($($p:ty)*) => {$(
            if let Some(v) = view::<T, Vec<$p>>(v) {
                return Some((v.len(), bytemuck::cast_slice(&v[..])));
            }
            if let Some(v) = view::<T, Box<[$p]>>(v) {
                return Some((v.len(), bytemuck::cast_slice(&v[..])));
            }
        )*};
    }
    #[cfg(target_endian = "little")]
    pods!(u8 i8 u16 i16 u32 i32 u64 i64 u128 i128 f32 f64);
    if let Some(s) = view::<T, String>(v) {
        return Some((s.len(), s.as_bytes()));
    }
    None
}

/// Encodes `v` into `out`: a top-level bulk value raw, anything else postcard with the
/// tier-0 fast paths. On error, what was written is left (the caller truncates).
pub(crate) fn encode<T: Serialize + ?Sized, F: Flavor>(v: &T, mut out: F) -> Result<F::Output> {
    if let Some((n, raw)) = bulk_view(v) {
        put_raw(&mut out, n, raw)?;
        return out.finalize();
    }
    let mut ser = postcard::Serializer { output: out };
    if plain::<T>() {
        v.serialize(&mut ser)?;
    } else {
        v.serialize(FastSer(&mut ser))?;
    }
    ser.output.finalize()
}

/// Whether `T` cannot hold a bulk value anywhere inside: it has no drop glue (so no `Vec`,
/// `Box` or `String` in it), and postcard's own serializer writes exactly the same bytes,
/// with one layer less (tiny tasks' numbers).
#[inline(always)]
fn plain<T: ?Sized>() -> bool {
    !std::mem::needs_drop::<T>()
}

/// [`encode`] into a growing `Vec` of at most `limit` bytes (in total): `Ok(false)` if the
/// encoding would be larger (what was written is left for the caller to truncate).
pub(crate) fn encode_limited<T: Serialize + ?Sized>(
    v: &T,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool> {
    let out = VecOut {
        buf,
        limit,
        over: false,
    };
    if let Some((n, raw)) = bulk_view(v) {
        if raw_size(n, raw.len()) > limit.saturating_sub(out.buf.len()) {
            return Ok(false);
        }
        let mut out = out;
        put_raw(&mut out, n, raw)?;
        return Ok(true);
    }
    let mut ser = postcard::Serializer { output: out };
    let r = if plain::<T>() {
        v.serialize(&mut ser)
    } else {
        v.serialize(FastSer(&mut ser))
    };
    match r {
        Ok(()) => Ok(true),
        Err(_) if ser.output.over => Ok(false),
        Err(e) => Err(e),
    }
}

/// The exact encoded size of `v` (a counting pass; O(fields) for bulk data).
pub(crate) fn encoded_size<T: Serialize + ?Sized>(v: &T) -> Result<usize> {
    if let Some((n, raw)) = bulk_view(v) {
        return Ok(raw_size(n, raw.len()));
    }
    let mut ser = postcard::Serializer {
        output: postcard::ser_flavors::Size::default(),
    };
    v.serialize(FastSer(&mut ser))?;
    ser.output.finalize()
}

/// Moves `a` into a `B`.
///
/// # Safety
///
/// `A` and `B` must be the same type.
#[inline(always)]
unsafe fn same_type<A, B>(a: A) -> B {
    let a = ManuallyDrop::new(a);
    // SAFETY: the caller guarantees `A` and `B` are the same type; `a` is not dropped, so
    // the value is moved, not duplicated.
    unsafe { std::ptr::read(&*a as *const A as *const B) }
}

/// Reads `varint(n) | n × size_of::<P>()` bytes at the cursor, into a fresh `Vec<P>`.
fn take_pod_vec<P: Pod>(cur: &mut Cursor<'_>) -> Result<Vec<P>> {
    let n = cur.len()?;
    // The elements must all be there (a corrupt `n` cannot make us allocate more than the
    // input holds).
    let bytes = n
        .checked_mul(std::mem::size_of::<P>())
        .ok_or(Error::DeserializeUnexpectedEnd)?;
    let raw = cur.take(bytes)?;
    Ok(pod_vec_from_bytes(raw))
}

/// A `Vec<P>` holding a copy of `raw` (any alignment; `raw.len()` a multiple of `P`'s size):
/// zero-allocated (fresh pages, no memset) and, when large, hinted for huge pages, then one
/// copy.
pub(crate) fn pod_vec_from_bytes<P: Pod>(raw: &[u8]) -> Vec<P> {
    let n = raw.len() / std::mem::size_of::<P>().max(1);
    let mut v: Vec<P> = bytemuck::allocation::zeroed_vec(n);
    let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut v[..]);
    if dst.len() >= HUGE_HINT {
        hint_huge(dst);
    }
    dst.copy_from_slice(&raw[..dst.len()]);
    v
}

/// Owned values larger than this give their memory back as they are copied out of line
/// ([`encode_consuming`]).
pub(crate) const DISCARD_MIN: usize = 32 << 20;

/// Decode destinations at least this large are hinted for transparent huge pages.
pub(crate) const HUGE_HINT: usize = 4 << 20;

/// Asks for transparent huge pages on the 2 MiB-aligned interior of `buf` (a fresh, not yet
/// touched allocation): one fault per 2 MiB instead of 512. A hint: no effect where THP is
/// off or unknown.
pub(crate) fn hint_huge(buf: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        const HP: usize = 2 << 20;
        let at = buf.as_mut_ptr() as usize;
        let start = (at + HP - 1) & !(HP - 1);
        let end = (at + buf.len()) & !(HP - 1);
        if end > start {
            // SAFETY: the range lies inside `buf`, memory this function borrows mutably;
            // MADV_HUGEPAGE only changes how later faults are served, never the contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// Decodes a `T` encoded by [`encode`] (of the same `T`).
pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> DeResult<T> {
    let mut cur = Cursor::new(b);
    if let Some(v) = decode_bulk::<T>(&mut cur) {
        return Ok(v?);
    }
    T::deserialize(FastDe { cur: &mut cur })
}

/// The top-level fast path of [`decode`], if `T` is a bulk type.
#[inline]
fn decode_bulk<T>(cur: &mut Cursor<'_>) -> Option<Result<T>> {
    if std::mem::size_of::<T>() != std::mem::size_of::<Vec<u8>>()
        && std::mem::size_of::<T>() != std::mem::size_of::<Box<[u8]>>()
    {
        return None;
    }
    let id = typeid::of::<T>();
    macro_rules! pods {
        ($($p:ty)*) => {$(
            if id == TypeId::of::<Vec<$p>>() {
                // SAFETY: `T` is `Vec<$p>` (equal `TypeId`s; no lifetimes).
                return Some(take_pod_vec::<$p>(cur).map(|v| unsafe { same_type(v) }));
            }
            if id == TypeId::of::<Box<[$p]>>() {
                // SAFETY: `T` is `Box<[$p]>`, as above.
                return Some(take_pod_vec::<$p>(cur).map(|v| unsafe { same_type(v.into_boxed_slice()) }));
            }
        )*};
    }
    #[cfg(target_endian = "little")]
    pods!(u8 i8 u16 i16 u32 i32 u64 i64 u128 i128 f32 f64);
    if id == TypeId::of::<String>() {
        let s = cur.str().map(|s| {
            let v: Vec<u8> = pod_vec_from_bytes(s.as_bytes());
            // SAFETY: a copy of bytes just checked to be UTF-8 (`cur.str`).
            unsafe { String::from_utf8_unchecked(v) }
        });
        // SAFETY: `T` is `String` (equal `TypeId`s).
        return Some(s.map(|s| unsafe { same_type(s) }));
    }
    None
}

/// Decodes a `T` from `len` bytes at `src`: memory that another process may write while we
/// read it (a worker's result segment), so it is never seen as a `&[u8]`; bytes are copied
/// out with raw-pointer copies first. A top-level bulk value is copied once, straight into
/// its `Vec`; other types are copied into a private buffer, then decoded.
///
/// # Safety
///
/// `src..src + len` must stay mapped and readable for the duration of the call.
pub(crate) unsafe fn decode_shared<T: DeserializeOwned>(src: *const u8, len: usize) -> DeResult<T> {
    let mut head = [0u8; 10];
    let h = len.min(10);
    // SAFETY: `h <= len` readable bytes (the caller's contract), copied into private memory.
    unsafe { std::ptr::copy_nonoverlapping(src, head.as_mut_ptr(), h) };
    let mut cur = Cursor::new(&head[..h]);
    macro_rules! pods {
        ($($p:ty)*) => {$(
            if typeid::of::<T>() == TypeId::of::<Vec<$p>>() {
                let n = cur.len()?;
                let at = cur.pos;
                let bytes = n
                    .checked_mul(std::mem::size_of::<$p>())
                    .filter(|&b| b <= len - at)
                    .ok_or(Error::DeserializeUnexpectedEnd)?;
                let mut v: Vec<$p> = bytemuck::allocation::zeroed_vec(n);
                let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut v[..]);
                if bytes >= HUGE_HINT {
                    hint_huge(dst);
                }
                // SAFETY: `at + bytes <= len` readable source bytes (the caller's contract);
                // `dst` is `bytes` long and private (it cannot overlap a shared mapping).
                unsafe { std::ptr::copy_nonoverlapping(src.add(at), dst.as_mut_ptr(), bytes) };
                // SAFETY: `T` is `Vec<$p>` (equal `TypeId`s; no lifetimes).
                return Ok(unsafe { same_type(v) });
            }
        )*};
    }
    #[cfg(target_endian = "little")]
    pods!(u8 i8 u16 i16 u32 i32 u64 i64 u128 i128 f32 f64);
    let mut private: Vec<u8> = bytemuck::allocation::zeroed_vec(len);
    if len >= HUGE_HINT {
        hint_huge(&mut private);
    }
    // SAFETY: `len` readable source bytes (the caller's contract) into a private buffer of
    // `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(src, private.as_mut_ptr(), len) };
    decode(&private)
}

/// `(n, raw bytes)` of an owned top-level bulk value, mutably (for [`encode_consuming`]).
fn bulk_view_mut<T: 'static>(v: &mut T) -> Option<(usize, &mut [u8])> {
    let any: &mut dyn std::any::Any = v;
    macro_rules! pods {
        ($($p:ty)*) => {$(
            if any.is::<Vec<$p>>() {
                let v = any.downcast_mut::<Vec<$p>>().expect("checked");
                return Some((v.len(), bytemuck::cast_slice_mut(&mut v[..])));
            }
            if any.is::<Box<[$p]>>() {
                let v = any.downcast_mut::<Box<[$p]>>().expect("checked");
                return Some((v.len(), bytemuck::cast_slice_mut(&mut v[..])));
            }
        )*};
    }
    #[cfg(target_endian = "little")]
    pods!(u8 i8 u16 i16 u32 i32 u64 i64 u128 i128 f32 f64);
    if any.is::<String>() {
        let s = any.downcast_mut::<String>().expect("checked");
        // SAFETY: the bytes are read, then the pages given back (reading as zeros, which
        // is UTF-8 too) just before the string is dropped.
        let b = unsafe { s.as_bytes_mut() };
        return Some((b.len(), b));
    }
    None
}

/// Encodes an owned top-level bulk value into `dst` (exactly its [`encoded_size`] long),
/// giving the source's memory back to the kernel as it is copied (whole pages already
/// copied are discarded, Linux), so that the value and its encoding are never both
/// resident: the caller's peak stays ≈ 1× the value. `Err(v)` (nothing written) if `T` is
/// not such a type.
pub(crate) fn encode_consuming<T: 'static>(
    mut v: T,
    dst: &mut [u8],
) -> std::result::Result<usize, T> {
    let Some((n, raw)) = bulk_view_mut(&mut v) else {
        return Err(v);
    };
    let mut b = [0u8; 10];
    let hdr = varint_bytes(n as u64, &mut b);
    let total = hdr.len() + raw.len();
    assert!(
        dst.len() >= total,
        "encode_consuming: the buffer is too small"
    );
    dst[..hdr.len()].copy_from_slice(hdr);
    let dst = &mut dst[hdr.len()..total];
    const CHUNK: usize = 2 << 20;
    // Only values the allocator maps on their own (glibc: above 32 MiB at most) are worth
    // it: their memory goes back to the kernel when they are freed anyway. Smaller ones
    // live in the heap, whose next allocation would fault the discarded pages in again
    // (measured: 4 MiB echoes 2-3× slower).
    let discard = raw.len() > DISCARD_MIN;
    let mut done = 0;
    while done < raw.len() {
        let end = (done + CHUNK).min(raw.len());
        dst[done..end].copy_from_slice(&raw[done..end]);
        if discard {
            discard_pages(&mut raw[done..end]);
        }
        done = end;
    }
    drop(v);
    Ok(total)
}

/// Gives the whole pages inside `buf` back to the kernel (Linux: `MADV_DONTNEED`; they read
/// as zeros afterwards). Elsewhere, nothing.
fn discard_pages(buf: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let base = buf.as_mut_ptr() as usize;
        let lo = (base + PAGE - 1) & !(PAGE - 1);
        let hi = (base + buf.len()) & !(PAGE - 1);
        if hi > lo {
            // SAFETY: `[lo, hi)` lies inside `buf`, which we borrow mutably. Discarding
            // those pages of private memory is a write of zeros to it (or, for memory an
            // allocator mapped from a file, of the file's bytes): any byte is a valid
            // element of a bulk vector, and the caller never reads them again. The
            // allocator's bookkeeping lies outside the buffer (whole pages inside it only).
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

// ---------------------------------------------------------------------------------------
// Layer 2: tier-0 types at any depth.

/// Writes `v` raw if `T` is a tier-0 type; `None` if it is not.
#[inline]
fn ser_fast<T: ?Sized, F: Flavor>(out: &mut F, v: &T) -> Option<Result<()>> {
    // Every tier-0 type is a (pointer, length) pair or a `Vec`: a size test (a constant
    // once inlined) spares numbers and small structs the `typeid` call.
    let size = std::mem::size_of_val(v);
    if size != std::mem::size_of::<Vec<u8>>() && size != std::mem::size_of::<&[u8]>() {
        return None;
    }
    #[cfg(target_endian = "little")]
    {
        if let Some(x) = view::<T, Vec<u8>>(v) {
            return Some(put_raw(out, x.len(), x));
        }
        if let Some(x) = view::<T, Box<[u8]>>(v) {
            return Some(put_raw(out, x.len(), x));
        }
        if typeid::of::<T>() == TypeId::of::<&'static [u8]>() {
            // SAFETY: `T` is `&'a [u8]` for some `'a` (`TypeId`s ignore lifetimes): `v`
            // points to a valid `&'a [u8]`, which is read (copied) here and used only
            // while `v` is borrowed, within `'a`.
            let x: &[u8] = unsafe { *(v as *const T).cast::<&[u8]>() };
            return Some(put_raw(out, x.len(), x));
        }
        if let Some(x) = view::<T, Vec<i8>>(v) {
            return Some(put_raw(out, x.len(), bytemuck::cast_slice(&x[..])));
        }
        if let Some(x) = view::<T, Vec<f32>>(v) {
            return Some(put_raw(out, x.len(), bytemuck::cast_slice(&x[..])));
        }
        if let Some(x) = view::<T, Vec<f64>>(v) {
            return Some(put_raw(out, x.len(), bytemuck::cast_slice(&x[..])));
        }
    }
    None
}

/// Reads a tier-0 value if the seed `S` is `PhantomData<tier-0 type>` (what derived
/// `Deserialize` impls pass for a field of that type); `None` otherwise.
#[inline]
fn de_fast<'de, S: DeserializeSeed<'de>>(cur: &mut Cursor<'de>) -> Option<Result<S::Value>> {
    // As in `ser_fast`: a constant size test first.
    let size = std::mem::size_of::<S::Value>();
    if std::mem::size_of::<S>() != 0
        || (size != std::mem::size_of::<Vec<u8>>() && size != std::mem::size_of::<Box<[u8]>>())
    {
        return None;
    }
    let id = typeid::of::<S>();
    macro_rules! tier0 {
        ($ty:ty, $make:expr) => {
            if id == TypeId::of::<PhantomData<$ty>>() {
                let v: Result<$ty> = $make(cur);
                // SAFETY: `S` is `PhantomData<$ty>` (equal `TypeId`s, no lifetimes), whose
                // `DeserializeSeed::Value` is `$ty`: `S::Value` and `$ty` are one type.
                return Some(v.map(|v| unsafe { same_type::<$ty, S::Value>(v) }));
            }
        };
    }
    #[cfg(target_endian = "little")]
    {
        tier0!(Vec<u8>, take_pod_vec::<u8>);
        tier0!(Box<[u8]>, |c| take_pod_vec::<u8>(c)
            .map(Vec::into_boxed_slice));
        tier0!(Vec<i8>, take_pod_vec::<i8>);
        tier0!(Vec<f32>, take_pod_vec::<f32>);
        tier0!(Vec<f64>, take_pod_vec::<f64>);
    }
    None
}

/// A serializer that wraps postcard's and writes tier-0 values with one copy.
pub(crate) struct FastSer<'a, F: Flavor>(pub(crate) &'a mut postcard::Serializer<F>);

/// The compound serializers of [`FastSer`].
pub(crate) struct FastCompound<'a, F: Flavor>(&'a mut postcard::Serializer<F>);

impl<F: Flavor> FastCompound<'_, F> {
    #[inline]
    fn value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<()> {
        match ser_fast(&mut self.0.output, v) {
            Some(r) => r,
            None => v.serialize(FastSer(&mut *self.0)),
        }
    }
}

macro_rules! delegate_ser {
    ($($m:ident($t:ty);)*) => {$(
        #[inline]
        fn $m(self, v: $t) -> Result<()> {
            ser::Serializer::$m(&mut *self.0, v)
        }
    )*};
}

impl<'a, F: Flavor> ser::Serializer for FastSer<'a, F> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = FastCompound<'a, F>;
    type SerializeTuple = FastCompound<'a, F>;
    type SerializeTupleStruct = FastCompound<'a, F>;
    type SerializeTupleVariant = FastCompound<'a, F>;
    type SerializeMap = FastCompound<'a, F>;
    type SerializeStruct = FastCompound<'a, F>;
    type SerializeStructVariant = FastCompound<'a, F>;

    fn is_human_readable(&self) -> bool {
        false
    }

    delegate_ser! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_i128(i128); serialize_u8(u8); serialize_u16(u16);
        serialize_u32(u32); serialize_u64(u64); serialize_u128(u128); serialize_f32(f32);
        serialize_f64(f64); serialize_char(char); serialize_str(&str); serialize_bytes(&[u8]);
    }
    fn serialize_none(self) -> Result<()> {
        ser::Serializer::serialize_none(&mut *self.0)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<()> {
        self.0.output.try_push(1)?;
        FastCompound(self.0).value(v)
    }
    fn serialize_unit(self) -> Result<()> {
        ser::Serializer::serialize_unit(&mut *self.0)
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<()> {
        ser::Serializer::serialize_unit_struct(&mut *self.0, name)
    }
    fn serialize_unit_variant(self, n: &'static str, i: u32, v: &'static str) -> Result<()> {
        ser::Serializer::serialize_unit_variant(&mut *self.0, n, i, v)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Result<()> {
        FastCompound(self.0).value(v)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        i: u32,
        _: &'static str,
        v: &T,
    ) -> Result<()> {
        ser::Serializer::serialize_u32(&mut *self.0, i)?;
        FastCompound(self.0).value(v)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        ser::Serializer::serialize_seq(&mut *self.0, len)?;
        Ok(FastCompound(self.0))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Ok(FastCompound(self.0))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTuple> {
        Ok(FastCompound(self.0))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        i: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        ser::Serializer::serialize_u32(&mut *self.0, i)?;
        Ok(FastCompound(self.0))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap> {
        ser::Serializer::serialize_map(&mut *self.0, len)?;
        Ok(FastCompound(self.0))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Ok(FastCompound(self.0))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        i: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        ser::Serializer::serialize_u32(&mut *self.0, i)?;
        Ok(FastCompound(self.0))
    }
    fn collect_str<T: ?Sized + std::fmt::Display>(self, v: &T) -> Result<()> {
        ser::Serializer::collect_str(&mut *self.0, v)
    }
}

macro_rules! compound {
    ($tr:ident, $m:ident) => {
        impl<F: Flavor> ser::$tr for FastCompound<'_, F> {
            type Ok = ();
            type Error = Error;
            #[inline]
            fn $m<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<()> {
                self.value(v)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    };
    ($tr:ident, $m:ident, field) => {
        impl<F: Flavor> ser::$tr for FastCompound<'_, F> {
            type Ok = ();
            type Error = Error;
            #[inline]
            fn $m<T: ?Sized + Serialize>(&mut self, _: &'static str, v: &T) -> Result<()> {
                self.value(v)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    };
}
compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, field);
compound!(SerializeStructVariant, serialize_field, field);

impl<F: Flavor> ser::SerializeMap for FastCompound<'_, F> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> Result<()> {
        self.value(k)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<()> {
        self.value(v)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// The input of [`FastDe`]: a postcard reader of our own (the format is small: varints,
/// zigzag, little-endian floats, length-prefixed strings and bytes), so that the position
/// stays in registers across the inlined loops.
pub(crate) struct Cursor<'de> {
    buf: &'de [u8],
    pos: usize,
}

impl<'de> Cursor<'de> {
    pub(crate) fn new(b: &'de [u8]) -> Self {
        Cursor { buf: b, pos: 0 }
    }
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(Error::DeserializeUnexpectedEnd);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    #[inline(always)]
    fn pop(&mut self) -> Result<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(Error::DeserializeUnexpectedEnd),
        }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// A varint of at most `BITS` bits, with postcard's checks (at most `ceil(BITS / 7)`
    /// bytes, the last one within range).
    #[inline(always)]
    fn varint_bits<const BITS: u32>(&mut self) -> Result<u128> {
        let max_bytes = BITS.div_ceil(7);
        let last_max: u8 = if BITS % 7 == 0 {
            0x7f
        } else {
            (1u8 << (BITS % 7)) - 1
        };
        let mut out = 0u128;
        for i in 0..max_bytes {
            let byte = self.pop()?;
            out |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == max_bytes - 1 && byte > last_max {
                    return Err(Error::DeserializeBadVarint);
                }
                return Ok(out);
            }
        }
        Err(Error::DeserializeBadVarint)
    }
    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        // (u64 arithmetic for the common case.)
        let mut out = 0u64;
        for i in 0..10 {
            let byte = self.pop()?;
            out |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 9 && byte > 1 {
                    return Err(Error::DeserializeBadVarint);
                }
                return Ok(out);
            }
        }
        Err(Error::DeserializeBadVarint)
    }
    #[inline(always)]
    fn varint32(&mut self) -> Result<u32> {
        let mut out = 0u32;
        for i in 0..5 {
            let byte = self.pop()?;
            out |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 4 && byte > 0x0f {
                    return Err(Error::DeserializeBadVarint);
                }
                return Ok(out);
            }
        }
        Err(Error::DeserializeBadVarint)
    }
    #[inline]
    fn len(&mut self) -> Result<usize> {
        #[cfg(target_pointer_width = "64")]
        {
            self.varint().map(|v| v as usize)
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            self.varint32().map(|v| v as usize)
        }
    }
    #[inline]
    fn str(&mut self) -> Result<&'de str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Error::DeserializeBadUtf8)
    }
}

/// A postcard deserializer that reads tier-0 values with one copy.
pub(crate) struct FastDe<'a, 'de> {
    cur: &'a mut Cursor<'de>,
}

impl<'de> FastDe<'_, 'de> {
    #[inline(always)]
    fn re(&mut self) -> FastDe<'_, 'de> {
        FastDe {
            cur: &mut *self.cur,
        }
    }
    #[inline(always)]
    fn seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> DeResult<S::Value> {
        match de_fast::<S>(self.cur) {
            Some(r) => Ok(r?),
            None => seed.deserialize(self.re()),
        }
    }
}

fn zigzag16(v: u16) -> i16 {
    ((v >> 1) as i16) ^ (-((v & 1) as i16))
}
fn zigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ (-((v & 1) as i32))
}
fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ (-((v & 1) as i64))
}
fn zigzag128(v: u128) -> i128 {
    ((v >> 1) as i128) ^ (-((v & 1) as i128))
}

impl<'de> de::Deserializer<'de> for FastDe<'_, 'de> {
    type Error = DeError;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> DeResult<V::Value> {
        Err(DeError::Postcard(Error::WontImplement))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> DeResult<V::Value> {
        Err(DeError::Postcard(Error::WontImplement))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> DeResult<V::Value> {
        Err(DeError::Postcard(Error::WontImplement))
    }
    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        match self.cur.pop()? {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            _ => Err(DeError::Postcard(Error::DeserializeBadBool)),
        }
    }
    #[inline]
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_i8(self.cur.pop()? as i8)
    }
    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_u8(self.cur.pop()?)
    }
    #[inline]
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_i16(zigzag16(self.cur.varint_bits::<16>()? as u16))
    }
    #[inline]
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_u16(self.cur.varint_bits::<16>()? as u16)
    }
    #[inline]
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_i32(zigzag32(self.cur.varint32()?))
    }
    #[inline]
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_u32(self.cur.varint32()?)
    }
    #[inline]
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_i64(zigzag64(self.cur.varint()?))
    }
    #[inline]
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_u64(self.cur.varint()?)
    }
    fn deserialize_i128<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_i128(zigzag128(self.cur.varint_bits::<128>()?))
    }
    fn deserialize_u128<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_u128(self.cur.varint_bits::<128>()?)
    }
    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        let b = self.cur.take(4)?;
        v.visit_f32(f32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        let b = self.cur.take(8)?;
        v.visit_f64(f64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        // As postcard: at most 4 bytes of UTF-8, the first character.
        let n = self.cur.len()?;
        if n > 4 {
            return Err(DeError::Postcard(Error::DeserializeBadChar));
        }
        let c = std::str::from_utf8(self.cur.take(n)?)
            .map_err(|_| Error::DeserializeBadChar)?
            .chars()
            .next()
            .ok_or(Error::DeserializeBadChar)?;
        v.visit_char(c)
    }
    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_borrowed_str(self.cur.str()?)
    }
    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_str(self.cur.str()?)
    }
    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        let n = self.cur.len()?;
        v.visit_borrowed_bytes(self.cur.take(n)?)
    }
    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        let n = self.cur.len()?;
        v.visit_bytes(self.cur.take(n)?)
    }
    fn deserialize_option<V: Visitor<'de>>(mut self, v: V) -> DeResult<V::Value> {
        match self.cur.pop()? {
            0 => v.visit_none(),
            1 => v.visit_some(self.re()),
            _ => Err(DeError::Postcard(Error::DeserializeBadOption)),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> DeResult<V::Value> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> DeResult<V::Value> {
        v.visit_newtype_struct(self)
    }
    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(mut self, v: V) -> DeResult<V::Value> {
        let len = self.cur.len()?;
        v.visit_seq(Access { de: self.re(), len })
    }
    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(mut self, len: usize, v: V) -> DeResult<V::Value> {
        v.visit_seq(Access { de: self.re(), len })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        mut self,
        _: &'static str,
        len: usize,
        v: V,
    ) -> DeResult<V::Value> {
        v.visit_seq(Access { de: self.re(), len })
    }
    fn deserialize_map<V: Visitor<'de>>(mut self, v: V) -> DeResult<V::Value> {
        let len = self.cur.len()?;
        v.visit_map(Access { de: self.re(), len })
    }
    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> DeResult<V::Value> {
        v.visit_seq(Access {
            de: self.re(),
            len: fields.len(),
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> DeResult<V::Value> {
        v.visit_enum(self)
    }
}

struct Access<'a, 'de> {
    de: FastDe<'a, 'de>,
    len: usize,
}

impl<'de> de::SeqAccess<'de> for Access<'_, 'de> {
    type Error = DeError;
    #[inline(always)]
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> DeResult<Option<S::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        self.de.seed(seed).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        // As postcard: no hint larger than the input could hold (no allocation from a
        // corrupt length).
        (self.len <= self.de.cur.remaining()).then_some(self.len)
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, 'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> DeResult<Option<K::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        self.de.seed(seed).map(Some)
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> DeResult<S::Value> {
        self.de.seed(seed)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl<'de> de::EnumAccess<'de> for FastDe<'_, 'de> {
    type Error = DeError;
    type Variant = Self;
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> DeResult<(S::Value, Self)> {
        let idx = self.cur.varint32()?;
        let v = seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(idx))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for FastDe<'_, 'de> {
    type Error = DeError;
    fn unit_variant(self) -> DeResult<()> {
        Ok(())
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(mut self, seed: S) -> DeResult<S::Value> {
        self.seed(seed)
    }
    fn tuple_variant<V: Visitor<'de>>(mut self, len: usize, v: V) -> DeResult<V::Value> {
        v.visit_seq(Access { de: self.re(), len })
    }
    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        v: V,
    ) -> DeResult<V::Value> {
        v.visit_seq(Access {
            de: self.re(),
            len: fields.len(),
        })
    }
}

#[cfg(test)]
mod tests;
