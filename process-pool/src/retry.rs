//! Retry and quarantine: what a worker's death (or, when a predicate says so, a task's error)
//! does to the task that worker ran.
//!
//! # The rules
//!
//! A task with a [`RetryPolicy`] is run again when its worker dies under it (a signal, `exit`,
//! `abort`, the OOM killer), after a backoff of its own, at most `attempts` times in all. A
//! task that has killed `poison_after` workers is *poison*: it fails with
//! [`TaskError::Quarantined`], which lists each death, and never runs again. Its deaths are not
//! held against the pool: a poison task does not break a [`BreakPool`] pool. A task that
//! returned an error or panicked is final, unless the policy's predicate
//! ([`RetryPolicy::retry_if`]) says to run it again (within the same `attempts`).
//!
//! Not retried, whatever the policy: a task stopped at its time limit
//! ([`TaskError::TimeLimit`]: running it again would take as long), a task cancelled while it
//! ran, a task whose worker the pool killed because its result stream was out of sync (the
//! task wrote to the pool's descriptors), and any task when the pool is broken or its
//! workers were stopped (`terminate_workers`, `kill_workers`). A task whose worker died because
//! the pool killed it for *another* task (a kill that landed just after that task's result
//! was sent) is run again at once, and that death is not counted against it.
//!
//! # `map` chunks
//!
//! A chunk of several items runs as one task, so its death cannot be pinned on one item: the
//! chunk is taken apart, and each item runs again as a task of its own, under the same policy
//! (the chunk's death counts against none of them). The item that kills workers then fails
//! alone, as [`TaskError::Quarantined`] in its place of the chunk's output; the others give
//! their values. The chunk's future is still the one the caller holds.
//!
//! # Fairness
//!
//! A task waiting for its backoff waits on its own (`State::delayed`), not in the queue, so
//! it holds nothing up; once its backoff has passed it goes back to the *front* of the queue,
//! the place of a task submitted before anything still queued.
//!
//! Every decision is made by [`on_death`], [`on_error`] and [`on_collateral`], and carried out
//! by [`apply`]: one place for the "retried" and "quarantined" events.
//!
//! [`BreakPool`]: crate::WorkerDeathPolicy::BreakPool

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfutures_core::events::Event;
use cfutures_core::{Broken, InvalidArgument, TaskError, TaskOutput, WorkerDeath};
use cfutures_remote::job::{self, Outcome, Parts};

use crate::state::{Done, State};
use crate::window::Job;

/// When to run a task again after its worker died under it, and when to give up on it as
/// poison. Give it to [`Builder::retry`](crate::Builder::retry) (every task) or
/// [`TaskOptions::retry`](crate::TaskOptions::retry) (one submission).
///
/// Defaults: 3 attempts, poison after 3 deaths (dask's `allowed-failures` is 3 too; dask
/// quarantines at the death *after* that many, this policy at that many), backoff 50 ms
/// doubling up to 2 s, no predicate (errors and panics are final).
///
/// # Examples
///
/// ```
/// use cfutures_process_pool::{ProcessPoolExecutor, RetryPolicy};
///
/// fn crash(_: ()) {
///     std::process::abort(); // kills its worker, every time
/// }
///
/// let pool = ProcessPoolExecutor::builder()
///     .max_workers(1)
///     .retry(RetryPolicy::new().attempts(5).poison_after(2))
///     .build()
///     .unwrap();
/// let err = pool.submit_fn(crash, ()).unwrap().exception().unwrap().unwrap();
/// assert!(err.is_quarantined());
/// assert_eq!(err.deaths().unwrap().len(), 2); // two workers died; then it was quarantined
/// // The pool is fine.
/// assert_eq!(*pool.submit_fn(|x: u32| x + 1, 1).unwrap().result().unwrap(), 2);
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    attempts: u32,
    poison_after: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    retry_if: Option<Predicate>,
}

/// The predicate of [`RetryPolicy::retry_if`].
type Predicate = Arc<dyn Fn(&TaskError) -> bool + Send + Sync>;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            poison_after: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            retry_if: None,
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("attempts", &self.attempts)
            .field("poison_after", &self.poison_after)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("retry_if", &self.retry_if.as_ref().map(|_| "<predicate>"))
            .finish()
    }
}

impl RetryPolicy {
    /// The default policy (see the type's documentation).
    pub fn new() -> Self {
        RetryPolicy::default()
    }

    /// The most times a task runs in all, its first run included (default 3; at least 1).
    /// When the last attempt dies with fewer than `poison_after` deaths, the task fails with
    /// [`TaskError::WorkerDied`], as it would without retries (and a
    /// [`BreakPool`](crate::WorkerDeathPolicy::BreakPool) pool breaks).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n;
        self
    }

    /// How many workers a task may kill before it is poison (default 3; at least 1): it then
    /// fails with [`TaskError::Quarantined`] and is never run again, and its deaths do not
    /// count against the pool.
    pub fn poison_after(mut self, k: u32) -> Self {
        self.poison_after = k;
        self
    }

    /// The wait before the first retry, doubled before each next one, up to `max` (default
    /// 50 ms and 2 s). Each task waits on its own: its wait holds up no other task.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Also runs again a task that *returned* an error or panicked, when `predicate` says so
    /// (within the same `attempts`). It runs in the parent, on the pool's I/O thread, and
    /// sees the task's error: keep it short. A panic in it counts as `false`.
    ///
    /// For a `map` chunk it sees only a failure of the chunk as a whole (its items could not
    /// be decoded, say): an item's own panic is that item's result, and final.
    ///
    /// ```
    /// use cfutures_process_pool::RetryPolicy;
    ///
    /// // Flaky network calls: retry what the task reported as a timeout.
    /// let policy = RetryPolicy::new()
    ///     .attempts(5)
    ///     .retry_if(|e| e.to_string().contains("timed out"));
    /// # drop(policy);
    /// ```
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&TaskError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::new(predicate));
        self
    }

    /// Checks the numbers (`attempts` and `poison_after` at least 1).
    pub(crate) fn check(&self) -> Result<(), InvalidArgument> {
        if self.attempts == 0 {
            return Err(InvalidArgument::new(
                "RetryPolicy: attempts must be at least 1",
            ));
        }
        if self.poison_after == 0 {
            return Err(InvalidArgument::new(
                "RetryPolicy: poison_after must be at least 1",
            ));
        }
        Ok(())
    }

    /// The wait before attempt `failures + 1`.
    fn backoff_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// One task's policy and what happened to it so far.
#[derive(Clone, Debug)]
pub(crate) struct Attempts {
    policy: RetryPolicy,
    /// Attempts that ended in a death or a retried error.
    failures: u32,
    deaths: Vec<WorkerDeath>,
    /// While it waits for its backoff: when it may run.
    pub(crate) not_before: Option<Instant>,
}

impl Attempts {
    pub(crate) fn new(policy: RetryPolicy) -> Box<Self> {
        Box::new(Attempts {
            policy,
            failures: 0,
            deaths: Vec::new(),
            not_before: None,
        })
    }

    /// True if an error may make the task run again (it has a predicate).
    pub(crate) fn judges_errors(&self) -> bool {
        self.policy.retry_if.is_some()
    }
}

/// What to do with a task whose attempt ended.
pub(crate) enum Verdict {
    /// Fail it as without a policy.
    Fail,
    /// Run it again, not before this time.
    Retry(Instant),
    /// Run each item of the chunk as a task of its own (these parts), not before this time.
    Split(Parts, Instant),
    /// Poison: fail it with this error, never run it again.
    Quarantine(TaskError),
}

/// The worker running `job` (which it had claimed) died, and the pool did not kill it.
pub(crate) fn on_death(job: &mut Job, death: WorkerDeath, now: Instant) -> Verdict {
    let Some(a) = job.retry.as_deref_mut() else {
        return Verdict::Fail;
    };
    if job.cancel {
        // `cancel` asked to stop it: it is not run again.
        return Verdict::Fail;
    }
    if a.policy.attempts > 1 {
        // A chunk's death is pinned on none of its items: each runs again on its own.
        if let Some(parts) = job.slot.split(&job.frame) {
            return Verdict::Split(parts, now + a.policy.backoff_after(1));
        }
    }
    a.deaths.push(death);
    a.failures += 1;
    if a.deaths.len() as u64 >= u64::from(a.policy.poison_after) {
        return Verdict::Quarantine(TaskError::Quarantined {
            deaths: a.deaths.clone().into(),
        });
    }
    if a.failures >= a.policy.attempts {
        return Verdict::Fail;
    }
    Verdict::Retry(now + a.policy.backoff_after(a.failures))
}

/// `job` returned `error` (or panicked): run it again if the predicate says so.
pub(crate) fn on_error(job: &mut Job, error: &TaskError, now: Instant) -> Verdict {
    let Some(a) = job.retry.as_deref_mut() else {
        return Verdict::Fail;
    };
    let Some(p) = a.policy.retry_if.clone() else {
        return Verdict::Fail;
    };
    if job.cancel || a.failures + 1 >= a.policy.attempts {
        return Verdict::Fail;
    }
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p(error))).unwrap_or_else(
        |payload| {
            cfutures_remote::wire::drop_payload(payload);
            false
        },
    );
    if !again {
        return Verdict::Fail;
    }
    a.failures += 1;
    Verdict::Retry(now + a.policy.backoff_after(a.failures))
}

/// `job`'s worker died because the pool killed it for the task before it (whose result was
/// already on its way): not `job`'s doing, so it runs again at once, if it has a policy.
pub(crate) fn on_collateral(job: &Job, now: Instant) -> Verdict {
    if job.retry.is_some() && !job.cancel {
        Verdict::Retry(now)
    } else {
        Verdict::Fail
    }
}

/// Carries out `verdict` (not [`Verdict::Fail`], which the caller handles as without a
/// policy). `output` is what the attempt printed (when output is captured): it comes with a
/// quarantine's error; a retried attempt's goes to `forward` (where uncaptured output goes).
pub(crate) fn apply(
    st: &mut State,
    mut job: Job,
    verdict: Verdict,
    output: Option<TaskOutput>,
    forward: &mut Vec<u8>,
    done: &mut Done,
) {
    // The attempt is over: the task waits again (retried), or ends (quarantined).
    let started = job.on.is_some();
    let obs = st.obs.clone();
    let task = job.slot.future_id();
    match verdict {
        Verdict::Fail => unreachable!("the caller fails it"),
        Verdict::Retry(at) => {
            if let Some(o) = output {
                forward.extend_from_slice(o.bytes());
            }
            let mut attempt = 1;
            if let Some(a) = job.retry.as_deref_mut() {
                a.not_before = Some(at);
                attempt = a.failures;
            }
            retried(&obs, started);
            obs.bus.emit(|| Event::retried(task, attempt));
            job.on = None;
            st.delayed.push(job);
        }
        Verdict::Split(parts, at) => {
            if let Some(o) = output {
                forward.extend_from_slice(o.bytes());
            }
            retried(&obs, started);
            obs.bus.emit(|| Event::retried(task, 1));
            // Each item is a task of its own now (with the chunk's future id): counted as
            // such, so that the counts of tasks queued and done add up.
            for _ in 1..parts.len() {
                obs.stats.submitted();
            }
            let policy = job.retry.as_ref().map(|a| a.policy.clone());
            for (mut frame, slot) in parts {
                let id = st.next_id;
                st.next_id += 1;
                job::set_id(&mut frame, id);
                let mut attempts = policy.clone().map(Attempts::new);
                if let Some(a) = attempts.as_deref_mut() {
                    a.not_before = Some(at);
                }
                st.delayed.push(Job {
                    id,
                    frame,
                    slot,
                    limit: job.limit,
                    started: true,
                    cancel: false,
                    seq: 0,
                    // Split only from a chunk whose items are in its frame.
                    bulk: None,
                    retry: attempts,
                    on: None,
                });
            }
            // `job.slot` is empty now: dropping it completes nothing.
        }
        Verdict::Quarantine(e) => {
            let deaths = e.deaths().map_or(0, |d| d.len() as u32);
            obs.bus.emit(|| Event::quarantined(task, deaths));
            let e = match output {
                Some(o) => e.with_output(o),
                None => e,
            };
            // Its `Finished` (quarantined) follows, on the worker it died on last.
            done.job(job, Outcome::Failed(e));
        }
    }
}

/// Counts a retry: of a task that had started (it goes back to wait), or not.
fn retried(obs: &crate::state::Obs, started: bool) {
    if started {
        obs.stats.requeued(true);
    } else {
        obs.stats.retried();
    }
}

/// Moves the tasks whose backoff has passed to the front of the queue, oldest first. If the
/// pool's workers were stopped (no worker will run them), they fail instead.
pub(crate) fn promote(st: &mut State, now: Instant, done: &mut Done) {
    if st.delayed.is_empty() {
        return;
    }
    if st.forced {
        let b = Broken::new(
            "the pool's worker processes were stopped (terminate_workers / kill_workers) while \
             the task waited to be retried",
        );
        for job in st.delayed.drain(..) {
            done.job(job, Outcome::Broken(b.clone()));
        }
        return;
    }
    let due = |j: &Job| {
        j.retry
            .as_ref()
            .and_then(|a| a.not_before)
            .map_or(true, |t| t <= now)
    };
    if !st.delayed.iter().any(due) {
        return;
    }
    let (mut ready, wait): (Vec<Job>, Vec<Job>) = st.delayed.drain(..).partition(due);
    st.delayed = wait;
    ready.sort_by_key(|j| std::cmp::Reverse(j.id));
    for mut job in ready {
        if let Some(a) = job.retry.as_deref_mut() {
            a.not_before = None;
        }
        st.queue.push_front(job);
    }
}

/// When the next waiting task may run.
pub(crate) fn next_due(st: &State) -> Option<Instant> {
    st.delayed
        .iter()
        .filter_map(|j| j.retry.as_ref().and_then(|a| a.not_before))
        .min()
}
