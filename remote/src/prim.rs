//! `map` chunks of primitive numbers, packed: no serde call, no varint, per item.
//!
//! A `map` chunk is a `Vec<A>` one way and a [`ChunkOutput<R>`] the other. When `A` (or
//! `R`) is a primitive number — `u8` … `u64`, `i8` … `i64`, `usize`, `isize`, `f32`, `f64`,
//! `bool` — the items travel *packed* instead of as postcard:
//!
//! ```text
//! n: varint | w: u8 | n × w bytes
//! ```
//!
//! each item as its bits (zigzag for signed integers, as postcard does; the IEEE bits of a
//! float; 0 or 1 for a `bool`), little-endian, in the `w` low bytes, `w` being the fewest
//! bytes that hold every item of the chunk (at least 1). Packing is a pass that ORs the
//! items together and a loop of `w`-byte stores; unpacking, a loop of `w`-byte loads (each
//! width has its own loop, with constant sizes). Both run at a few instructions per item
//! with no data-dependent branch, where postcard's varints cost a serde call and a branch
//! per byte (about half of W3's CPU time on both sides of both pipes). For W3's values
//! (below 2^21) `w` is 3: as compact as the varints.
//!
//! A chunk's output is `0` (postcard's variant index of `ChunkOutput::Values`) and the
//! packed items; a `ChunkOutput::Mixed` (an item failed), and chunks of any other type, are
//! postcard. Both ends are the same executable, and the trampoline is monomorphized for
//! `A` and `R`, so sender and receiver always agree on which form a payload has; a
//! malformed payload fails to decode (a codec error), as a malformed postcard one does.
//!
//! The type test is `Any::downcast` on the whole `Vec` (no `unsafe`): a few comparisons
//! per chunk.

use std::any::{Any, TypeId};

use cfutures_core::{ChunkOutput, TaskError};

use crate::wire;

/// A primitive number that travels packed.
trait Prim: Copy + 'static {
    /// The most bytes a value takes.
    const BYTES: usize;
    /// The bits that travel (zero-extended to 64).
    fn bits(self) -> u64;
    /// Whether all bit patterns (of at most `BYTES` bytes) are values: all but `bool`.
    const ALL_VALID: bool = true;
    /// Whether `bits` (at most `BYTES` bytes) are the bits of a value.
    fn valid(_bits: u64) -> bool {
        true
    }
    /// The value of valid `bits`.
    fn from_bits(bits: u64) -> Self;
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Prim for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn bits(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_bits(bits: u64) -> Self {
                bits as $t
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, usize);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Prim for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn bits(self) -> u64 {
                // Zigzag: 0, -1, 1, -2, … → 0, 1, 2, 3, …, so that small negative numbers
                // pack small too.
                ((self << 1) ^ (self >> (<$t>::BITS - 1))) as $u as u64
            }
            #[inline(always)]
            fn from_bits(bits: u64) -> Self {
                let z = bits as $u;
                ((z >> 1) as $t) ^ -((z & 1) as $t)
            }
        }
    )*};
}
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, isize => usize);

macro_rules! float {
    ($($t:ty => $u:ty),*) => {$(
        impl Prim for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn bits(self) -> u64 {
                self.to_bits() as u64
            }
            #[inline(always)]
            fn from_bits(bits: u64) -> Self {
                <$t>::from_bits(bits as $u)
            }
        }
    )*};
}
float!(f32 => u32, f64 => u64);

impl Prim for bool {
    const BYTES: usize = 1;
    #[inline(always)]
    fn bits(self) -> u64 {
        self as u64
    }
    const ALL_VALID: bool = false;
    #[inline(always)]
    fn valid(bits: u64) -> bool {
        bits <= 1
    }
    #[inline(always)]
    fn from_bits(bits: u64) -> Self {
        bits != 0
    }
}

/// Writes `v` as a varint (7 bits a byte, least significant first, high bit: more follow).
fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint (as postcard: at most 10 bytes, the last at most 1).
fn take_varint(b: &[u8], at: &mut usize) -> Result<u64, postcard::Error> {
    let mut out = 0u64;
    for i in 0..10 {
        let Some(&byte) = b.get(*at) else {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        };
        *at += 1;
        out |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i == 9 && byte > 1 {
                return Err(postcard::Error::DeserializeBadVarint);
            }
            return Ok(out);
        }
    }
    Err(postcard::Error::DeserializeBadVarint)
}

/// Calls `$f::<W>($args)` for the width `$w` (1 to 8) as a constant, so that each width
/// gets its own loop of fixed-size loads and stores.
macro_rules! by_width {
    ($w:expr, $f:ident($($args:expr),*)) => {
        match $w {
            1 => $f::<1, _>($($args),*),
            2 => $f::<2, _>($($args),*),
            3 => $f::<3, _>($($args),*),
            4 => $f::<4, _>($($args),*),
            5 => $f::<5, _>($($args),*),
            6 => $f::<6, _>($($args),*),
            7 => $f::<7, _>($($args),*),
            _ => $f::<8, _>($($args),*),
        }
    };
}

/// Appends `items`, packed.
fn put_packed<P: Prim>(items: &[P], out: &mut Vec<u8>) {
    fn pack<const W: usize, P: Prim>(items: &[P], buf: &mut [u8]) {
        for (c, &x) in buf.chunks_exact_mut(W).zip(items) {
            c.copy_from_slice(&x.bits().to_le_bytes()[..W]);
        }
    }
    let any = items.iter().fold(0u64, |a, &x| a | x.bits());
    let w = (8 - any.leading_zeros() as usize / 8).max(1);
    let n = items.len();
    out.reserve_exact(10 + 1 + n * w);
    put_varint(n as u64, out);
    out.push(w as u8);
    let body = out.len();
    out.resize(body + n * w, 0);
    by_width!(w, pack(items, &mut out[body..]));
}

/// Reads packed items at `b[*at..]`.
fn take_packed<P: Prim>(b: &[u8], at: &mut usize) -> Result<Vec<P>, postcard::Error> {
    use postcard::Error::{DeserializeBadBool, DeserializeBadEncoding, DeserializeUnexpectedEnd};
    fn unpack<const W: usize, P: Prim>(body: &[u8]) -> Result<Vec<P>, postcard::Error> {
        let bits = |c: &[u8]| {
            let mut x = [0u8; 8];
            x[..W].copy_from_slice(c);
            u64::from_le_bytes(x)
        };
        if !P::ALL_VALID && !body.chunks_exact(W).all(|c| P::valid(bits(c))) {
            return Err(DeserializeBadBool);
        }
        // (`extend` from `ChunksExact` writes in place: no capacity check per item.)
        let mut v = Vec::with_capacity(body.len() / W);
        v.extend(body.chunks_exact(W).map(|c| P::from_bits(bits(c))));
        Ok(v)
    }
    let n = take_varint(b, at)?;
    let Some(&w) = b.get(*at) else {
        return Err(DeserializeUnexpectedEnd);
    };
    *at += 1;
    let w = usize::from(w);
    if w == 0 || w > P::BYTES {
        return Err(DeserializeBadEncoding);
    }
    // The items must all be there (so a corrupt `n` cannot make us allocate more than the
    // input could hold).
    let body = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(w))
        .and_then(|len| b.get(*at..).and_then(|rest| rest.get(..len)))
        .ok_or(DeserializeUnexpectedEnd)?;
    *at += body.len();
    by_width!(w, unpack(body))
}

/// `t` as a `U`, if `T` and `U` are the same type.
fn cast<T: 'static, U: 'static>(t: T) -> Option<U> {
    let mut t = Some(t);
    (&mut t as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}

/// Appends `items` packed; `false` (nothing written) if `A` is not a primitive number.
#[allow(clippy::ptr_arg)] // `Any` needs a sized type: the `Vec`, not a slice.
pub(crate) fn encode_items<A: 'static>(items: &Vec<A>, out: &mut Vec<u8>) -> bool {
    let items: &dyn Any = items;
    macro_rules! go {
        ($($p:ty)*) => {
            $( if let Some(v) = items.downcast_ref::<Vec<$p>>() {
                put_packed::<$p>(v, out);
                return true;
            } )*
        };
    }
    go!(u8 i8 u16 i16 u32 i32 u64 i64 usize isize f32 f64 bool);
    false
}

/// `Some(go::<P, T>(arg))` for the primitive number `P` that `T` is, `None` if `T` is none
/// of them.
macro_rules! by_prim {
    ($t:ty, $go:ident, $arg:expr) => {
        by_prim!(@ $t, $go, $arg; u8 i8 u16 i16 u32 i32 u64 i64 usize isize f32 f64 bool)
    };
    (@ $t:ty, $go:ident, $arg:expr; $($p:ty)*) => {{
        let id = TypeId::of::<$t>();
        $( if id == TypeId::of::<$p>() { Some($go::<$p, $t>($arg)) } else )* { None }
    }};
}

/// Decodes a chunk's items (`Vec<A>`): packed if `A` is a primitive number, else postcard.
pub(crate) fn decode_items<A: serde::de::DeserializeOwned + 'static>(
    b: &[u8],
) -> Result<Vec<A>, TaskError> {
    fn go<P: Prim, A: 'static>(b: &[u8]) -> Result<Vec<A>, postcard::Error> {
        take_packed::<P>(b, &mut 0).map(|v| cast(v).expect("same type"))
    }
    let fast: Option<Result<Vec<A>, postcard::Error>> = by_prim!(A, go, b);
    match fast {
        Some(r) => r.map_err(decode_error::<Vec<A>>),
        None => wire::decode(b),
    }
}

/// Appends a chunk's output, packed; `false` (nothing written) if it is not packed (`R` is
/// not a primitive number, or an item failed).
pub(crate) fn encode_output<R: 'static>(o: &ChunkOutput<R>, out: &mut Vec<u8>) -> bool {
    let ChunkOutput::Values(v) = o else {
        return false;
    };
    let start = out.len();
    // Postcard's variant index of `Values`.
    out.push(0);
    if encode_items(v, out) {
        true
    } else {
        out.truncate(start);
        false
    }
}

/// Decodes a chunk's output: packed if `R` is a primitive number and the payload starts
/// with `Values`' index, else postcard.
pub(crate) fn decode_output<R: serde::de::DeserializeOwned + 'static>(
    b: &[u8],
) -> Result<ChunkOutput<R>, TaskError> {
    fn go<P: Prim, R: 'static>(b: &[u8]) -> Result<ChunkOutput<R>, postcard::Error> {
        take_packed::<P>(b, &mut 1).map(|v| cast(ChunkOutput::Values(v)).expect("same type"))
    }
    if b.first() == Some(&0) {
        let fast: Option<Result<ChunkOutput<R>, postcard::Error>> = by_prim!(R, go, b);
        if let Some(r) = fast {
            return r.map_err(decode_error::<ChunkOutput<R>>);
        }
    }
    wire::decode(b)
}

fn decode_error<T>(e: postcard::Error) -> TaskError {
    wire::codec(format!(
        "cannot decode a value of type {}: {e}",
        std::any::type_name::<T>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    fn postcard_bytes<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).unwrap()
    }

    /// Packs `items`, as a chunk's items and as its output, and unpacks them; the packed
    /// bytes are `expect_width` bytes an item.
    fn roundtrip<P>(items: Vec<P>, expect_width: Option<usize>)
    where
        P: Prim + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let name = std::any::type_name::<P>();
        let mut b = vec![0xaa];
        assert!(encode_items(&items, &mut b));
        let mut at = 1;
        assert_eq!(take_varint(&b, &mut at).unwrap(), items.len() as u64);
        let w = usize::from(b[at]);
        assert_eq!(b.len(), at + 1 + items.len() * w, "{name}");
        if let Some(e) = expect_width {
            assert_eq!(w, e, "{name}");
        }
        let back = decode_items::<P>(&b[1..]).unwrap();
        // (Compared as postcard bytes: a NaN is not equal to itself.)
        assert_eq!(postcard_bytes(&back), postcard_bytes(&items), "{name}");

        let out = ChunkOutput::Values(items.clone());
        let mut b = Vec::new();
        assert!(encode_output(&out, &mut b));
        assert_eq!(b[0], 0);
        match decode_output::<P>(&b).unwrap() {
            ChunkOutput::Values(v) => assert_eq!(postcard_bytes(&v), postcard_bytes(&items)),
            ChunkOutput::Mixed(_) => panic!("mixed"),
        }
    }

    /// Edge values up to `max`, and a spread in between.
    fn samples(max: u64) -> Vec<u64> {
        let mut v = vec![0, 1, 2, 126, 127, 128, 129, 255, 256, 300];
        for k in 1..64 {
            let p = 1u64 << k;
            v.extend([p - 1, p, p + 1]);
        }
        v.push(u64::MAX);
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x);
        }
        v.retain(|&y| y <= max);
        v
    }

    #[test]
    fn every_type_packs_and_unpacks() {
        fn all<P>(from: impl Fn(u64) -> P, max: u64)
        where
            P: Prim + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
        {
            roundtrip(
                samples(max).into_iter().map(&from).collect::<Vec<P>>(),
                None,
            );
            // Every length from 0 to 20, so that the word reads meet the end everywhere.
            for n in 0..20 {
                roundtrip(
                    samples(max)
                        .into_iter()
                        .rev()
                        .take(n)
                        .map(&from)
                        .collect::<Vec<P>>(),
                    None,
                );
            }
        }
        all(|x| x as u8, u8::MAX.into());
        all(|x| x as i8, u64::MAX);
        all(|x| x as u16, u16::MAX.into());
        all(|x| x as i16, u64::MAX);
        all(|x| x as u32, u32::MAX.into());
        all(|x| x as i32, u64::MAX);
        all(|x| x, u64::MAX);
        all(|x| x as i64, u64::MAX);
        all(|x| x as usize, usize::MAX as u64);
        all(|x| x as isize, u64::MAX);
        all(|x| f32::from_bits(x as u32), u64::MAX);
        all(f64::from_bits, u64::MAX);
        all(|x| x & 1 == 1, u64::MAX);
        // The width is the fewest bytes that hold every item; never 0.
        roundtrip::<u64>((0..1000).map(|x| x * 2).collect(), Some(2));
        roundtrip::<u64>(
            (0..1_000_000).step_by(999).map(|x| x * 2).collect(),
            Some(3),
        );
        roundtrip::<u64>(vec![0; 5], Some(1));
        roundtrip::<i64>(vec![-1, 0, 63, -64], Some(1));
        roundtrip::<i64>(vec![i64::MIN], Some(8));
        roundtrip::<u64>(Vec::new(), Some(1));
        roundtrip::<u16>(vec![u16::MAX], Some(2));
    }

    #[test]
    fn other_types_take_postcard() {
        let mut out = Vec::new();
        assert!(!encode_items(&vec![String::from("a")], &mut out));
        assert!(!encode_items(&vec![(1u8, 2u8)], &mut out));
        assert!(!encode_items(&vec![1u128], &mut out));
        let mixed: ChunkOutput<u64> = vec![Ok(1), Err(wire::codec("x"))].into_iter().collect();
        assert!(!encode_output(&mixed, &mut out));
        assert!(out.is_empty());
        // Decoding them works, through postcard.
        let b = postcard_bytes(&mixed);
        assert!(matches!(decode_output::<u64>(&b).unwrap(), ChunkOutput::Mixed(v) if v.len() == 2));
        let b = postcard_bytes(&vec![String::from("a")]);
        assert_eq!(decode_items::<String>(&b).unwrap(), ["a"]);
        let b = postcard_bytes(&ChunkOutput::Values(vec![String::from("b")]));
        assert!(
            matches!(decode_output::<String>(&b).unwrap(), ChunkOutput::Values(v) if v == ["b"])
        );
    }

    #[test]
    fn malformed_input_is_a_codec_error() {
        fn refused<P: Prim + serde::de::DeserializeOwned + std::fmt::Debug>(b: &[u8]) {
            let e = decode_items::<P>(b).unwrap_err();
            assert!(e.to_string().contains("cannot decode"), "{e}");
            let mut with_tag = vec![0];
            with_tag.extend_from_slice(b);
            assert!(decode_output::<P>(&with_tag).is_err(), "{b:?}");
        }
        let cases: &[&[u8]] = &[
            &[],                                // no length
            &[1],                               // no width
            &[1, 0, 0],                         // width 0
            &[1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0], // wider than any type
            &[2, 1, 0],                         // an item missing
            &[3, 2, 0, 0, 0, 0, 0],             // half an item missing
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0,
            ], // huge length
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 1, 0,
            ], // bad varint
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
            ], // endless varint
        ];
        for b in cases {
            refused::<u8>(b);
            refused::<i16>(b);
            refused::<u32>(b);
            refused::<u64>(b);
            refused::<f64>(b);
            refused::<bool>(b);
        }
        refused::<u8>(&[1, 2, 0, 0]); // wider than a u8
        refused::<u32>(&[1, 5, 0, 0, 0, 0, 0]); // wider than a u32
        refused::<bool>(&[2, 1, 1, 2]); // not a bool
        refused::<bool>(&[10, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 7]); // not a bool (word read)
                                                                 // Random bytes: refused or read, never a panic.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..5000 {
            let mut b = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push((x >> 32) as u8 & if x & 1 == 0 { 0x0f } else { 0xff });
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = decode_items::<u64>(&b);
            let _ = decode_items::<i32>(&b);
            let _ = decode_items::<bool>(&b);
            let _ = decode_output::<u16>(&b);
            let _ = decode_output::<f32>(&b);
        }
    }
}
