//! [`RemoteTask`]: the marker for task types that run in another process.

use cfutures_core::Task;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A task type that can run in a worker process (the process pool's, or an MPI rank):
/// serializable, with a serializable output.
///
/// Implement it (an empty impl) for your task types; this opt-in marker is what lets an
/// executor accept both task types and `map` chunks through
/// [`Submit`](cfutures_core::Submit) (nobody else can implement `RemoteTask` for
/// `MapChunk`, so the two impls cannot overlap, which a blanket impl over
/// `Serialize + DeserializeOwned` could not promise).
///
/// # Examples
///
/// ```
/// use cfutures_core::{Task, TaskError};
/// use cfutures_remote::RemoteTask;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Fib(u32);
///
/// impl Task for Fib {
///     type Output = u64;
///     fn run(self) -> Result<u64, TaskError> {
///         let (mut a, mut b) = (0u64, 1u64);
///         for _ in 0..self.0 {
///             (a, b) = (b, a + b);
///         }
///         Ok(a)
///     }
/// }
/// impl RemoteTask for Fib {}
///
/// // `pool.submit(Fib(50))` on a process pool runs it in a worker process.
/// assert_eq!(Fib(50).run().unwrap(), 12_586_269_025);
/// ```
pub trait RemoteTask: Task + Serialize + DeserializeOwned + Send + 'static {}
