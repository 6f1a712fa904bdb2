//! Queued tasks, type-erased without an allocation when they are small.
//!
//! A [`RawJob`] holds a job either *inline* (in four words inside the queue slot) or, when
//! it does not fit, as a `Box`. Most tasks are a promise (one word) and a closure with a few
//! captures, so the common submit allocates only the future's shared state. This matters:
//! a job boxed on the submitting thread and freed on a worker sends every allocation down
//! the allocator's slow path (the submitter's thread cache never gets the memory back).

use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::ptr;

use cfutures_core::{discard_task, Broken, FutureId, Promise, Task};

use crate::shared::WorkerHooks;

/// A queued task (before type erasure).
pub(crate) trait Job: Send + Sized {
    /// Runs the task (unless its future was cancelled: then false), telling `hooks` (see
    /// [`Promise::run_with`]). The worker's own hook type, not a trait object: the hooks
    /// inline into each job's run (they cost a few instructions per task when nobody
    /// subscribes to events, against two indirect calls).
    fn run(self, hooks: &mut WorkerHooks<'_>) -> bool;
    /// The task's future.
    fn id(&self) -> FutureId;
    /// Cancels the task's future and notices the cancellation, so `wait` sees it done.
    fn cancel(self);
    /// Fails the task's future because the pool broke.
    fn fail(self, broken: Broken);
}

/// A task and the promise of its output.
pub(crate) struct TaskJob<T: Task> {
    pub(crate) promise: Promise<T::Output>,
    pub(crate) task: T,
}

impl<T> Job for TaskJob<T>
where
    T: Task + Send,
    T::Output: Send + Sync,
{
    fn run(self, hooks: &mut WorkerHooks<'_>) -> bool {
        // The id is the promise's address: a register move and a store, no load. The hooks
        // need it for a task's events (read only when someone listens).
        hooks.task = Some(self.promise.id());
        self.promise.run_with(self.task, hooks)
    }

    fn id(&self) -> FutureId {
        self.promise.id()
    }

    fn cancel(self) {
        // Cancelling a pending future always succeeds; dropping the promise then moves it to
        // "cancelled and notified", so `wait` / `as_completed` count it as done.
        let TaskJob { promise, task } = self;
        promise.future().cancel();
        discard_task(task);
    }

    fn fail(self, broken: Broken) {
        // If the future was cancelled meanwhile, the promise (dropped inside) notices that.
        let TaskJob { promise, task } = self;
        let _ = promise.set_broken(broken);
        discard_task(task);
    }
}

impl<J: Job> Job for Box<J> {
    fn run(self, hooks: &mut WorkerHooks<'_>) -> bool {
        (*self).run(hooks)
    }
    fn id(&self) -> FutureId {
        (**self).id()
    }
    fn cancel(self) {
        (*self).cancel()
    }
    fn fail(self, broken: Broken) {
        (*self).fail(broken)
    }
}

const INLINE_WORDS: usize = 4;
type Storage = MaybeUninit<[usize; INLINE_WORDS]>;

/// The operations on the value in a [`RawJob`]'s storage. Each takes the value out.
struct VTable {
    run: for<'a> unsafe fn(*mut Storage, &mut WorkerHooks<'a>) -> bool,
    id: unsafe fn(*const Storage) -> FutureId,
    cancel: unsafe fn(*mut Storage),
    fail: unsafe fn(*mut Storage, Broken),
    drop: unsafe fn(*mut Storage),
}

struct VTableFor<J>(PhantomData<J>);

impl<J: Job> VTableFor<J> {
    const VTABLE: VTable = VTable {
        run: |s, f| {
            // SAFETY: (see `RawJob`) `s` holds a `J`, read out exactly once.
            unsafe { ptr::read(s.cast::<J>()) }.run(f)
        },
        id: |s| {
            // SAFETY: (see `RawJob`) `s` holds a `J`; this only borrows it.
            unsafe { &*s.cast::<J>() }.id()
        },
        cancel: |s| {
            // SAFETY: as in `run`.
            unsafe { ptr::read(s.cast::<J>()) }.cancel()
        },
        fail: |s, b| {
            // SAFETY: as in `run`.
            unsafe { ptr::read(s.cast::<J>()) }.fail(b)
        },
        drop: |s| {
            // A job dropped without running (the pool went away with it queued): its
            // task's and promise's drops are user code, which must not unwind into the pool.
            // SAFETY: as in `run`.
            discard_task(unsafe { ptr::read(s.cast::<J>()) })
        },
    };
}

/// A type-erased job, stored inline when it fits.
///
/// # Safety argument
///
/// 1. `storage` holds one value of the type `vtable` was made for: [`RawJob::new`] writes a
///    `J` (when `J` fits, by size and alignment) or a `Box<J>` (which always fits: one
///    pointer), and picks `VTableFor` of that same type.
/// 2. The value is taken out exactly once: `run`, `cancel` and `fail` consume the `RawJob`
///    and wrap it in `ManuallyDrop` before calling the vtable, so `Drop` does not run
///    again; otherwise `Drop` drops it.
/// 3. `RawJob` is `Send` because every `J` is (`Job: Send`).
pub(crate) struct RawJob {
    storage: Storage,
    vtable: &'static VTable,
}

// SAFETY: point 3 of the safety argument.
unsafe impl Send for RawJob {}

impl RawJob {
    pub(crate) fn new<J: Job>(job: J) -> Self {
        if Self::fits::<J>() {
            Self::store(job)
        } else {
            Self::store(Box::new(job))
        }
    }

    const fn fits<J>() -> bool {
        mem::size_of::<J>() <= mem::size_of::<Storage>()
            && mem::align_of::<J>() <= mem::align_of::<Storage>()
    }

    fn store<J: Job>(job: J) -> Self {
        assert!(Self::fits::<J>());
        let mut storage = Storage::uninit();
        // SAFETY: `J` fits in `storage` by size and alignment (checked above).
        unsafe { ptr::write(storage.as_mut_ptr().cast::<J>(), job) };
        RawJob {
            storage,
            vtable: &VTableFor::<J>::VTABLE,
        }
    }

    pub(crate) fn run(self, hooks: &mut WorkerHooks<'_>) -> bool {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: points 1 and 2 of the safety argument.
        unsafe { (this.vtable.run)(&mut this.storage, hooks) }
    }

    /// The job's future.
    pub(crate) fn id(&self) -> FutureId {
        // SAFETY: point 1 of the safety argument; the value is only borrowed.
        unsafe { (self.vtable.id)(&self.storage) }
    }

    pub(crate) fn cancel(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: points 1 and 2 of the safety argument.
        unsafe { (this.vtable.cancel)(&mut this.storage) }
    }

    pub(crate) fn fail(self, broken: Broken) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: points 1 and 2 of the safety argument.
        unsafe { (this.vtable.fail)(&mut this.storage, broken) }
    }
}

impl Drop for RawJob {
    fn drop(&mut self) {
        // SAFETY: points 1 and 2 of the safety argument.
        unsafe { (self.vtable.drop)(&mut self.storage) }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn small_and_large_jobs_run_cancel_fail_and_drop_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let small = {
            let c = Counted(drops.clone());
            move || {
                let _c = &c;
                1u8
            }
        };
        let big = {
            let c = Counted(drops.clone());
            let pad = [7u64; 8];
            move || {
                let _c = &c;
                pad.iter().sum::<u64>()
            }
        };
        assert!(RawJob::fits::<TaskJob<fn() -> u8>>());
        assert!(!RawJob::fits::<[u64; 8]>());

        let (p, f) = cfutures_core::pending();
        let job = RawJob::new(TaskJob {
            promise: p,
            task: small,
        });
        crate::shared::test_hooks(|h| job.run(h));
        assert_eq!(*f.result().unwrap(), 1);
        let (p, f) = cfutures_core::pending();
        let job = RawJob::new(TaskJob {
            promise: p,
            task: big,
        });
        crate::shared::test_hooks(|h| job.run(h));
        assert_eq!(*f.result().unwrap(), 56);
        assert_eq!(drops.load(Ordering::SeqCst), 2);

        let (p, f) = cfutures_core::pending::<u8>();
        RawJob::new(TaskJob {
            promise: p,
            task: || 0u8,
        })
        .cancel();
        assert!(f.cancelled());
        let (p, f) = cfutures_core::pending::<u8>();
        RawJob::new(TaskJob {
            promise: p,
            task: || 0u8,
        })
        .fail(Broken::new("x"));
        assert!(f.result().unwrap_err().is_broken());
        let (p, f) = cfutures_core::pending::<u64>();
        let c = Counted(drops.clone());
        drop(RawJob::new(TaskJob {
            promise: p,
            task: move || {
                let _c = &c;
                0u64
            },
        }));
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        assert!(f.result().unwrap_err().is_broken()); // the dropped promise
    }
}
