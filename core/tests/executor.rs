//! The executor traits and the pieces executors are built from: `InlineExecutor`, `Task`,
//! `fallible`, `MapChunk`, and code written once over `Submit`.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use cfutures_core::{
    fallible, ChunkOutput, Executor, Future, InlineExecutor, MapChunk, Submit, SubmitError, Task,
    TaskError,
};

#[test]
fn inline_executor_runs_on_the_callers_thread() {
    let ex = InlineExecutor::new();
    let me = thread::current().id();
    let f = ex.submit(move || thread::current().id() == me).unwrap();
    assert!(f.done());
    assert!(*f.result().unwrap());
}

#[test]
fn inline_executor_accepts_non_send_tasks() {
    let ex = InlineExecutor::new();
    let rc = Rc::new(20);
    let f = ex.submit(move || *rc + 1).unwrap();
    assert_eq!(*f.result().unwrap(), 21);
}

#[test]
fn inline_executor_catches_panics() {
    let ex = InlineExecutor::new();
    let f = ex.submit(|| -> u8 { panic!("inline panic") }).unwrap();
    let e = f.exception().unwrap().expect("failed");
    assert_eq!(e.panic_message(), Some("inline panic"));
    // The executor is fine afterwards.
    assert_eq!(*ex.submit(|| 1).unwrap().result().unwrap(), 1);
}

#[test]
fn inline_executor_shutdown_refuses_new_tasks() {
    let ex = InlineExecutor::new();
    assert!(!ex.is_shutdown());
    ex.shutdown(true, false);
    assert!(ex.is_shutdown());
    ex.shutdown(false, true); // idempotent
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let err = ex
        .submit(move || {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap_err();
    assert!(err.is_shutdown());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn executor_is_object_safe_and_forwards_through_pointers() {
    let ex = Arc::new(InlineExecutor::new());
    let boxed: Box<dyn Executor> = Box::new(InlineExecutor::new());
    assert!(!boxed.is_shutdown());
    boxed.shutdown(true, false);
    assert!(boxed.is_shutdown());

    fn submit_via<E: Submit<fn() -> u8>>(e: E) -> Future<u8> {
        e.submit((|| 7) as fn() -> u8).unwrap()
    }
    assert_eq!(*submit_via(&*ex).result().unwrap(), 7);
    assert_eq!(*submit_via(ex.clone()).result().unwrap(), 7);
    assert_eq!(
        *submit_via(Box::new(InlineExecutor::new()))
            .result()
            .unwrap(),
        7
    );
    assert_eq!(*submit_via(&ex).result().unwrap(), 7);
}

/// Written once over `Submit`: what `map` does, for any executor.
fn map_all<E, F, A, R>(ex: &E, f: F, items: Vec<A>, chunk: usize) -> Vec<Result<R, String>>
where
    E: Submit<MapChunk<F, A>>,
    F: Fn(A) -> R,
    A: Clone,
{
    let f = Arc::new(f);
    let futures: Vec<Future<ChunkOutput<R>>> = items
        .chunks(chunk)
        .map(|c| ex.submit(MapChunk::new(f.clone(), c.to_vec())).unwrap())
        .collect();
    futures
        .into_iter()
        .flat_map(|fut| fut.into_result().expect("chunk ran"))
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn map_chunk_isolates_each_items_panic() {
    let ex = InlineExecutor::new();
    let line = line!() + 5; // the `panic!` below: each item's error says where it panicked
    let out = map_all(
        &ex,
        |x: u32| {
            if x % 3 == 0 {
                panic!("item {x} failed")
            }
            x * 10
        },
        (1..=7).collect(),
        3,
    );
    assert_eq!(
        out,
        vec![
            Ok(10),
            Ok(20),
            Err(format!(
                "task panicked at {}:{line}:17: item 3 failed",
                file!()
            )),
            Ok(40),
            Ok(50),
            Err(format!(
                "task panicked at {}:{line}:17: item 6 failed",
                file!()
            )),
            Ok(70),
        ]
    );
}

#[test]
fn map_chunk_accessors() {
    let f = Arc::new(|x: u8| x + 1);
    let c = MapChunk::new(f.clone(), vec![1, 2]);
    assert_eq!(c.items(), &[1, 2]);
    assert!(Arc::ptr_eq(c.function(), &f));
    let (g, items) = c.into_parts();
    assert!(Arc::ptr_eq(&g, &f));
    assert_eq!(items, vec![1, 2]);
    let empty = MapChunk::new(f, Vec::new()).run().unwrap();
    assert!(empty.is_empty());
}

#[test]
fn fallible_err_fails_the_future() {
    let ex = InlineExecutor::new();
    let ok = ex.submit(fallible(|| "42".parse::<u32>())).unwrap();
    assert_eq!(*ok.result().unwrap(), 42);
    assert!(ok.exception().unwrap().is_none());

    let bad = ex.submit(fallible(|| "x".parse::<u32>())).unwrap();
    let e = bad.exception().unwrap().expect("failed");
    assert!(e.is_error());
    assert!(e.downcast_ref::<std::num::ParseIntError>().is_some());
    assert!(bad.result().unwrap_err().is_failed());

    let io = ex
        .submit(fallible(|| -> Result<(), std::io::Error> {
            Err(std::io::Error::other("no disk"))
        }))
        .unwrap();
    assert_eq!(io.exception().unwrap().unwrap().to_string(), "no disk");

    let s = ex
        .submit(fallible(|| -> Result<u8, String> {
            Err("plain string".into())
        }))
        .unwrap();
    assert_eq!(s.exception().unwrap().unwrap().to_string(), "plain string");
}

#[test]
fn a_custom_task_type_can_fail() {
    struct Div(u32, u32);
    impl Task for Div {
        type Output = u32;
        fn run(self) -> Result<u32, TaskError> {
            self.0
                .checked_div(self.1)
                .ok_or_else(|| TaskError::msg("division by zero"))
        }
    }
    let ex = InlineExecutor::new();
    assert_eq!(*ex.submit(Div(9, 3)).unwrap().result().unwrap(), 3);
    let f = ex.submit(Div(1, 0)).unwrap();
    assert_eq!(
        f.exception().unwrap().unwrap().to_string(),
        "division by zero"
    );
}

#[test]
fn closures_are_tasks() {
    assert_eq!((|| 5).run().unwrap(), 5);
    let s = String::from("moved");
    assert_eq!((move || s).run().unwrap(), "moved");
}

#[test]
fn submit_error_from_a_custom_executor() {
    /// A broken executor: refuses everything.
    struct Refuser;
    impl Executor for Refuser {
        fn shutdown(&self, _: bool, _: bool) {}
        fn is_shutdown(&self) -> bool {
            true
        }
    }
    impl<T: Task> Submit<T> for Refuser {
        fn submit(&self, _: T) -> Result<Future<T::Output>, SubmitError> {
            Err(SubmitError::Broken(cfutures_core::Broken::new("refuser")))
        }
    }
    let e = Refuser.submit(|| 1).unwrap_err();
    assert!(e.is_broken());
}
