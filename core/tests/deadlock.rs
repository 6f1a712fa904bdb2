//! Wait cycles among threads running futures' tasks, without any pool: plain threads that
//! run promises with `Promise::run`, and `blocking::block_on` with each kind of wait. (The
//! thread pool's `tests/deadlock.rs` covers pools, combinators and a model.)

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use cfutures_core::blocking::{self, WaitFor};
use cfutures_core::{named, pending, Error, Future, FutureId};

const LIMIT: Duration = Duration::from_secs(10);

/// Runs `body` as the task of a new future, on a new thread.
fn spawn_task<R: Send + Sync + 'static>(
    name: &'static str,
    body: impl FnOnce() -> R + Send + 'static,
) -> (Future<R>, thread::JoinHandle<bool>) {
    let (p, f) = pending();
    let t = thread::spawn(move || p.run(named(name, body)));
    (f, t)
}

#[test]
fn two_threads_waiting_on_each_others_future() {
    let (give_a, get_a) = mpsc::channel::<Future<String>>();
    let (give_b, get_b) = mpsc::channel::<Future<String>>();
    let body = |other: mpsc::Receiver<Future<String>>| {
        move || match other.recv_timeout(LIMIT).unwrap().result() {
            Ok(v) => format!("saw: {v}"),
            Err(e) => e.to_string(),
        }
    };
    let (a, ta) = spawn_task("a", body(get_b));
    let (b, tb) = spawn_task("b", body(get_a));
    give_a.send(a.clone()).unwrap();
    give_b.send(b.clone()).unwrap();
    let (ra, rb) = (
        a.result_timeout(LIMIT).unwrap().clone(),
        b.result_timeout(LIMIT).unwrap().clone(),
    );
    assert!(ta.join().unwrap() && tb.join().unwrap());
    // One wait closed the cycle and said so; the other task saw that as its value.
    let (failed, other) = if ra.starts_with("deadlock") {
        (ra, rb)
    } else {
        (rb, ra)
    };
    assert!(failed.starts_with("deadlock: future #"), "{failed}");
    assert!(failed.contains("which waits on #"), "{failed}");
    assert_eq!(other, format!("saw: {failed}"));
}

#[test]
fn display_and_accessors() {
    let (p, f) = pending::<Option<Error>>();
    let me = f.clone();
    p.run(named("self", move || me.result().err()));
    let err = f.result().unwrap().clone().expect("a deadlock");
    assert!(err.is_deadlock() && !err.is_timeout() && !err.is_failed());
    let d = err.deadlock().unwrap();
    assert_eq!(d.cycle().len(), 1);
    assert_eq!(d.cycle()[0].future(), f.id());
    assert_eq!(d.cycle()[0].task_name(), Some("self"));
    assert_eq!(
        err.to_string(),
        format!("deadlock: future {} (task 'self') waits on itself", f.id())
    );
    assert_eq!(Error::from(d.clone()).to_string(), err.to_string());
}

#[test]
fn unnamed_tasks_are_named_by_future_only() {
    let (p, f) = pending::<String>();
    let me = f.clone();
    p.run(move || me.result().unwrap_err().to_string());
    assert_eq!(
        *f.result().unwrap(),
        format!("deadlock: future {} waits on itself", f.id())
    );
}

#[test]
fn a_thread_running_no_future_is_never_told_deadlock() {
    // The main thread runs no task: waiting here is never a cycle, whatever the task does.
    let (give, get) = mpsc::channel::<Future<u32>>();
    let (a, t) = spawn_task("a", move || {
        let me = get.recv_timeout(LIMIT).unwrap();
        me.result().copied().unwrap_or(7)
    });
    give.send(a.clone()).unwrap();
    assert_eq!(*a.result_timeout(LIMIT).unwrap(), 7);
    assert!(t.join().unwrap());
    // And `block_on` from a thread that runs nothing registers nothing.
    let (_p, never) = pending::<u32>();
    let r = blocking::block_on(
        blocking::deadline_after(Duration::from_millis(20)),
        WaitFor::One(never.id()),
        || never.done(),
        || true,
        || {},
    );
    assert_eq!(r, Ok(false));
}

/// The outcome of a 20 ms `block_on` on all / any of `targets`, from inside a (nested) task
/// on this thread.
fn block_inside(all: bool, targets: Vec<FutureId>) -> Result<bool, String> {
    let (p, f) = pending::<Result<bool, String>>();
    let set = move |visit: &mut dyn FnMut(FutureId) -> bool| {
        for id in &targets {
            if !visit(*id) {
                break;
            }
        }
    };
    p.run(move || {
        let wait_for = if all {
            WaitFor::All(&set)
        } else {
            WaitFor::Any(&set)
        };
        blocking::block_on(
            blocking::deadline_after(Duration::from_millis(20)),
            wait_for,
            || false,
            || true,
            || {},
        )
        .map_err(|d| d.to_string())
    });
    f.result().unwrap().clone()
}

#[test]
fn any_waits_are_stuck_only_if_every_future_is() {
    // This thread runs `ours`. Another thread runs `theirs` and parks on `ours`: so
    // `theirs` can complete only once our task does. `free` is a future nobody runs yet
    // (queued, say): it can complete whatever we do.
    let (ours_p, ours) = pending::<Vec<bool>>();
    let (_free_p, free) = pending::<u32>();
    let ours2 = ours.clone();
    let (theirs, t) = spawn_task("theirs", move || loop {
        match ours2.result() {
            // It parked while our probe below was parked on it: its wait closed that
            // cycle (our probe has a timeout, but counts while it waits). Try again.
            Err(e) if e.is_deadlock() => thread::yield_now(),
            r => break r.is_ok(),
        }
    });
    let theirs_id = theirs.id();
    ours_p.run(named("ours", move || {
        // Until `theirs` parks on us, waiting on it alone is not (yet) a cycle. Between
        // probes this thread waits on nothing, so `theirs` can park.
        let start = std::time::Instant::now();
        while block_inside(false, vec![theirs_id]).is_ok() {
            assert!(start.elapsed() < LIMIT, "the other task never parked");
            thread::sleep(Duration::from_millis(1));
        }
        vec![
            block_inside(false, vec![theirs_id, free.id()]).is_ok(), // any: free can
            block_inside(false, vec![theirs_id]).is_ok(),            // any: none can
            block_inside(true, vec![free.id(), theirs_id]).is_ok(),  // all: one cannot
            block_inside(true, vec![free.id()]).is_ok(),             // all: all can
        ]
    }));
    assert_eq!(*ours.result().unwrap(), [true, false, false, true]);
    assert!(t.join().unwrap());
    assert_eq!(theirs.result_timeout(LIMIT).ok(), Some(&true));
}
