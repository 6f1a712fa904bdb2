//! Encoding and decoding failures fail only their own future, and the worker lives;
//! postcard's limits (no `deserialize_any`) show up as codec errors.

mod util;

use cfutures_core::TaskError;
use cfutures_process_pool::ProcessPoolExecutor;
use serde::{Deserialize, Serialize, Serializer};
use util::*;

/// A value whose `Serialize` always fails.
#[derive(Deserialize)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

fn make_unserializable(_: ()) -> Unserializable {
    Unserializable
}

fn take_unserializable(_: Unserializable) -> u32 {
    1
}

fn codec_message(e: &TaskError) -> String {
    match e {
        TaskError::Codec { message } => message.to_string(),
        other => panic!("expected a codec error, got {other:?}"),
    }
}

#[test]
fn a_result_that_fails_to_serialize() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let before = pool.submit_fn(pid, ()).unwrap();
    let f = pool.submit_fn(make_unserializable, ()).unwrap();
    let after = pool.submit_fn(pid, ()).unwrap();
    let e = f.exception_timeout(WAIT).unwrap().expect("failed");
    // postcard drops the custom message; the type is named.
    let m = codec_message(&e);
    assert!(
        m.contains("cannot encode a value of type codec::Unserializable"),
        "{m}"
    );
    assert_eq!(
        before.result_timeout(WAIT).unwrap(),
        after.result_timeout(WAIT).unwrap()
    );
}

#[test]
fn an_argument_that_fails_to_serialize() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool.submit_fn(take_unserializable, Unserializable).unwrap();
    let e = f.exception_timeout(WAIT).unwrap().expect("failed");
    let m = codec_message(&e);
    assert!(
        m.contains("cannot encode a value of type codec::Unserializable"),
        "{m}"
    );
    assert_eq!(
        *pool
            .submit_fn(add_one, 1)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        2
    );
}

/// Untagged enums need `deserialize_any`, which postcard does not have.
#[derive(Serialize, Deserialize, Debug)]
#[serde(untagged)]
enum Untagged {
    Number(u32),
    Text(String),
}

fn describe(u: Untagged) -> String {
    format!("{u:?}")
}

/// Externally tagged (the default) works.
#[derive(Serialize, Deserialize, Debug)]
enum Tagged {
    Number(u32),
    Text(String),
}

fn describe_tagged(t: Tagged) -> String {
    format!("{t:?}")
}

#[test]
fn postcard_limits_untagged_enums_fail_to_decode() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let f = pool.submit_fn(describe, Untagged::Number(3)).unwrap();
    let e = f.exception_timeout(WAIT).unwrap().expect("failed");
    let m = codec_message(&e);
    assert!(m.contains("Untagged"), "{m}");
    let ok = pool
        .submit_fn(describe_tagged, Tagged::Text("x".into()))
        .unwrap();
    assert_eq!(ok.result_timeout(WAIT).unwrap(), "Text(\"x\")");
}

#[test]
fn a_frame_naming_an_unknown_function() {
    let pool = ProcessPoolExecutor::new(1).unwrap();
    let real = ProcessPoolExecutor::__fn_offset(add_one);
    // A wrong tag (as from a corrupted frame): refused before anything runs.
    // SAFETY: with an explicit tag any offset is safe (the worker checks it).
    let f = unsafe { pool.__submit_raw::<u64>(real + 12345, Some(42), &[1]) }.unwrap();
    let m = codec_message(&f.exception_timeout(WAIT).unwrap().expect("failed"));
    assert!(m.contains("cannot run"), "{m}");
    // The genuine function with a payload that does not decode as its argument.
    // SAFETY: the offset comes from `__fn_offset`.
    let g = unsafe { pool.__submit_raw::<u64>(real, None, &[0xff; 11]) }.unwrap();
    let m = codec_message(&g.exception_timeout(WAIT).unwrap().expect("failed"));
    assert!(m.contains("u64"), "{m}");
    // A result that does not decode as what the parent expects.
    // SAFETY: as above.
    let h = unsafe { pool.__submit_raw::<String>(real, None, &[0x7f]) }.unwrap();
    let m = codec_message(&h.exception_timeout(WAIT).unwrap().expect("failed"));
    assert!(m.contains("String"), "{m}");
    assert_eq!(
        *pool
            .submit_fn(add_one, 1)
            .unwrap()
            .result_timeout(WAIT)
            .unwrap(),
        2
    );
}
