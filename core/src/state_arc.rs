//! [`StateArc`]: the reference-counted pointer that holds a future's shared state, with its
//! memory carved from small per-thread slabs.
//!
//! # Why not `Arc`
//!
//! Every submit allocates one future state on the submitting thread; the last handle frees
//! it, usually on the same thread, often long after. A program that submits 100,000 tasks
//! and then collects the results keeps 100,000 small blocks alive and frees them together.
//! glibc's malloc then merges them (`malloc_consolidate`, triggered by the next large
//! allocation, such as the `Vec` the next batch of futures is collected into) and serves
//! every later state from its slow path: measured under callgrind, about 390 of the
//! submitting thread's 640 instructions per task of W1 were malloc and free.
//!
//! Here a thread allocates states by bumping a pointer through a slab of its own (about
//! 1 KiB of same-sized slots, one allocation), and a slab goes back to the allocator in one
//! free when its last slot is released, from whichever thread. Allocation and free cost a
//! few instructions and one atomic decrement; malloc sees one call per slab.
//!
//! # What it costs in memory
//!
//! A slot is not reused on its own: a slab's memory is returned when *all* of its slots are
//! released. Futures are usually dropped in batches or in the order they were made, and
//! then slabs empty as fast as single blocks would; a program that keeps one future of
//! every slab alive for long holds a whole slab (about 1 KiB) per kept future. So does a
//! program whose threads each make one long-lived future and little else (a thread per
//! task): that future's slab is the thread's own. Each thread also keeps its current slab
//! of each size alive (at most 16 slabs, ~1 KiB each, whatever part of them is still
//! unused), until it hands out their last slots or exits; a thread that never runs its
//! thread-local destructors (the other threads of a process, in a child forked from it)
//! never gives those back. States larger than 256 bytes with the 16-byte header (`T` up to
//! 240 bytes on 64-bit targets go into slabs), or aligned to more than 16, are allocated on
//! their own, as `Arc` would.
//!
//! # Safety argument
//!
//! 1. A block holds an `ArcInner<T>` written by [`StateArc::new`] and is freed exactly once:
//!    by the handle whose decrement of `strong` took it from 1 to 0 (the others saw a larger
//!    value and touched nothing after their decrement). That handle drops `data` in place
//!    and then gives the slot back ([`release`]): the slab is freed by the release that
//!    takes its `live` count to 0.
//! 2. A slab's `live` counts its slots not yet released: handed out, or still unused in
//!    the owning thread's cache. The owner forgets a slab as soon as it hands out the last
//!    slot (so it never touches a slab every slot of which may be released), and releases
//!    the unused slots of its current slabs when the thread exits.
//! 3. Slots of a class are `class_size` bytes apart from an `ALIGN`-aligned base, and
//!    `class_size` is a multiple of `ALIGN` not smaller than the state's size, so every
//!    slot is aligned and large enough for the `ArcInner<T>` it holds.
//! 4. `StateArc<T>` is `Send`/`Sync` exactly when `Arc<T>` is: `T: Send + Sync`.
//!
//! Under `cfg(loom)` this is loom's `Arc` behind the same methods: the loom models check how
//! `future.rs` uses the handles, not this module's own atomics (`strong`, `live`), which
//! this module's tests check under Miri (`.ci/miri.sh`), leaks included.

#[cfg(not(loom))]
pub(crate) use imp::StateArc;
#[cfg(loom)]
pub(crate) use model::StateArc;

#[cfg(not(loom))]
mod imp {
    use std::alloc::{self, Layout};
    use std::cell::Cell;
    use std::marker::PhantomData;
    use std::ops::Deref;
    use std::ptr::{self, NonNull};
    use std::sync::atomic::{fence, AtomicUsize, Ordering};

    /// Slot alignment, and the step between slot sizes.
    const ALIGN: usize = 16;
    /// The largest state (`ArcInner`: with its counter and slab pointer) served from slabs.
    const MAX_SLOT: usize = 256;
    /// The slot bytes of one slab (the slab holds `SLAB_BYTES / slot size` slots, at least 1).
    const SLAB_BYTES: usize = 1024;

    const CLASSES: usize = MAX_SLOT / ALIGN;

    /// The head of a slab; its slots follow, from offset `HEADER`.
    #[repr(C, align(16))]
    pub(super) struct Slab {
        /// Slots not yet released (safety argument, point 2).
        live: AtomicUsize,
        /// The whole block's size, to free it with the layout it was allocated with.
        bytes: usize,
    }

    const HEADER: usize = std::mem::size_of::<Slab>();
    const _: () = assert!(HEADER % ALIGN == 0 && std::mem::align_of::<Slab>() == ALIGN);

    #[repr(C)]
    struct ArcInner<T> {
        strong: AtomicUsize,
        /// The slab this block is a slot of; null for a block of its own.
        slab: *const Slab,
        data: T,
    }

    /// A thread's current slab of one slot size: the next slot to hand out and the end of
    /// the slots. `next == end` means none (a full slab is forgotten: point 2).
    #[derive(Clone, Copy)]
    struct Current {
        next: *mut u8,
        end: *mut u8,
        slab: *const Slab,
    }

    const NONE: Current = Current {
        next: ptr::null_mut(),
        end: ptr::null_mut(),
        slab: ptr::null(),
    };

    struct Cache([Cell<Current>; CLASSES]);

    impl Drop for Cache {
        fn drop(&mut self) {
            // The thread exits: give back the slots it never handed out (point 2).
            for (class, cur) in self.0.iter().enumerate() {
                give_back_unused(cur.get(), class_size(class));
            }
        }
    }

    /// Releases the slots a thread's current slab (of slots `size` bytes apart) has not
    /// handed out, as the thread forgets that slab; nothing for `NONE`.
    fn give_back_unused(cur: Current, size: usize) {
        if cur.next != cur.end {
            let unused = (cur.end as usize - cur.next as usize) / size;
            // SAFETY: the slab is live: its unused slots are counted in `live` and have not
            // been released (the thread forgets the slab now, so it releases them once).
            unsafe { release(cur.slab, unused) };
        }
    }

    std::thread_local! {
        static CACHE: Cache = const { Cache([const { Cell::new(NONE) }; CLASSES]) };
    }

    fn class_size(class: usize) -> usize {
        (class + 1) * ALIGN
    }

    /// Gives `n` slots of `slab` back; the release that takes `live` to 0 frees the slab.
    ///
    /// # Safety
    ///
    /// `slab` is live and `n` of its counted slots are the caller's, never released before.
    unsafe fn release(slab: *const Slab, n: usize) {
        // Release: this thread's uses of the slots (the state's drop) happen before the
        // free; the Acquire fence on the last release makes every other thread's uses
        // happen before it too (the same pairing as `Arc`'s drop).
        // SAFETY: the caller's slots keep the slab alive until this decrement.
        if unsafe { &(*slab).live }.fetch_sub(n, Ordering::Release) == n {
            fence(Ordering::Acquire);
            // SAFETY: the last slot is released; nobody else refers to the slab. `bytes`
            // and `ALIGN` are the layout it was allocated with (in `refill`).
            unsafe {
                let bytes = (*slab).bytes;
                alloc::dealloc(
                    slab as *mut u8,
                    Layout::from_size_align_unchecked(bytes, ALIGN),
                );
            }
        }
    }

    /// A new slab of `class`'s slots, of which the first is handed out; the rest become
    /// the thread's current slab.
    #[cold]
    fn refill(cur: &Cell<Current>, class: usize) -> (*mut u8, *const Slab) {
        let size = class_size(class);
        let slots = (SLAB_BYTES / size).max(1);
        let bytes = HEADER + slots * size;
        let layout = Layout::from_size_align(bytes, ALIGN).expect("a slab's layout is valid");
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { alloc::alloc(layout) };
        if base.is_null() {
            alloc::handle_alloc_error(layout);
        }
        // A `#[global_allocator]` that itself made states of this class (inside `alloc`
        // above) may have refilled `cur` meanwhile: give that slab's unused slots back
        // before `cur` forgets it, or the slab would never be freed.
        give_back_unused(cur.get(), size);
        let slab = base as *mut Slab;
        // SAFETY: `base` is a fresh block of `bytes` bytes, aligned for `Slab`.
        unsafe {
            slab.write(Slab {
                live: AtomicUsize::new(slots),
                bytes,
            })
        };
        // SAFETY: the slots lie within the block (`HEADER + slots * size == bytes`).
        let first = unsafe { base.add(HEADER) };
        // SAFETY: one past the block's end, which `add` allows.
        let end = unsafe { base.add(bytes) };
        // SAFETY: `first + size <= end`, as `slots >= 1`.
        let next = unsafe { first.add(size) };
        cur.set(if next == end {
            NONE
        } else {
            Current { next, end, slab }
        });
        (first, slab)
    }

    /// A slot for a state of `layout`, and its slab; `None` if states of that layout are
    /// allocated on their own (too large, over-aligned, or the thread is exiting).
    #[inline]
    fn slot(layout: Layout) -> Option<(*mut u8, *const Slab)> {
        if layout.size() > MAX_SLOT || layout.align() > ALIGN {
            return None;
        }
        let class = (layout.size() - 1) / ALIGN;
        CACHE
            .try_with(|cache| {
                let cur = &cache.0[class];
                let c = cur.get();
                if c.next == c.end {
                    return refill(cur, class);
                }
                // SAFETY: `next < end`, both in the current slab; a slot is
                // `class_size(class)` bytes.
                let after = unsafe { c.next.add(class_size(class)) };
                cur.set(if after == c.end {
                    NONE // the last slot: forget the slab (point 2)
                } else {
                    Current { next: after, ..c }
                });
                (c.next, c.slab)
            })
            .ok()
    }

    /// A shared, reference-counted `T` (see the module doc): `Arc`'s `new`, `clone`,
    /// `Deref`, `get_mut` and `ptr_eq`, nothing more (no weak references).
    pub(crate) struct StateArc<T> {
        ptr: NonNull<ArcInner<T>>,
        _owns: PhantomData<ArcInner<T>>,
    }

    // SAFETY: point 4 of the safety argument: handles on several threads share `&T` (needs
    // `T: Sync`), and the last one drops `T` wherever it is (needs `T: Send`).
    unsafe impl<T: Send + Sync> Send for StateArc<T> {}
    // SAFETY: as for `Send`.
    unsafe impl<T: Send + Sync> Sync for StateArc<T> {}
    // As `Arc`: moving the handle does not move the state.
    impl<T> Unpin for StateArc<T> {}
    // As `Arc`: a handle only ever gives out `&T`.
    impl<T: std::panic::RefUnwindSafe> std::panic::UnwindSafe for StateArc<T> {}

    impl<T> StateArc<T> {
        /// A new state with `handles` handles counted (1 or 2), returned as the first
        /// handle; the caller makes the others by copying the pointer (see [`Self::pair`]).
        #[inline]
        fn with_count(data: T, handles: usize) -> Self {
            let layout = Layout::new::<ArcInner<T>>();
            let (mem, slab) = match slot(layout) {
                Some(s) => s,
                None => {
                    // SAFETY: `ArcInner<T>` has a non-zero size (it holds a counter).
                    let p = unsafe { alloc::alloc(layout) };
                    if p.is_null() {
                        alloc::handle_alloc_error(layout);
                    }
                    (p, ptr::null())
                }
            };
            let inner = mem as *mut ArcInner<T>;
            // SAFETY: `mem` is a free slot or block, large and aligned enough for an
            // `ArcInner<T>` (point 3).
            unsafe {
                inner.write(ArcInner {
                    strong: AtomicUsize::new(handles),
                    slab,
                    data,
                })
            };
            StateArc {
                // SAFETY: `mem` is not null (checked, or a slot of a live slab).
                ptr: unsafe { NonNull::new_unchecked(inner) },
                _owns: PhantomData,
            }
        }

        /// `Arc::new`.
        #[inline]
        pub(crate) fn new(data: T) -> Self {
            Self::with_count(data, 1)
        }

        /// Two handles to a new state, counted at once (one atomic increment less than
        /// `new` and `clone`).
        #[inline]
        pub(crate) fn pair(data: T) -> (Self, Self) {
            let a = Self::with_count(data, 2);
            let b = StateArc {
                ptr: a.ptr,
                _owns: PhantomData,
            };
            (a, b)
        }

        fn inner(&self) -> &ArcInner<T> {
            // SAFETY: this handle keeps the block alive (point 1).
            unsafe { self.ptr.as_ref() }
        }

        /// `Arc::get_mut`: the state, if this is the only handle.
        #[inline]
        pub(crate) fn get_mut(this: &mut Self) -> Option<&mut T> {
            // Acquire: pairs with the Release decrements of handles dropped on other
            // threads, so their uses of the state happen before ours (as `Arc::get_mut`).
            if this.inner().strong.load(Ordering::Acquire) == 1 {
                // SAFETY: the only handle, borrowed mutably: nobody else can reach `data`.
                Some(unsafe { &mut (*this.ptr.as_ptr()).data })
            } else {
                None
            }
        }

        /// `Arc::ptr_eq`.
        #[inline]
        pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
            a.ptr == b.ptr
        }

        /// Drops the state and gives its memory back: the last handle's drop.
        ///
        /// # Safety
        ///
        /// No other handle exists, and this is called once (point 1).
        #[inline(never)]
        unsafe fn drop_slow(&mut self) {
            /// Gives the memory back even if the state's drop (user code: the value)
            /// unwinds.
            struct Free<T>(*mut ArcInner<T>);
            impl<T> Drop for Free<T> {
                fn drop(&mut self) {
                    // SAFETY: the block is live until here; `slab` was set by `new`.
                    let slab = unsafe { (*self.0).slab };
                    if slab.is_null() {
                        // SAFETY: a block of its own, allocated with this layout in `new`.
                        unsafe { alloc::dealloc(self.0 as *mut u8, Layout::new::<ArcInner<T>>()) };
                    } else {
                        // SAFETY: this slot is counted in `live` and released once.
                        unsafe { release(slab, 1) };
                    }
                }
            }
            let inner = self.ptr.as_ptr();
            let _free = Free(inner);
            // SAFETY: the last handle; `data` is initialised and dropped once.
            unsafe { ptr::drop_in_place(&mut (*inner).data) };
        }
    }

    impl<T> Clone for StateArc<T> {
        #[inline]
        fn clone(&self) -> Self {
            // Relaxed: a new handle is made from an existing one, which keeps the state
            // alive meanwhile; no other memory is published (as `Arc::clone`).
            if self.inner().strong.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
                std::process::abort();
            }
            StateArc {
                ptr: self.ptr,
                _owns: PhantomData,
            }
        }
    }

    impl<T> Deref for StateArc<T> {
        type Target = T;
        #[inline]
        fn deref(&self) -> &T {
            &self.inner().data
        }
    }

    impl<T> Drop for StateArc<T> {
        #[inline]
        fn drop(&mut self) {
            // Release: this handle's uses of the state happen before the drop of the last
            // handle; the Acquire fence there completes the pairing (as `Arc`'s drop).
            if self.inner().strong.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            fence(Ordering::Acquire);
            // SAFETY: the decrement took the count to 0: this is the last handle.
            unsafe { self.drop_slow() }
        }
    }

    /// The slab a state lives in (null: a block of its own), and that slab's `live` count.
    #[cfg(test)]
    pub(super) fn slab_of<T>(this: &StateArc<T>) -> (usize, usize) {
        let slab = this.inner().slab;
        if slab.is_null() {
            return (0, 0);
        }
        // SAFETY: `this` holds a slot of the slab, which keeps it alive.
        (
            slab as usize,
            unsafe { &(*slab).live }.load(Ordering::Relaxed),
        )
    }
}

#[cfg(loom)]
mod model {
    use std::ops::Deref;

    /// Loom's `Arc` behind [`StateArc`]'s methods.
    pub(crate) struct StateArc<T>(loom::sync::Arc<T>);

    impl<T> StateArc<T> {
        pub(crate) fn new(data: T) -> Self {
            StateArc(loom::sync::Arc::new(data))
        }
        pub(crate) fn pair(data: T) -> (Self, Self) {
            let a = loom::sync::Arc::new(data);
            (StateArc(a.clone()), StateArc(a))
        }
        pub(crate) fn get_mut(this: &mut Self) -> Option<&mut T> {
            loom::sync::Arc::get_mut(&mut this.0)
        }
        pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
            loom::sync::Arc::ptr_eq(&a.0, &b.0)
        }
    }

    impl<T> Clone for StateArc<T> {
        fn clone(&self) -> Self {
            StateArc(self.0.clone())
        }
    }

    impl<T> Deref for StateArc<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Barrier};
    use std::thread;
    use std::time::Duration;

    use super::imp::slab_of;
    use super::StateArc;

    /// Counts drops, to check each state is dropped exactly once.
    struct Counted<'a>(&'a AtomicUsize, u64);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn values_survive_and_drop_once_across_slabs() {
        let drops = AtomicUsize::new(0);
        let handles: Vec<_> = (0..1000)
            .map(|i| StateArc::new(Counted(&drops, i)))
            .collect();
        let clones: Vec<_> = handles.iter().step_by(3).cloned().collect();
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(h.1, i as u64);
        }
        drop(handles);
        assert_eq!(drops.load(Ordering::Relaxed), 1000 - clones.len());
        for (k, c) in clones.iter().enumerate() {
            assert_eq!(c.1, 3 * k as u64);
        }
        drop(clones);
        assert_eq!(drops.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn get_mut_only_for_the_sole_handle() {
        let (mut a, b) = StateArc::pair(5u64);
        assert!(StateArc::get_mut(&mut a).is_none());
        assert!(StateArc::ptr_eq(&a, &b));
        drop(b);
        *StateArc::get_mut(&mut a).unwrap() += 1;
        assert_eq!(*a, 6);
        assert!(!StateArc::ptr_eq(&a, &StateArc::new(6)));
    }

    #[test]
    fn slots_are_aligned_and_distinct_for_every_size() {
        // One size per class, and past the largest (a block of its own).
        macro_rules! check {
            ($($n:literal)*) => {$(
                let v: Vec<_> = (0..100).map(|i| StateArc::new([i as u8; $n])).collect();
                for (i, s) in v.iter().enumerate() {
                    assert_eq!((&**s as *const [u8; $n] as usize) % std::mem::align_of::<usize>(), 0);
                    assert!(s.iter().all(|&b| b == i as u8), "size {}", $n);
                }
            )*};
        }
        check!(1 8 16 24 40 100 200 232 240 241 300 4096);
        // A state aligned to 16 (the slots' alignment) lands on 16-byte boundaries.
        #[repr(align(16))]
        struct A16([u8; 40]);
        let v: Vec<_> = (0..100).map(|i| StateArc::new(A16([i; 40]))).collect();
        for (i, s) in v.iter().enumerate() {
            assert_eq!((&**s as *const A16 as usize) % 16, 0);
            assert!(
                slab_of(s).0 != 0,
                "a 16-aligned state of 40 bytes is served from a slab"
            );
            assert!(s.0.iter().all(|&b| b == i as u8));
        }
        let big: Vec<_> = (0..10).map(|i| StateArc::new([i as u128; 64])).collect();
        assert!(big.iter().enumerate().all(|(i, b)| b[63] == i as u128));
    }

    #[test]
    fn a_panicking_drop_still_gives_the_slot_back() {
        /// Panics when dropped once armed. Its state is in the same size class as a
        /// `u64`'s.
        struct Bomb(bool);
        impl Drop for Bomb {
            fn drop(&mut self) {
                if self.0 {
                    panic!("bomb");
                }
            }
        }
        // A bomb in the same slab as a keeper (they are made one after the other, so in
        // different slabs only if the keeper took a slab's last slot).
        let (keeper, bomb) = loop {
            let keeper = StateArc::new(0u64);
            let mut bomb = StateArc::new(Bomb(false));
            if slab_of(&keeper).0 != 0 && slab_of(&keeper).0 == slab_of(&bomb).0 {
                StateArc::get_mut(&mut bomb).unwrap().0 = true;
                break (keeper, bomb);
            }
        };
        let live = slab_of(&keeper).1;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(bomb)));
        assert!(r.is_err());
        // The bomb's slot was released although its drop unwound.
        assert_eq!(slab_of(&keeper).1, live - 1);
    }

    /// States made on one thread and dropped on others, in every order, while the making
    /// thread exits: each is dropped once and reads back what was written.
    #[test]
    fn cross_thread_release_and_thread_exit() {
        // Fewer under Miri (CI runs this module there), which is ~1000× slower.
        const ROUNDS: usize = if cfg!(miri) { 10 } else { 50 };
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<Vec<StateArc<(Arc<AtomicUsize>, usize)>>>();
        let makers: Vec<_> = (0..4)
            .map(|t| {
                let tx = tx.clone();
                let drops = drops.clone();
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let v: Vec<_> = (0..37)
                            .map(|i| StateArc::new((drops.clone(), t * 100_000 + round * 100 + i)))
                            .collect();
                        tx.send(v).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let barrier = Arc::new(Barrier::new(2));
        let (a, b) = mpsc::channel::<Vec<StateArc<(Arc<AtomicUsize>, usize)>>>();
        let other = {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut n = 0;
                while let Ok(v) = b.recv_timeout(Duration::from_secs(30)) {
                    n += v.len();
                    drop(v);
                }
                n
            })
        };
        barrier.wait();
        let mut seen = 0;
        for (k, mut v) in rx.iter().enumerate() {
            for s in &v {
                let id = s.1;
                assert!(id % 100 < 37 && (id / 100) % 1000 < ROUNDS, "{id}");
            }
            seen += v.len();
            if k % 2 == 0 {
                // Half dropped here (in reverse), half on the other thread.
                while v.pop().is_some() {}
            } else {
                a.send(v).unwrap();
            }
        }
        drop(a);
        for m in makers {
            m.join().unwrap();
        }
        let there = other.join().unwrap();
        assert_eq!(seen, 4 * ROUNDS * 37);
        assert!(there > 0);
        // Every state's `Arc<AtomicUsize>` clone was dropped: only ours is left.
        assert_eq!(Arc::strong_count(&drops), 1);
    }
}
