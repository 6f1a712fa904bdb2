//! Deadlock detection: the wait-for relation between threads that run futures and the
//! futures they park on (see "Deadlocks" in [`crate::blocking`]).
//!
//! # The two halves
//!
//! * **Who runs what** — per thread, a stack of [`Frame`]s, one per future whose task this
//!   thread is running ([`Promise::run_then`](crate::Promise::run_then) pushes one; a task
//!   run inline inside another pushes a second). The frames live on the thread's own
//!   stack, linked through `parent`, with the top in a thread-local: entering one is a
//!   thread-local read and write, nothing shared. A frame is *released* (its id zeroed)
//!   just before the future's outcome is published, so a thread running done-callbacks no
//!   longer counts as running it.
//! * **Who waits on what** — the [`Graph`], one per process under one mutex, holds a node
//!   for each thread that is parked (or about to park) in [`block_on`](crate::blocking::block_on)
//!   while it runs at least one future: the futures it runs (copied from its frames) and
//!   what it waits on (one future, or a [`WaitSet`] listed on demand). Only the park path
//!   touches it: a thread that does not run a future, or does not park, never does.
//!
//! # The rule
//!
//! A parked node is *stuck* if its wait can never end: an `All` wait (one future, or
//! `wait(ALL_COMPLETED)`) is stuck if one of its futures is run by a stuck node; an `Any`
//! wait (`as_completed`, `wait(FIRST_COMPLETED)`) if all of them are. A future that is queued,
//! or run by a thread that is not parked, can still complete. The stuck nodes are the
//! greatest set closed under that rule (the AND-OR model's knots and cycles).
//!
//! The graph never holds a stuck node: each registration checks, under the lock, whether
//! the new node is stuck, and if so refuses it — that wait fails with [`Deadlock`]. A node
//! can only become stuck when another thread parks (a parked thread's frames and wait do
//! not change, and a node leaving only frees others), so the registration that closes a
//! cycle is the one that sees it, and only that one: two threads closing a cycle at the same
//! moment take the lock one after the other, and only the second sees a cycle.
//!
//! # Lifetimes of what nodes point to
//!
//! A node keeps a pointer to its thread's [`WaitSet`] (so that a large wait set is listed
//! only when a search reaches it, not copied at every park). The node is removed, under the
//! lock, before [`block_on`](crate::blocking::block_on) returns or unwinds (its
//! [`Registration`] guard), and the wait set outlives that call; the graph lists a wait set
//! only under the lock. So the pointer is valid whenever it is used.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, LazyLock, Mutex};

use crate::error::{Deadlock, WaitLink};
use crate::sync;
use crate::waiter::FutureId;

/// The futures a parked thread waits on, listed on demand: see
/// [`WaitFor`](crate::blocking::WaitFor).
///
/// Listed only while the waiting thread is inside [`block_on`](crate::blocking::block_on),
/// only if it runs a future, and only when a cycle search reaches it — under a process-wide
/// lock, possibly from another thread: keep it cheap, and never block or wait in it. Any
/// closure `Fn(&mut dyn FnMut(FutureId) -> bool) + Sync` is one.
///
/// # Examples
///
/// ```
/// use cfutures_core::blocking::{self, WaitFor};
/// use cfutures_core::{pending, FutureId};
/// use std::time::Duration;
///
/// let (_p1, a) = pending::<u32>();
/// let (_p2, b) = pending::<u32>();
/// let ids = [a.id(), b.id()];
/// let set = |visit: &mut dyn FnMut(FutureId) -> bool| {
///     for id in ids {
///         if !visit(id) {
///             break;
///         }
///     }
/// };
/// // Wait for either, at most 1 ms (a real waiter also registers to be woken).
/// let done = blocking::block_on(
///     blocking::deadline_after(Duration::from_millis(1)),
///     WaitFor::Any(&set),
///     || a.done() || b.done(),
///     || true,
///     || {},
/// );
/// assert_eq!(done, Ok(false));
/// ```
pub trait WaitSet: Sync {
    /// Calls `visit` with each future waited on, in any order, until it returns `false`.
    fn each(&self, visit: &mut dyn FnMut(FutureId) -> bool);
}

impl<F> WaitSet for F
where
    F: Fn(&mut dyn FnMut(FutureId) -> bool) + Sync,
{
    fn each(&self, visit: &mut dyn FnMut(FutureId) -> bool) {
        self(visit)
    }
}

// ----- who runs what -------------------------------------------------------------------

/// One future whose task this thread is running; see the module doc.
pub(crate) struct Frame {
    /// The future's id; 0 once released.
    id: Cell<usize>,
    /// The task's name (see [`Named`](crate::Named)), or null: a pointer to an `Arc<str>`
    /// owned by the `Named` task's `run`, which resets it before that value goes away.
    name: Cell<*const Arc<str>>,
    /// The frame that was innermost before this one (set by [`Frame::enter`]). A `Cell`, so
    /// that setting it through `&self` leaves the pointer `TOP` holds to this frame valid
    /// (a write through `&mut self` after taking that pointer would invalidate it).
    parent: Cell<*const Frame>,
}

sync::thread_local! {
    /// The innermost frame of this thread, or null. Always null or the address of a live
    /// `Frame` on this thread's stack: [`Frame::enter`] sets it, and its guard, which the
    /// frame outlives, restores the previous value (on unwinding too).
    static TOP: Cell<*const Frame> = const { Cell::new(ptr::null()) };
}

impl Frame {
    /// A frame for future `id`.
    pub(crate) fn new(id: FutureId) -> Self {
        Frame {
            id: Cell::new(id.0),
            name: Cell::new(ptr::null()),
            parent: Cell::new(ptr::null()),
        }
    }

    /// Makes this the thread's innermost frame until the guard drops.
    pub(crate) fn enter(&self) -> Entered<'_> {
        let this: *const Frame = self;
        self.parent.set(TOP.with(|t| t.replace(this)));
        Entered(self)
    }
}

/// Pops a [`Frame`] (restores the thread's previous innermost frame) when dropped.
pub(crate) struct Entered<'a>(&'a Frame);

impl Entered<'_> {
    /// The thread no longer runs this future (its outcome is about to be published).
    pub(crate) fn release(&self) {
        self.0.id.set(0);
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        TOP.with(|t| t.set(self.0.parent.get()));
    }
}

/// Names the innermost frame's task until the guard drops (nothing if this thread runs no
/// future).
pub(crate) fn name_current(name: &Arc<str>) -> Naming {
    let top = TOP.with(|t| t.get());
    if top.is_null() {
        return Naming {
            frame: ptr::null(),
            previous: ptr::null(),
        };
    }
    // SAFETY: `TOP` is null or a live frame of this thread (see `TOP`); we only touch its
    // `Cell`s, from its own thread.
    let frame = unsafe { &*top };
    let previous = frame.name.replace(name as *const Arc<str>);
    Naming {
        frame: top,
        previous,
    }
}

/// Restores a frame's previous name when dropped: see [`name_current`]. Must drop before
/// the name it set (the caller's local) and before the frame (the caller runs inside it).
pub(crate) struct Naming {
    frame: *const Frame,
    previous: *const Arc<str>,
}

impl Drop for Naming {
    fn drop(&mut self) {
        if !self.frame.is_null() {
            // SAFETY: the frame was this thread's innermost when the guard was made, and the
            // guard drops while the task (which runs inside that frame) is still running.
            unsafe { (*self.frame).name.set(self.previous) };
        }
    }
}

/// The futures this thread runs, innermost first, with their tasks' names.
fn held_by_this_thread() -> Vec<(usize, Option<Arc<str>>)> {
    let mut held = Vec::new();
    let mut f = TOP.with(|t| t.get());
    while !f.is_null() {
        // SAFETY: `TOP` and every `parent` below it are live frames of this thread (each
        // frame outlives the frames entered after it, which point to it).
        let frame = unsafe { &*f };
        let id = frame.id.get();
        if id != 0 {
            let name = frame.name.get();
            // SAFETY: a non-null name points to the `Arc<str>` of a `Named` task still
            // running in this frame (see `Naming`).
            let name = (!name.is_null()).then(|| unsafe { (*name).clone() });
            held.push((id, name));
        }
        f = frame.parent.get();
    }
    held
}

// ----- who waits on what ---------------------------------------------------------------

/// What a node waits on.
enum Targets {
    One(usize),
    All(&'static dyn WaitSet),
    Any(&'static dyn WaitSet),
}

/// What a registering thread waits on (the public side is
/// [`WaitFor`](crate::blocking::WaitFor)).
pub(crate) enum Wait<'a> {
    One(FutureId),
    All(&'a dyn WaitSet),
    Any(&'a dyn WaitSet),
}

struct Node {
    /// The futures this thread runs, innermost first, with their tasks' names.
    held: Vec<(usize, Option<Arc<str>>)>,
    targets: Targets,
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Option<Node>>,
    free: Vec<usize>,
    /// Future id → the node (parked thread) that runs it.
    holder: HashMap<usize, usize>,
}

static GRAPH: LazyLock<Mutex<Graph>> = LazyLock::new(Mutex::default);

fn graph() -> std::sync::MutexGuard<'static, Graph> {
    // Nothing panics while the lock is held (listing a wait set is caught), so a poisoned
    // lock still guards a consistent graph.
    GRAPH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the node when dropped: see [`register`].
pub(crate) struct Registration(usize);

impl Drop for Registration {
    fn drop(&mut self) {
        graph().remove(self.0);
    }
}

/// Registers this thread, about to park on `wait`, in the wait-for graph; refuses with the
/// cycle if that wait would never end. `Ok(None)`: nothing registered (this thread runs no
/// future, so no cycle can pass through it).
pub(crate) fn register(wait: Wait<'_>) -> Result<Option<Registration>, Deadlock> {
    let held = held_by_this_thread();
    if held.is_empty() {
        return Ok(None);
    }
    let targets = match wait {
        Wait::One(id) => Targets::One(id.0),
        // SAFETY: the lifetime is erased for the graph's sake; the node is removed (by the
        // `Registration`, under the lock) before the caller's `block_on` returns, and the
        // set outlives that call (module doc).
        Wait::All(set) => Targets::All(unsafe { erase(set) }),
        // SAFETY: as above.
        Wait::Any(set) => Targets::Any(unsafe { erase(set) }),
    };
    let mut g = graph();
    let n = g.insert(Node { held, targets });
    match g.stuck_cycle(n) {
        None => Ok(Some(Registration(n))),
        Some(cycle) => {
            g.remove(n);
            Err(Deadlock::new(cycle))
        }
    }
}

/// Erases the lifetime of a wait set.
///
/// # Safety
///
/// The result must not be used after `'a` ends.
unsafe fn erase<'a>(set: &'a dyn WaitSet) -> &'static dyn WaitSet {
    // SAFETY: same layout; the caller keeps the use within `'a`.
    unsafe { std::mem::transmute::<&'a dyn WaitSet, &'static dyn WaitSet>(set) }
}

impl Graph {
    fn insert(&mut self, node: Node) -> usize {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.nodes.push(None);
                self.nodes.len() - 1
            }
        };
        for (id, _) in &node.held {
            self.holder.insert(*id, i);
        }
        self.nodes[i] = Some(node);
        i
    }

    fn remove(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            for (id, _) in &node.held {
                if self.holder.get(id) == Some(&i) {
                    self.holder.remove(id);
                }
            }
            self.free.push(i);
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("a live node")
    }

    /// Calls `visit(future, holder)` for each future node `i` waits on, with the node that
    /// runs it (if a parked thread does), until `visit` returns false.
    fn each_target(&self, i: usize, visit: &mut dyn FnMut(usize, Option<usize>) -> bool) {
        let holder = |id: usize| self.holder.get(&id).copied();
        match self.node(i).targets {
            Targets::One(id) => {
                visit(id, holder(id));
            }
            Targets::All(set) | Targets::Any(set) => {
                // A wait set is user code (`Waitable::id`): a panic there must not poison
                // the graph or unwind into a parking thread; the rest is left unlisted.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                    set.each(&mut |f| visit(f.0, holder(f.0)))
                }));
            }
        }
    }

    /// The nodes parked threads run that node `i` waits on (its successors).
    fn successors(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        self.each_target(i, &mut |_, h| {
            if let Some(h) = h {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
            true
        });
        out
    }

    /// Whether node `i` stays stuck given the stuck candidates `stuck` (see the module doc).
    fn stays_stuck(&self, i: usize, stuck: &dyn Fn(usize) -> bool) -> bool {
        match self.node(i).targets {
            Targets::One(_) | Targets::All(_) => {
                let mut any = false;
                self.each_target(i, &mut |_, h| {
                    any = h.is_some_and(stuck);
                    !any
                });
                any
            }
            Targets::Any(_) => {
                let mut all = true;
                let mut some = false;
                self.each_target(i, &mut |_, h| {
                    some = true;
                    all = h.is_some_and(stuck);
                    all
                });
                all && some
            }
        }
    }

    /// If node `start` (just inserted) is stuck, a cycle through it: the futures it passes
    /// through, each with its task's name, starting with the one `start` runs.
    fn stuck_cycle(&self, start: usize) -> Option<Vec<WaitLink>> {
        // Cheap exits first: `start` is stuck only if something it waits on is run by a
        // parked thread (all of them, for `Any`).
        if !self.stays_stuck(start, &|_| true) {
            return None;
        }
        // The nodes reachable from `start`, then the greatest stuck set among them.
        let mut reach = vec![start];
        let mut seen: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut k = 0;
        while k < reach.len() {
            let n = reach[k];
            k += 1;
            if seen.contains_key(&n) {
                continue;
            }
            let succ = self.successors(n);
            for &s in &succ {
                if !seen.contains_key(&s) {
                    reach.push(s);
                }
            }
            seen.insert(n, succ);
        }
        let mut stuck: HashSet<usize> = seen.keys().copied().collect();
        loop {
            let now = stuck.clone();
            stuck.retain(|&n| self.stays_stuck(n, &|m| now.contains(&m)));
            if stuck.len() == now.len() {
                break;
            }
        }
        if !stuck.contains(&start) {
            return None;
        }
        // Every stuck node has a path back to `start` within the stuck set (the graph held
        // no stuck node before): the shortest one, by breadth-first search.
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(n) = queue.pop_front() {
            for &s in &seen[&n] {
                if !stuck.contains(&s) {
                    continue;
                }
                if s == start {
                    last = Some(n);
                    break 'search;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(s) {
                    e.insert(n);
                    queue.push_back(s);
                }
            }
        }
        let last = last?;
        let mut path = vec![last];
        while *path.last().expect("not empty") != start {
            let p = parent[path.last().expect("not empty")];
            path.push(p);
        }
        path.reverse(); // start, n1, …, last; and last waits on start
                        // Each node is named by the future the node before it waits on.
        let mut links = Vec::with_capacity(path.len());
        for (j, &n) in path.iter().enumerate() {
            let waiter = path[(j + path.len() - 1) % path.len()];
            links.push(self.link(waiter, n));
        }
        Some(links)
    }

    /// The future of node `to` that node `from` waits on, with its task's name.
    fn link(&self, from: usize, to: usize) -> WaitLink {
        let mut future = None;
        self.each_target(from, &mut |id, h| {
            if h == Some(to) {
                future = Some(id);
            }
            future.is_none()
        });
        let held = &self.node(to).held;
        let id = future.unwrap_or(held[0].0);
        let task = held
            .iter()
            .find(|(h, _)| *h == id)
            .and_then(|(_, name)| name.clone());
        WaitLink::new(FutureId(id), task)
    }
}
