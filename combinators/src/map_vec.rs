//! [`MapBuilder::map_vec`](crate::MapBuilder::map_vec): a `Vec` in, a `Vec` out, the
//! workers reading the input and writing the output in place.
//!
//! # How it runs
//!
//! The input `Vec`'s buffer and a new output buffer of the same length are shared by all
//! chunks ([`VecChunk`] tasks). Chunk `k` owns the items of its range of the input, moves
//! each one into `f`, and writes the result at the same place in the output; the calling
//! thread handles no item (unless the executor runs tasks on it, or refuses one: then it
//! drops the items never submitted). When every chunk has succeeded, the output buffer
//! becomes the returned `Vec`, without a copy.
//!
//! # Ownership, which the `unsafe` code below relies on
//!
//! * [`Input`] owns the input's allocation, not its items: each item is owned by exactly one
//!   [`Items`] range, which moves items out one at a time and drops, when dropped, the ones
//!   it did not give out. Ranges are split off one [`Items`] that starts as the whole input,
//!   so they never overlap, and whatever is never split off is dropped by that one.
//! * [`Output`] owns the output's allocation. Only chunk `k` writes range `k`, and it sets
//!   `written[k]` (Release) once the whole range holds values; a chunk that fails drops the
//!   values it wrote before returning. `run` splits the input so that chunk `k`'s items
//!   are exactly range `k` (asserted), and a chunk writes at most its range whatever
//!   `Items` holds. So at any time range `k` holds values exactly when
//!   `written[k]` is set, and `Output`'s `Drop` (which runs after every chunk has let go of
//!   it) drops exactly those.

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cfutures_core::{Error, Future, InvalidState, Task, TaskError};

/// The input's allocation, shared by the chunks. It frees the memory; the items belong to
/// [`Items`] ranges.
struct Input<A> {
    ptr: NonNull<A>,
    cap: usize,
}

// SAFETY: an `Input` only frees its allocation (wherever the last `Arc` to it is dropped);
// the items in it are moved and dropped through `Items`, each by the one thread that owns
// that range, so sharing or sending an `Input` moves `A`s between threads: `A: Send`.
unsafe impl<A: Send> Send for Input<A> {}
// SAFETY: as above; `&Input` gives access to nothing but the pointer.
unsafe impl<A: Send> Sync for Input<A> {}

impl<A> Drop for Input<A> {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `cap` come from a `Vec<A>` (see `Items::all`); with length 0 the
        // `Vec` frees the allocation and drops no item (the `Items` ranges own those, and
        // have all been dropped, since each holds an `Arc` to this `Input`).
        drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), 0, self.cap) });
    }
}

/// Items `next..end` of the input, owned: given out one by one by [`take`](Items::take),
/// the rest dropped with the range.
struct Items<A> {
    input: Arc<Input<A>>,
    next: usize,
    end: usize,
}

impl<A> Items<A> {
    /// Every item of `v`, whose buffer the returned range shares with the ranges split off
    /// it.
    fn all(v: Vec<A>) -> Self {
        let mut v = ManuallyDrop::new(v);
        let len = v.len();
        let input = Input {
            // A `Vec`'s pointer is never null (it dangles when nothing is allocated).
            ptr: NonNull::new(v.as_mut_ptr()).expect("a Vec's pointer is not null"),
            cap: v.capacity(),
        };
        Items {
            input: Arc::new(input),
            next: 0,
            end: len,
        }
    }

    fn len(&self) -> usize {
        self.end - self.next
    }

    /// The first `n` items (at most `len()`) as a range of their own.
    fn split_front(&mut self, n: usize) -> Items<A> {
        let n = n.min(self.len());
        let front = Items {
            input: self.input.clone(),
            next: self.next,
            end: self.next + n,
        };
        self.next += n;
        front
    }

    fn take(&mut self) -> Option<A> {
        if self.next == self.end {
            return None;
        }
        // SAFETY: `next < end`: item `next` is initialised and owned by this range alone
        // (ranges never overlap), and `next` moves past it, so it is read exactly once.
        let a = unsafe { ptr::read(self.input.ptr.as_ptr().add(self.next)) };
        self.next += 1;
        Some(a)
    }
}

impl<A> Drop for Items<A> {
    fn drop(&mut self) {
        let (next, end) = (self.next, self.end);
        self.next = end;
        // SAFETY: items `next..end` are initialised and owned by this range alone; they are
        // dropped once here (`next` was moved to `end` first, so nothing reads them again).
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                self.input.ptr.as_ptr().add(next),
                end - next,
            ));
        }
    }
}

/// The output's allocation: `len` slots, in ranges of `chunksize`; range `k` holds values
/// exactly when `written[k]` is set.
struct Output<R> {
    ptr: NonNull<R>,
    cap: usize,
    len: usize,
    chunksize: usize,
    written: Box<[AtomicBool]>,
}

// SAFETY: chunks write disjoint ranges, each from one thread, and the values end up owned
// (and dropped) wherever the output goes: sharing or sending an `Output` moves `R`s
// between threads, so `R: Send`.
unsafe impl<R: Send> Send for Output<R> {}
// SAFETY: as above; through `&Output` a chunk writes only its own range.
unsafe impl<R: Send> Sync for Output<R> {}

impl<R> Output<R> {
    fn new(len: usize, chunksize: usize) -> Self {
        let mut v = ManuallyDrop::new(Vec::<R>::with_capacity(len));
        Output {
            ptr: NonNull::new(v.as_mut_ptr()).expect("a Vec's pointer is not null"),
            cap: v.capacity(),
            len,
            chunksize,
            written: (0..len.div_ceil(chunksize))
                .map(|_| AtomicBool::new(false))
                .collect(),
        }
    }

    fn range(&self, k: usize) -> (usize, usize) {
        let start = k * self.chunksize;
        (start, (start + self.chunksize).min(self.len))
    }

    /// The values, if every range is written.
    fn into_vec(self) -> Result<Vec<R>, Self> {
        // Acquire: pairs with each chunk's Release store, after its writes.
        if !self.written.iter().all(|w| w.load(Ordering::Acquire)) {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: every range is written, so slots `0..len` hold values; the allocation was
        // made by a `Vec<R>` with capacity `cap`. `this` is not dropped, so the values and
        // the allocation now belong to the `Vec` alone; `written` is moved out to be freed.
        unsafe {
            drop(ptr::read(&this.written));
            Ok(Vec::from_raw_parts(this.ptr.as_ptr(), this.len, this.cap))
        }
    }
}

impl<R> Drop for Output<R> {
    fn drop(&mut self) {
        drop_ranges_from(self, 0);
    }
}

/// Drops the written ranges from `k` on, then frees the allocation. If a value's `Drop`
/// panics, a guard carries on with the next range as the panic unwinds (a second panic
/// aborts, as in `Vec`), so the other values are still dropped and the memory freed.
fn drop_ranges_from<R>(out: &Output<R>, k: usize) {
    struct Rest<'a, R>(&'a Output<R>, usize);
    impl<R> Drop for Rest<'_, R> {
        fn drop(&mut self) {
            drop_ranges_from(self.0, self.1);
        }
    }
    for k in k..out.written.len() {
        // Acquire: pairs with the chunk's Release store, after its writes.
        if out.written[k].load(Ordering::Acquire) {
            let rest = Rest(out, k + 1);
            let (start, end) = out.range(k);
            // SAFETY: `written[k]` is set, so slots `start..end` hold values, which no one
            // else owns (every chunk has let go of this `Output`, which is being dropped);
            // each range is dropped once (this loop, or the guard's, goes past it first).
            unsafe {
                ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                    out.ptr.as_ptr().add(start),
                    end - start,
                ));
            }
            std::mem::forget(rest);
        }
    }
    // SAFETY: the allocation was made by a `Vec<R>` with capacity `cap`; with length 0 the
    // `Vec` frees it and drops nothing (the written ranges were dropped above). This runs
    // once: either at the end of the outermost call or of the one a guard started.
    drop(unsafe { Vec::from_raw_parts(out.ptr.as_ptr(), 0, out.cap) });
}

/// One chunk of a [`map_vec`](crate::MapBuilder::map_vec): it moves each item of its range
/// of the input into `f` and writes the result at the same place in the shared output.
///
/// Its output is `()`: the values go straight into the result `Vec`. Executors that run
/// tasks in this process accept it (the thread pool, `InlineExecutor`: any executor with
/// `Submit<T>` for every [`Task`]); a process pool does not — use
/// [`map`](crate::MapBuilder::map) there.
pub struct VecChunk<F, A, R> {
    f: Arc<F>,
    items: Items<A>,
    output: Arc<Output<R>>,
    index: usize,
}

impl<F, A, R> std::fmt::Debug for VecChunk<F, A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VecChunk")
            .field("index", &self.index)
            .field("items", &self.items.len())
            .finish()
    }
}

impl<F, A, R> Task for VecChunk<F, A, R>
where
    F: Fn(A) -> R,
{
    type Output = ();

    fn run(self) -> Result<(), TaskError> {
        let VecChunk {
            f,
            mut items,
            output,
            index,
        } = self;
        let (start, end) = output.range(index);
        let dst = output.ptr.as_ptr();
        let mut written = start;
        // One `catch_unwind` for the whole chunk (see `MapChunk`); the first panic fails the
        // chunk, which is all `map_vec` reports.
        let all = panic::catch_unwind(AssertUnwindSafe(|| {
            while written < end {
                let Some(a) = items.take() else {
                    break;
                };
                let r = f(a);
                // SAFETY: `start <= written < end`, a range only this chunk writes; each
                // slot is written once.
                unsafe { dst.add(written).write(r) };
                written += 1;
            }
        }));
        let failure = match all {
            // `run` makes each chunk's items exactly its output range, so this is the
            // only outcome of a loop that did not panic.
            Ok(()) if written == end => None,
            Ok(()) => Some(TaskError::from_panic(Box::new(
                "map_vec: a chunk's items did not match its output range",
            ))),
            Err(payload) => Some(TaskError::from_panic(payload)),
        };
        match failure {
            None => {
                // Release: publishes the writes above to whoever sees the flag.
                output.written[index].store(true, Ordering::Release);
                Ok(())
            }
            Some(e) => {
                // SAFETY: slots `start..written` were written above and are not marked
                // written, so no one else will drop them: dropped once here.
                unsafe {
                    ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                        dst.add(start),
                        written - start,
                    ));
                }
                // The items not reached: a panic in one's drop must not replace `f`'s.
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(items)));
                Err(e)
            }
        }
        // `output` and `f` are dropped here, before the executor completes this chunk's
        // future.
    }
}

/// The chunks `map_vec` makes of `items`, each submitted through `submit`, then awaited in
/// order until `deadline`; the values, or the first error in input order.
pub(crate) fn run<F, A, R>(
    f: F,
    items: Vec<A>,
    chunksize: usize,
    deadline: Option<std::time::Instant>,
    mut submit: impl FnMut(VecChunk<F, A, R>) -> Result<Future<()>, Error>,
) -> Result<Vec<R>, Error> {
    let len = items.len();
    let f = Arc::new(f);
    let output = Arc::new(Output::<R>::new(len, chunksize));
    let mut rest = Items::all(items);
    let mut futures = Vec::with_capacity(len.div_ceil(chunksize));
    let cancel_all = |futures: &[Future<()>]| {
        for fut in futures {
            fut.cancel();
        }
    };
    for index in 0..len.div_ceil(chunksize) {
        let (start, end) = output.range(index);
        let items = rest.split_front(end - start);
        // The one place where a chunk's items and its output range are matched up.
        assert_eq!(
            (items.next, items.end),
            (start, end),
            "map_vec: chunk ranges"
        );
        let chunk = VecChunk {
            f: f.clone(),
            items,
            output: output.clone(),
            index,
        };
        match submit(chunk) {
            Ok(fut) => futures.push(fut),
            Err(e) => {
                cancel_all(&futures);
                // What holds user code's drops (items, `f`, values written) goes while `e`
                // is still a local, so a panic there drops `e` as it unwinds: a panic in
                // a local's drop after the return value is built leaks that value
                // (rust-lang/rust#47949; Miri's leak check found it here).
                drop((rest, output, f));
                return Err(e);
            }
        }
    }
    drop((rest, f));
    for (i, fut) in futures.iter().enumerate() {
        if let Err(e) = fut.result_deadline(deadline) {
            // From `i` on: on a timeout, the awaited chunk too (Python's
            // `_result_or_cancel`); a finished future ignores the cancel.
            cancel_all(&futures[i..]);
            // As above: the values written (user drops) go while `e` is a local.
            drop(output);
            return Err(e);
        }
    }
    drop(futures);
    let output = Arc::try_unwrap(output).map_err(|_| {
        Error::InvalidState(InvalidState::new(
            "map_vec: the executor kept a chunk after completing its future",
        ))
    })?;
    output.into_vec().map_err(|_| {
        Error::InvalidState(InvalidState::new(
            "map_vec: the executor completed a chunk's future without running it",
        ))
    })
}
