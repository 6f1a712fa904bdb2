//! Scenario 9 — a progress bar (indicatif) over a long `as_completed` and a long `map`.
//!
//! On a terminal the bar draws; when stdout is not a terminal (CI, a pipe), the same
//! progress is printed as a few plain lines instead, so the output stays readable.

use std::time::Duration;

use cfutures_combinators::{as_completed, ExecutorExt, Progress};
use cfutures_thread_pool::ThreadPoolExecutor;
use indicatif::{ProgressBar, ProgressStyle};

use crate::report::{timed, BoxError, Out};
use crate::work::is_prime;

/// Tasks in each run.
pub const TASKS: usize = 400;

/// A progress display: an indicatif bar on a terminal, milestones (25 %, 50 %, …) otherwise.
#[derive(Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
    shown: usize,
}

impl Bar {
    /// A bar for `total` steps, labelled `label`.
    pub fn new(out: &Out, total: usize, label: &str) -> Bar {
        let bar = out.is_terminal().then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("   {msg} [{bar:40}] {pos}/{len} ({elapsed_precise})")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            b.set_message(label.to_owned());
            b
        });
        Bar { bar, shown: 0 }
    }

    /// Shows `p`: moves the bar, or prints a line at each quarter.
    pub fn update(&mut self, out: &mut Out, p: Progress) {
        match &self.bar {
            Some(b) => b.set_position(p.done as u64),
            None => {
                let quarter = (p.fraction() * 4.0).floor() as usize;
                if quarter > self.shown {
                    self.shown = quarter;
                    out.say(format!("progress {p} ({}%)", quarter * 25));
                }
            }
        }
    }

    /// Finishes the bar.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish();
        }
    }
}

fn task(n: u64) -> bool {
    std::thread::sleep(Duration::from_millis(10)); // a little I/O
    is_prime(n)
}

/// Runs the scenario.
///
/// # Errors
///
/// If the pool cannot be built or a task fails.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let pool = ThreadPoolExecutor::new(8)?;
    let numbers: Vec<u64> = (0..TASKS as u64).map(|i| 1_000_000 + i).collect();

    // as_completed: the bar advances as each future completes.
    let (primes, t) = timed(|| -> Result<usize, BoxError> {
        let futures = numbers
            .iter()
            .map(|&n| pool.submit(move || task(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut bar = Bar::new(out, futures.len(), "as_completed");
        let mut it = as_completed(futures, Some(Duration::from_secs(60)));
        let mut primes = 0;
        while let Some(f) = it.next() {
            primes += usize::from(*f?.result()?);
            bar.update(out, it.progress());
        }
        bar.finish();
        Ok(primes)
    });
    out.measured(
        format!(
            "as_completed over {TASKS} tasks on 8 threads: {} primes",
            primes?
        ),
        None,
        t,
    );

    // map: the same with results in input order; progress counts completed items.
    let (primes, t) = timed(|| -> Result<usize, BoxError> {
        let mut bar = Bar::new(out, numbers.len(), "map");
        let mut it = pool.map(task, numbers.clone())?;
        let mut primes = 0;
        while let Some(r) = it.next() {
            primes += usize::from(r?);
            bar.update(out, it.progress());
        }
        bar.finish();
        Ok(primes)
    });
    out.measured(
        format!("map over {TASKS} items on 8 threads: {} primes", primes?),
        None,
        t,
    );
    Ok(())
}
