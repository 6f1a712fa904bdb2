//! The codec: every shape round-trips through the fast paths, tier-0 types keep postcard's
//! exact bytes (so either side may take either path), and the reader gives postcard's
//! verdict and value on any input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::*;
use crate::bulk::{pod_vec, Bytes, PodVec};

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
enum E {
    A,
    B(Vec<u8>),
    C { x: Vec<f32>, y: u8 },
    D(u64, Vec<i8>),
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Unit;

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Pair(i32, u16);

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Prims {
    a: bool,
    b: char,
    c: i128,
    d: u128,
    e: i64,
    f: f32,
    g: Option<String>,
    h: (),
    i: Unit,
    j: Pair,
    k: i8,
    l: u16,
    m: usize,
    n: isize,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Shape {
    p: Prims,
    a: Vec<u8>,
    b: Option<Vec<u8>>,
    c: Vec<Vec<u8>>,
    d: Vec<f64>,
    e: E,
    f: BTreeMap<String, Vec<u8>>,
    g: (u16, Box<[u8]>),
    h: Vec<u32>,
    i: String,
    j: Bytes,
    k: PodVec<u64>,
    #[serde(with = "pod_vec")]
    l: Vec<i16>,
    m: Vec<E>,
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn e() -> impl Strategy<Value = E> {
    prop_oneof![
        Just(E::A),
        bytes(300).prop_map(E::B),
        (prop::collection::vec(-1e6f32..1e6, 0..100), any::<u8>()).prop_map(|(x, y)| E::C { x, y }),
        (any::<u64>(), prop::collection::vec(any::<i8>(), 0..100)).prop_map(|(a, b)| E::D(a, b)),
    ]
}

fn prims() -> impl Strategy<Value = Prims> {
    (
        (
            any::<bool>(),
            any::<char>(),
            any::<i128>(),
            any::<u128>(),
            any::<i64>(),
            -1e30f32..1e30,
        ),
        (
            prop::option::of(".{0,10}"),
            any::<i32>(),
            any::<u16>(),
            any::<i8>(),
            any::<u16>(),
            any::<usize>(),
            any::<isize>(),
        ),
    )
        .prop_map(|((a, b, c, d, e, f), (g, j0, j1, k, l, m, n))| Prims {
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h: (),
            i: Unit,
            j: Pair(j0, j1),
            k,
            l,
            m,
            n,
        })
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prims(),
        (
            (
                bytes(5000),
                prop::option::of(bytes(300)),
                prop::collection::vec(bytes(200), 0..10),
                prop::collection::vec(-1e9f64..1e9, 0..500),
                e(),
                prop::collection::btree_map(".{0,8}", bytes(100), 0..5),
                (any::<u16>(), bytes(300).prop_map(Vec::into_boxed_slice)),
            ),
            (
                prop::collection::vec(any::<u32>(), 0..300),
                ".{0,40}",
                bytes(300).prop_map(Bytes),
                prop::collection::vec(any::<u64>(), 0..100).prop_map(PodVec),
                prop::collection::vec(any::<i16>(), 0..100),
                prop::collection::vec(e(), 0..5),
            ),
        ),
    )
        .prop_map(|(p, ((a, b, c, d, e, f, g), (h, i, j, k, l, m)))| Shape {
            p,
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            j,
            k,
            l,
            m,
        })
}

fn fast_bytes<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, VecOut::new(&mut out)).unwrap();
    assert_eq!(out.len(), encoded_size(v).unwrap(), "encoded_size is exact");
    // Into a slice of the exact size: the same bytes.
    let mut exact = vec![0u8; out.len()];
    let n = encode(
        v,
        SliceOut {
            buf: &mut exact,
            pos: 0,
        },
    )
    .unwrap();
    assert_eq!(n, out.len());
    assert_eq!(exact, out, "slice and vec outputs agree");
    out
}

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone + 'static>(v: &T) {
    let fast = fast_bytes(v);
    assert_eq!(&decode::<T>(&fast).unwrap(), v, "fast -> fast");
    // Decoding out of shared memory (raw-pointer copies) gives the same value.
    // SAFETY: `fast` is alive and `fast.len()` long.
    let shared = unsafe { decode_shared::<T>(fast.as_ptr(), fast.len()) }.unwrap();
    assert_eq!(&shared, v, "decode_shared");
    // An owned top-level bulk value, consumed: the same bytes.
    let mut dst = vec![0u8; fast.len()];
    match encode_consuming(v.clone(), &mut dst) {
        Ok(n) => {
            assert_eq!(n, fast.len());
            assert_eq!(dst, fast, "encode_consuming");
        }
        Err(_) => assert!(bulk_view(v).is_none(), "a bulk value was not consumed"),
    }
    // A limit one byte short of the encoding refuses it; the exact size takes it.
    let mut buf = vec![9u8; 3];
    if !fast.is_empty() {
        assert!(!encode_limited(v, &mut buf, 3 + fast.len() - 1).unwrap());
        buf.truncate(3);
    }
    assert!(encode_limited(v, &mut buf, 3 + fast.len()).unwrap());
    assert_eq!(&buf[3..], &fast[..]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn shapes_round_trip(s in shape()) {
        check(&s);
        // Nested tier-0 values keep postcard's bytes exactly: either side may take either
        // path.
        let plain = postcard::to_allocvec(&s).unwrap();
        prop_assert_eq!(&fast_bytes(&s), &plain);
        prop_assert_eq!(decode::<Shape>(&plain).unwrap(), s.clone());
        prop_assert_eq!(postcard::from_bytes::<Shape>(&fast_bytes(&s)).unwrap(), s);
    }

    #[test]
    fn top_level_bulk_round_trips(
        a in bytes(70_000),
        b in prop::collection::vec(any::<u32>(), 0..10_000),
        c in prop::collection::vec(any::<i64>(), 0..5_000),
        d in prop::collection::vec(-1e300f64..1e300, 0..5_000),
        s in ".{0,200}",
        x in prop::collection::vec(any::<u16>(), 0..500).prop_map(Vec::into_boxed_slice),
        y in prop::collection::vec(any::<i128>(), 0..100),
    ) {
        check(&a);
        check(&b);
        check(&c);
        check(&d);
        check(&s);
        check(&x);
        check(&y);
        check(&(a.clone(), s.clone()));
        check(&vec![a.clone(), a.clone()]);
        // u8 and f64 vectors and strings: the same bytes as postcard at the top level too.
        prop_assert_eq!(fast_bytes(&a), postcard::to_allocvec(&a).unwrap());
        prop_assert_eq!(fast_bytes(&d), postcard::to_allocvec(&d).unwrap());
        prop_assert_eq!(fast_bytes(&s), postcard::to_allocvec(&s).unwrap());
        // Wider integers: raw, n × size bytes after the count.
        prop_assert_eq!(fast_bytes(&b).len(), raw_size(b.len(), 4 * b.len()));
    }

    #[test]
    fn random_bytes_decode_as_postcard_does(b in bytes(120)) {
        // Same verdict and same value as postcard's own deserializer, on any input.
        let ours = decode::<Prims>(&b).ok();
        let theirs = postcard::from_bytes::<Prims>(&b).ok();
        prop_assert_eq!(ours, theirs);
        let ours = decode::<(u16, u32, i16, Vec<u64>, char, bool)>(&b).ok();
        let theirs = postcard::from_bytes::<(u16, u32, i16, Vec<u64>, char, bool)>(&b).ok();
        prop_assert_eq!(ours, theirs);
        let ours = decode::<(Option<u8>, E, i32)>(&b).ok();
        let theirs = postcard::from_bytes::<(Option<u8>, E, i32)>(&b).ok();
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic(b in bytes(64)) {
        let _ = decode::<Vec<u8>>(&b);
        let _ = decode::<Vec<u64>>(&b);
        let _ = decode::<String>(&b);
        let _ = decode::<Shape>(&b);
        // SAFETY: `b` is alive and `b.len()` long.
        let _ = unsafe { decode_shared::<Vec<u32>>(b.as_ptr(), b.len()) };
        // SAFETY: as above.
        let _ = unsafe { decode_shared::<Shape>(b.as_ptr(), b.len()) };
    }
}

#[test]
fn edge_sizes_round_trip() {
    for n in [
        0usize,
        1,
        127,
        128,
        129,
        16383,
        16384,
        65535,
        65536,
        65537,
        1 << 20,
    ] {
        let v: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
        check(&v);
        check(&String::from_utf8(vec![b'x'; n]).unwrap());
        let w: Vec<f64> = (0..n / 8).map(|i| i as f64 * 0.5).collect();
        check(&w);
    }
    // A large decode destination (hinted for huge pages) is exact too.
    let big: Vec<u32> = (0..(HUGE_HINT as u32 / 2)).collect();
    check(&big);
}

#[test]
fn truncated_bulk_is_an_error() {
    let v: Vec<u32> = (0..1000).collect();
    let b = fast_bytes(&v);
    for cut in [0, 1, 2, 3, b.len() / 2, b.len() - 1] {
        assert!(decode::<Vec<u32>>(&b[..cut]).is_err(), "cut at {cut}");
        // SAFETY: `cut` bytes of `b`.
        assert!(unsafe { decode_shared::<Vec<u32>>(b.as_ptr(), cut) }.is_err());
    }
    // A length that claims more than the input holds does not allocate it.
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(decode::<Vec<u64>>(&huge).is_err());
    assert!(decode::<Vec<Vec<u8>>>(&huge).is_err());
    // Bytes that are not UTF-8 are not a string.
    assert!(decode::<String>(&[2, 0xff, 0xfe]).is_err());
}

#[test]
fn a_consumed_vector_is_copied_whole() {
    // Several 8 MiB chunks, pages given back as they go: the copy is exact.
    let n = (20 << 20) + 12345;
    let v: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let expect = fast_bytes(&v);
    let mut dst = vec![0u8; expect.len()];
    assert_eq!(encode_consuming(v, &mut dst).unwrap(), expect.len());
    assert!(dst == expect);
}
