//! `Error`, `TaskError`, `Broken`, `InvalidState`, `SubmitError`: predicates, conversions,
//! `Display` texts, sources, and cheap clones.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use cfutures_core::{
    panic_message, Broken, Error, InvalidState, SubmitError, TaskError, TaskOutput, WorkerDeath,
    WorkerExit,
};

#[derive(Debug)]
struct MyError {
    inner: std::io::Error,
}
impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}
impl std::error::Error for MyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner)
    }
}

#[test]
fn error_predicates_are_exclusive() {
    let all = [
        Error::Cancelled,
        Error::Timeout,
        Error::Failed(TaskError::msg("f")),
        Error::Broken(Broken::new("b")),
        Error::InvalidState(InvalidState::new("i")),
    ];
    for (i, e) in all.iter().enumerate() {
        let flags = [
            e.is_cancelled(),
            e.is_timeout(),
            e.is_failed(),
            e.is_broken(),
            e.is_invalid_state(),
        ];
        for (j, flag) in flags.iter().enumerate() {
            assert_eq!(*flag, i == j, "{e:?} predicate {j}");
        }
        assert_eq!(e.task_error().is_some(), i == 2);
    }
}

#[test]
fn error_display_texts() {
    assert_eq!(Error::Cancelled.to_string(), "the future was cancelled");
    assert_eq!(
        Error::Timeout.to_string(),
        "timed out waiting for the future"
    );
    assert_eq!(
        Error::Failed(TaskError::msg("bad input")).to_string(),
        "task failed: bad input"
    );
    assert_eq!(
        Error::Broken(Broken::new("A thread initializer failed")).to_string(),
        "A thread initializer failed"
    );
    assert_eq!(
        Error::InvalidState(InvalidState::new("FINISHED: nope")).to_string(),
        "invalid state: FINISHED: nope"
    );
}

#[test]
fn error_conversions() {
    let e: Error = TaskError::msg("t").into();
    assert!(e.is_failed());
    assert_eq!(e.clone().into_task_error().unwrap().to_string(), "t");
    assert!(Error::Timeout.into_task_error().unwrap_err().is_timeout());
    let e: Error = Broken::new("b").into();
    assert!(e.is_broken());
    let e: Error = InvalidState::new("i").into();
    assert!(e.is_invalid_state());
    let e: Error = SubmitError::Shutdown.into();
    assert!(e.is_broken());
    assert_eq!(e.to_string(), "cannot schedule new futures after shutdown");
    let e: Error = SubmitError::Broken(Broken::new("pool broke")).into();
    assert!(e.is_broken());
    assert_eq!(e.to_string(), "pool broke");
}

#[test]
fn task_error_variants_predicates_and_display() {
    let panic = TaskError::Panic {
        message: "index out of bounds".into(),
        location: Some("src/main.rs:3:5".into()),
    };
    assert!(panic.is_panic() && !panic.is_error());
    assert_eq!(panic.panic_message(), Some("index out of bounds"));
    assert_eq!(
        panic.to_string(),
        "task panicked at src/main.rs:3:5: index out of bounds"
    );
    let panic = TaskError::Panic {
        message: "oops".into(),
        location: None,
    };
    assert_eq!(panic.to_string(), "task panicked: oops");

    let err = TaskError::new(std::io::Error::other("disk full"));
    assert!(err.is_error() && !err.is_panic());
    assert_eq!(err.to_string(), "disk full");
    assert_eq!(err.panic_message(), None);

    let remote = TaskError::Remote {
        type_name: "my::Error".into(),
        message: "remote failure".into(),
    };
    assert!(remote.is_error());
    assert_eq!(remote.to_string(), "remote failure (my::Error)");
    assert!(remote.downcast_ref::<std::io::Error>().is_none());

    let died = TaskError::WorkerDied {
        pid: 1234,
        exit: WorkerExit::Signal(9),
    };
    assert!(died.is_worker_died());
    assert_eq!(
        died.to_string(),
        "worker process 1234 died while running the task: signal 9 (SIGKILL)"
    );
    assert_eq!(WorkerExit::Code(3).to_string(), "exit code 3");
    assert_eq!(WorkerExit::Signal(11).to_string(), "signal 11 (SIGSEGV)");
    assert_eq!(WorkerExit::Signal(64).to_string(), "signal 64");
    assert_eq!(WorkerExit::Unknown.to_string(), "unknown exit status");

    let limit = TaskError::TimeLimit {
        limit: Duration::from_millis(1500),
    };
    assert!(limit.is_time_limit());
    assert_eq!(limit.to_string(), "task exceeded its time limit of 1.5s");

    let codec = TaskError::Codec {
        message: "unexpected end of frame".into(),
    };
    assert!(codec.is_codec());
    assert_eq!(codec.to_string(), "encoding error: unexpected end of frame");

    for (e, n) in [(&panic, 0), (&err, 1), (&died, 2), (&limit, 3), (&codec, 4)] {
        let flags = [
            e.is_panic(),
            e.is_error(),
            e.is_worker_died(),
            e.is_time_limit(),
            e.is_codec(),
        ];
        for (j, flag) in flags.iter().enumerate() {
            assert_eq!(*flag, j == n, "{e:?} predicate {j}");
        }
    }
}

#[test]
fn quarantined_lists_each_death() {
    let deaths: Arc<[WorkerDeath]> = vec![
        WorkerDeath {
            pid: 10,
            exit: WorkerExit::Signal(11),
        },
        WorkerDeath {
            pid: 11,
            exit: WorkerExit::Code(3),
        },
    ]
    .into();
    let e = TaskError::Quarantined {
        deaths: deaths.clone(),
    };
    assert!(e.is_quarantined());
    assert!(!e.is_worker_died() && !e.is_panic() && !e.is_error() && !e.is_codec());
    assert_eq!(e.deaths(), Some(&deaths[..]));
    assert_eq!(
        e.to_string(),
        "task quarantined: the worker processes that ran it died 2 times (10: signal 11 \
         (SIGSEGV); 11: exit code 3); it is not run again"
    );
    assert_eq!(
        deaths[0].to_string(),
        "worker process 10 (signal 11 (SIGSEGV))"
    );
    assert!(TaskError::msg("x").deaths().is_none());
}

#[test]
fn with_output_is_seen_through() {
    let out = TaskOutput::new(&b"step 1\nstep 2\n"[..], 14);
    assert!(!out.is_truncated() && !out.is_empty());
    assert_eq!(out.total_len(), 14);
    let died = TaskError::WorkerDied {
        pid: 7,
        exit: WorkerExit::Signal(9),
    };
    let e = died.clone().with_output(out.clone());
    assert!(e.is_worker_died() && !e.is_panic());
    assert!(matches!(
        e.without_output(),
        TaskError::WorkerDied { pid: 7, .. }
    ));
    assert_eq!(e.output(), Some(&out));
    assert_eq!(
        e.to_string(),
        format!("{died}\n--- the last 14 of the 14 bytes the task printed ---\nstep 1\nstep 2\n")
    );
    // Attaching again replaces the output; it never nests.
    let again = e.with_output(TaskOutput::new(Vec::new(), 0));
    assert!(matches!(again, TaskError::WithOutput { ref error, .. } if error.is_worker_died()));
    assert_eq!(
        again.to_string(),
        format!("{died} (the task printed nothing)")
    );
    // Predicates and accessors look through it.
    let p = TaskError::Panic {
        message: "boom".into(),
        location: None,
    }
    .with_output(out.clone());
    assert_eq!(p.panic_message(), Some("boom"));
    let q = TaskError::new(std::io::Error::other("disk")).with_output(out.clone());
    assert!(q.downcast_ref::<std::io::Error>().is_some());
    // Display shows only the end of a long output; the output keeps it all.
    let long = TaskOutput::new(vec![b'x'; 5000], 1 << 20);
    assert!(long.is_truncated());
    let e = TaskError::msg("m").with_output(long);
    assert!(e.to_string().contains("the last 1024 of the 1048576 bytes"));
    assert_eq!(e.output().unwrap().bytes().len(), 5000);
}

#[test]
fn task_error_from_panic_payloads() {
    let p = std::panic::catch_unwind(|| panic!("static str")).unwrap_err();
    assert_eq!(TaskError::from_panic(p).panic_message(), Some("static str"));
    let p = std::panic::catch_unwind(|| panic!("formatted {}", 42)).unwrap_err();
    let e = TaskError::from_panic(p);
    assert_eq!(e.panic_message(), Some("formatted 42"));
    assert_eq!(e.to_string(), "task panicked: formatted 42");
    let p = std::panic::catch_unwind(|| std::panic::panic_any(5u32)).unwrap_err();
    assert_eq!(
        panic_message(&*p),
        "Box<dyn Any> (a non-string panic payload)"
    );
}

#[test]
fn task_error_downcast_and_source() {
    let e = TaskError::new(MyError {
        inner: std::io::Error::other("root cause"),
    });
    assert!(e.downcast_ref::<MyError>().is_some());
    assert!(e.downcast_ref::<std::io::Error>().is_none());
    // `source` skips the wrapper: the task's error *is* this error.
    assert_eq!(e.source().unwrap().to_string(), "root cause");

    let boxed: Box<dyn std::error::Error + Send + Sync> = "plain text".into();
    let e = TaskError::from_boxed(boxed);
    assert_eq!(e.to_string(), "plain text");
    assert!(TaskError::msg("m").source().is_none());
}

#[test]
fn clones_share_the_payload() {
    let e = Error::Failed(TaskError::new(std::io::Error::other("x")));
    let c = e.clone();
    let a = e
        .task_error()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    let b = c
        .task_error()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    assert!(std::ptr::eq(a, b), "clones must share, not copy");
    let p = TaskError::Panic {
        message: Arc::from("p"),
        location: None,
    };
    let (TaskError::Panic { message: m1, .. }, TaskError::Panic { message: m2, .. }) =
        (&p, &p.clone())
    else {
        unreachable!()
    };
    assert!(Arc::ptr_eq(m1, m2));
}

#[test]
fn broken_message_cause_and_source() {
    let b = Broken::new("A process in the process pool was terminated abruptly");
    assert_eq!(
        b.message(),
        "A process in the process pool was terminated abruptly"
    );
    assert!(b.cause().is_none());
    assert!(b.source().is_none());
    let b = Broken::with_cause(
        "A thread initializer failed, the thread pool is not usable anymore",
        TaskError::msg("no config"),
    );
    assert_eq!(b.cause().unwrap().to_string(), "no config");
    assert_eq!(b.source().unwrap().to_string(), "no config");
    assert_eq!(
        b.to_string(),
        "A thread initializer failed, the thread pool is not usable anymore: no config"
    );
}

#[test]
fn invalid_state_message_and_display() {
    let e = InvalidState::new("CANCELLED: nope");
    assert_eq!(e.message(), "CANCELLED: nope");
    assert_eq!(e.to_string(), "invalid state: CANCELLED: nope");
}

#[test]
fn submit_error_predicates_and_display() {
    assert!(SubmitError::Shutdown.is_shutdown());
    assert!(!SubmitError::Shutdown.is_broken());
    assert_eq!(
        SubmitError::Shutdown.to_string(),
        "cannot schedule new futures after shutdown"
    );
    let b = SubmitError::Broken(Broken::new("broken pool"));
    assert!(b.is_broken() && !b.is_shutdown());
    assert_eq!(b.to_string(), "broken pool");
}

#[test]
fn errors_are_std_errors_and_thread_safe() {
    fn check<E: std::error::Error + Send + Sync + Clone + 'static>() {}
    check::<Error>();
    check::<TaskError>();
    check::<Broken>();
    check::<InvalidState>();
    check::<SubmitError>();
}
