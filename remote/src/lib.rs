//! cfutures-remote: what the executors whose tasks run in other processes share — the task
//! model, the wire format, the worker's serve loop and the handshake.
//!
//! Users do not depend on this crate directly: `cfutures-process-pool` (workers are processes
//! on this machine) and `cfutures-mpi` (workers are MPI ranks, on many machines) re-export
//! what a user needs ([`RemoteTask`]). It exists so that both are one task model and one wire
//! format with two transports, not two copies.
//!
//! # What crosses
//!
//! * `submit_fn(f, arg)`: a function and its argument. `f` must be zero-sized (a fn item or
//!   a closure capturing nothing, [`assert_zero_sized`]); what crosses is the address of a
//!   monomorphized *trampoline* that decodes `arg`, makes `f` and calls it (see [`wire`]).
//! * `submit(task)` for [`RemoteTask`] types.
//! * `map` chunks (`MapChunk<F, A>`): one frame, one task in a worker; chunks of primitive
//!   numbers travel packed, everything else as postcard.
//!
//! # The pieces
//!
//! * [`job`]: the parent side — a submission becomes an [`Encoded`](job::Encoded) command
//!   frame and a type-erased [`Slot`](job::Slot) that the result completes.
//! * [`serve`]: the worker side — the loop that runs frames, over any
//!   [`Transport`](serve::Transport).
//! * [`handshake`]: how a worker proves it runs the parent's build and receives its key;
//!   [`ident`]: a build's identity across machines (a hash of the executable).
//! * [`wire`]: frame layout, encoding helpers, codec errors.
//! * [`bulk`]: what makes large data cheap to send — the automatic fast paths for byte and
//!   number vectors, the opt-in wrappers, and [`SharedSlice`](bulk::SharedSlice).
//! * [`oob`] and [`shm`]: for transports with shared memory (the process pool) — large
//!   payloads out of line, shared data as attachments, and the shared-memory primitives.

mod codec;
mod prim;
mod split;
mod task;

pub mod bulk;
pub mod handshake;
pub mod ident;
pub mod job;
pub mod oob;
pub mod serve;
pub mod shm;
pub mod wire;

pub use task::RemoteTask;

/// Checks (at compile time, when used in a `const` block) that a function type is
/// zero-sized: a fn item or a closure that captures nothing. A worker process cannot receive
/// captured state.
pub const fn assert_zero_sized<F>() {
    assert!(
        std::mem::size_of::<F>() == 0,
        "cfutures: the function given to a process pool (submit_fn, map, initializer) must be \
         a fn item or a closure that captures nothing (zero-sized): a worker process cannot \
         receive captured state. Pass data as the argument instead."
    );
}
