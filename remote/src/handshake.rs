//! The handshake: before it serves, a worker proves it runs the parent's build, and receives
//! the parent's key (which the function tags of [`crate::wire`] are computed with).
//!
//! 1. The parent sends a greeting ([`greeting_frame`]): the protocol version, its key, the
//!    offset of a probe function, and the identity of its build (what identity means is the
//!    transport's choice: the process pool uses the executable file's device, inode, size
//!    and modification time; across machines, a hash of the executable:
//!    [`crate::ident::build_id`]).
//! 2. The worker checks it ([`check_greeting`]): same protocol, same probe offset (the same
//!    code layout), same build. It answers with [`hello_frame`]: `Ok(pid)`, or `Err(why)`,
//!    and then exits.
//!
//! The key never travels anywhere but this first frame: not in an environment variable, not
//! on a command line, where other processes could read it.

use serde::{Deserialize, Serialize};

use crate::wire;

/// The version of the protocol: frames, greeting and kinds.
pub const PROTOCOL: u32 = 3;

#[derive(Serialize, Deserialize)]
struct Greeting {
    protocol: u32,
    key: [u64; 2],
    probe: i64,
    build: Vec<u8>,
    quiet_panics: bool,
    segment_threshold: u64,
}

/// What the parent tells its workers besides its key and build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Task panics do not run the previous panic hook (Rust's default prints them on the
    /// worker's standard error); they still fail their task with message and location.
    pub quiet_panics: bool,
    /// Results of at least this many bytes go out of line, for a transport with shared
    /// memory (see [`crate::oob`]); `u64::MAX` (the default): never.
    pub segment_threshold: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quiet_panics: false,
            segment_threshold: u64::MAX,
        }
    }
}

impl Options {
    /// With panics quiet or printed.
    pub fn quiet_panics(mut self, quiet: bool) -> Self {
        self.quiet_panics = quiet;
        self
    }

    /// With this threshold for out-of-line results.
    pub fn segment_threshold(mut self, bytes: u64) -> Self {
        self.segment_threshold = bytes;
        self
    }
}

/// The parent's greeting, with its key and `build` (the identity of its build).
pub fn greeting_frame(build: &[u8], options: Options) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + build.len());
    let s = wire::begin_cmd(
        &mut out,
        wire::CMD_GREET,
        0,
        wire::FnId { offset: 0, tag: 0 },
    );
    let g = Greeting {
        protocol: PROTOCOL,
        key: wire::key(),
        probe: wire::probe_offset(),
        build: build.to_vec(),
        quiet_panics: options.quiet_panics,
        segment_threshold: options.segment_threshold,
    };
    let _ = wire::encode_into(&g, &mut out);
    let _ = wire::finish(&mut out, s);
    out
}

/// Worker side: checks the parent's greeting (a complete frame) against this process's
/// `build`; on success installs the parent's key, and core's panic hook (which records each
/// panic's location for the task's error, and prints task panics unless the parent asked
/// for quiet ones).
///
/// # Errors
///
/// Why the worker must not serve: not a greeting, another protocol, another build.
pub fn check_greeting(frame: &[u8], build: &[u8]) -> Result<(), String> {
    check_greeting_options(frame, build).map(|_| ())
}

/// [`check_greeting`], returning the options the parent sent.
///
/// # Errors
///
/// As [`check_greeting`].
pub fn check_greeting_options(frame: &[u8], build: &[u8]) -> Result<Options, String> {
    if frame.len() < wire::CMD_HEADER || frame[4] != wire::CMD_GREET {
        return Err("the first frame from the parent is not a greeting".into());
    }
    let g: Greeting = wire::decode(&frame[wire::CMD_HEADER..])
        .map_err(|e| format!("the parent's greeting does not decode: {e}"))?;
    if g.protocol != PROTOCOL {
        return Err(format!(
            "the parent speaks protocol {}, this worker {PROTOCOL}",
            g.protocol
        ));
    }
    if g.build != build || g.probe != wire::probe_offset() {
        return Err(
            "the worker is not the same build as the parent (was the executable rebuilt \
             while it ran?)"
                .into(),
        );
    }
    wire::set_key(g.key);
    cfutures_core::panics::install_hook();
    cfutures_core::panics::set_quiet(g.quiet_panics);
    Ok(Options {
        quiet_panics: g.quiet_panics,
        segment_threshold: g.segment_threshold,
    })
}

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
/// If the payload is not a greeting's answer.
pub fn decode_hello(payload: &[u8]) -> Result<Result<u32, String>, cfutures_core::TaskError> {
    wire::decode(payload)
}
