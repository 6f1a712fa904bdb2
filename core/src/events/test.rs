use super::*;
use proptest::prelude::*;

fn id() -> FutureId {
    FutureId(0x1000)
}

#[test]
fn inactive_bus_builds_nothing() {
    let bus = EventBus::new();
    assert!(!bus.is_active());
    bus.emit(|| unreachable!("no subscriber: the event is not built"));
    let ev = bus.subscribe();
    assert!(bus.is_active());
    drop(ev);
    assert!(!bus.is_active());
    bus.emit(|| unreachable!("unsubscribed"));
}

#[test]
fn events_arrive_in_order_to_every_subscriber() {
    let bus = EventBus::new();
    let a = bus.subscribe();
    let b = bus.subscribe();
    assert_eq!(bus.subscribers(), 2);
    bus.emit(|| Event::submitted(id(), Some("t".into())));
    bus.emit(|| Event::started(id(), 3, Some(42)));
    for ev in [&a, &b] {
        let e = ev.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(&e, Event::Submitted { name: Some(n), .. } if &**n == "t"));
        let e = ev.try_recv().unwrap();
        assert_eq!(
            (e.kind(), e.worker(), e.task()),
            ("started", Some(3), Some(id()))
        );
        assert!(ev.try_recv().is_none());
        assert_eq!(
            ev.recv_timeout(Duration::from_millis(1)).unwrap_err(),
            RecvError::Timeout
        );
    }
}

#[test]
fn a_full_buffer_drops_and_counts_never_blocks() {
    let bus = EventBus::new();
    let ev = bus.subscribe_with_capacity(2);
    for _ in 0..5 {
        bus.emit(|| Event::submitted(id(), None));
    }
    assert_eq!(ev.dropped(), 3);
    assert_eq!(ev.drain().len(), 2);
}

#[test]
fn close_ends_the_stream_after_the_final_event_even_when_full() {
    let bus = EventBus::new();
    let ev = bus.subscribe_with_capacity(1);
    bus.emit(|| Event::submitted(id(), None));
    bus.close_with(Some(Event::shutdown()));
    assert!(!bus.is_active());
    assert!(bus.is_closed());
    let all: Vec<Event> = ev.into_iter().collect();
    assert_eq!(all.len(), 2);
    assert!(matches!(all[1], Event::Shutdown { .. }));
    // Later subscribers see an ended stream at once.
    let late = bus.subscribe();
    assert_eq!(
        late.recv_timeout(Duration::from_secs(5)).unwrap_err(),
        RecvError::Closed
    );
}

/// A subscription takes its buffer's memory as events come: a "practically unbounded"
/// capacity neither aborts nor allocates up front, and a full buffer stays at its cap.
#[test]
fn huge_capacity_costs_nothing_up_front() {
    let bus = EventBus::new();
    let huge = bus.subscribe_with_capacity(usize::MAX);
    let also = bus.subscribe_with_capacity(1 << 40);
    let small = bus.subscribe_with_capacity(3);
    for _ in 0..100 {
        bus.emit(|| Event::submitted(id(), None));
    }
    bus.close_with(Some(Event::shutdown()));
    assert_eq!(
        (huge.dropped(), also.dropped(), small.dropped()),
        (0, 0, 97)
    );
    assert_eq!(huge.into_iter().count(), 101);
    assert_eq!(also.into_iter().count(), 101);
    let rest: Vec<Event> = small.into_iter().collect();
    assert_eq!(rest.len(), 4, "the cap, then the final event past it");
    assert!(matches!(rest[3], Event::Shutdown { .. }));
}

#[test]
fn dropping_the_bus_ends_the_stream() {
    let bus = EventBus::new();
    let ev = bus.subscribe();
    bus.emit(|| Event::broken("x"));
    drop(bus);
    assert!(matches!(ev.recv(), Some(Event::Broken { .. })));
    assert!(ev.recv().is_none());
}

#[test]
fn a_subscriber_on_another_thread_sees_what_happens_after_subscribe() {
    let bus = EventBus::new();
    let ev = bus.subscribe();
    let b2 = bus.clone();
    let t = std::thread::spawn(move || {
        for _ in 0..1000 {
            b2.emit(|| Event::submitted(FutureId(1), None));
        }
        b2.close_with(Some(Event::shutdown()));
    });
    let n = ev.into_iter().count();
    t.join().unwrap();
    assert_eq!(n, 1001);
}

#[test]
fn outcome_of_errors() {
    use crate::TaskError;
    let died = TaskError::WorkerDied {
        pid: 1,
        exit: WorkerExit::Signal(9),
    };
    assert_eq!(TaskOutcome::of_error(&died), TaskOutcome::Lost);
    let limit = TaskError::TimeLimit {
        limit: Duration::from_secs(1),
    };
    assert_eq!(TaskOutcome::of_error(&limit), TaskOutcome::TimedOut);
    let p = crate::panic_message(&"boom");
    assert_eq!(p, "boom");
}

#[test]
fn stats_queued_running_done() {
    let rec = StatsRecorder::new();
    let w = rec.worker_started(7, Some(70));
    for _ in 0..4 {
        rec.submitted();
    }
    rec.started();
    rec.started();
    rec.requeued(true); // one goes back for a retry
    rec.finished(None, TaskOutcome::Cancelled, false, None); // one cancelled while queued
    let s = rec.snapshot();
    assert_eq!((s.submitted, s.queued, s.running, s.done), (4, 2, 1, 1));
    rec.started();
    rec.finished(
        Some(&w),
        TaskOutcome::Panicked,
        true,
        Some(Duration::from_micros(10)),
    );
    rec.finished(Some(&w), TaskOutcome::Quarantined, true, None);
    rec.started();
    rec.finished(
        Some(&w),
        TaskOutcome::Ok,
        true,
        Some(Duration::from_micros(20)),
    );
    rec.worker_stopped(&w, true);
    let s = rec.snapshot();
    assert_eq!((s.queued, s.running, s.done), (0, 0, 4));
    assert_eq!((s.succeeded, s.failed, s.cancelled), (1, 2, 1));
    assert_eq!((s.retried, s.quarantined, s.worker_deaths), (1, 1, 1));
    assert_eq!(s.workers.len(), 1);
    let ws = &s.workers[0];
    assert_eq!((ws.id, ws.pid, ws.alive), (7, Some(70), false));
    assert_eq!((ws.finished, ws.failed), (3, 2));
    assert_eq!(s.run_times.count, 2);
    assert_eq!(s.run_times.max, Some(Duration::from_micros(20)));
}

#[test]
fn gone_workers_are_forgotten_past_a_bound() {
    let rec = StatsRecorder::new();
    let live = rec.worker_started(0, None);
    for i in 1..200 {
        let w = rec.worker_started(i, None);
        rec.worker_stopped(&w, false);
    }
    let s = rec.snapshot();
    assert!(s.workers.len() <= GONE_KEPT + 2);
    assert!(s.workers.iter().any(|w| w.id == live.id() && w.alive));
    assert_eq!(s.workers_started, 200);
}

proptest! {
    #[test]
    fn every_value_falls_in_its_bucket(ns in any::<u64>()) {
        let b = bucket_of(ns);
        prop_assert!(b < BUCKETS);
        let (lo, hi) = bucket_range(b);
        prop_assert!(lo <= ns && ns <= hi, "{ns} in bucket {b} = {lo}..={hi}");
        // A bucket is at most 1/8 of its values wide.
        prop_assert!(hi - lo <= lo / 8 + 1);
    }

    #[test]
    fn percentiles_are_within_a_sixteenth(mut xs in prop::collection::vec(1u64..10_000_000_000, 1..300)) {
        let h = Histogram::default();
        for &x in &xs {
            h.record(Duration::from_nanos(x));
        }
        xs.sort_unstable();
        let r = h.snapshot();
        prop_assert_eq!(r.count, xs.len() as u64);
        prop_assert_eq!(r.max, Some(Duration::from_nanos(*xs.last().unwrap())));
        for (q, got) in [(0.5, r.p50), (0.9, r.p90), (0.99, r.p99)] {
            let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
            let exact = xs[rank - 1] as f64;
            let got = got.unwrap().as_nanos() as f64;
            prop_assert!((got - exact).abs() <= exact / 16.0 + 1.0, "q{q}: {got} vs {exact}");
        }
    }
}

#[test]
fn a_huge_capacity_costs_nothing_up_front() {
    let bus = EventBus::new();
    // 2^40 events: allocated as they come, never up front.
    let subs: Vec<Events> = (0..64)
        .map(|_| bus.subscribe_with_capacity(1 << 40))
        .collect();
    bus.emit(Event::shutdown);
    for s in &subs {
        assert!(matches!(s.try_recv(), Some(Event::Shutdown { .. })));
    }
}

#[test]
fn one_task_s_percentiles_are_its_run_time() {
    let rec = StatsRecorder::new();
    rec.finished(
        None,
        TaskOutcome::Ok,
        false,
        Some(Duration::from_nanos(1000)),
    );
    let r = rec.snapshot().run_times;
    let d = Some(Duration::from_nanos(1000));
    assert_eq!((r.p50, r.p90, r.p99, r.max, r.mean), (d, d, d, d, d));
}
