//! The handshake: before it serves, a worker proves it runs the parent's build, and receives
//! the parent's key (which the function tags of [`wire`] are computed with).

use crate::wire;

/// The result frame a worker sends before serving: `Ok(pid)`, or `Err(why)` when it refuses
/// to serve (it then exits).
pub fn hello_frame(hello: Result<u32, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let s = wire::begin_res(&mut out, 0);
    let _ = wire::encode_into(&hello, &mut out);
    out[s + 4] = wire::RES_HELLO;
    let _ = wire::finish(&mut out, s);
    out
}

/// Decodes a [`hello_frame`]'s payload.
///
/// # Errors
///
/// If the payload is not a greeting.
pub fn decode_hello(payload: &[u8]) -> Result<Result<u32, String>, cfutures_core::TaskError> {
    wire::decode(payload)
}

/// The offset of the probe function: the same in parent and worker means the same code
/// layout.
pub fn probe_offset() -> i64 {
    wire::probe_offset()
}

/// This process's key (created on first use; the parent's).
pub fn key() -> [u64; 2] {
    wire::key()
}

/// Worker side, once the checks passed: installs the parent's key and the panic hook that
/// records each panic's location for the task's error (and prints nothing: the message and
/// location travel to the parent).
pub fn accept(key: [u64; 2]) {
    wire::set_key(key);
    wire::install_panic_hook();
}
