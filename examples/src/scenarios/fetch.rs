//! Scenario 1 — I/O-bound: fetch 42 URLs with a thread pool, first with `map`, then with
//! `submit` + `as_completed`, handling a failing URL and a per-request timeout without
//! losing the other results.

use std::collections::HashMap;
use std::time::Duration;

use cfutures_combinators::{as_completed, ExecutorExt};
use cfutures_core::{fallible, Future, FutureId};
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{timed, BoxError, Out, Secs};
use crate::site::{Client, Site, SiteConfig};

/// Threads used to fetch.
pub const THREADS: usize = 16;
/// The client's per-request timeout.
pub const TIMEOUT: Duration = Duration::from_millis(800);

/// What went wrong with a request, in a few words.
pub fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("the server answered {code}"),
        ureq::Error::Timeout(_) => {
            format!("no answer within the {} ms timeout", TIMEOUT.as_millis())
        }
        other => other.to_string(),
    }
}

/// Runs the scenario.
///
/// # Errors
///
/// If the site cannot start, the pool cannot be built, or a result is missing.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    // A local site: 42 pages, 25 ms each; page 7 answers 503, page 13 takes 2 s.
    let site = Site::start(SiteConfig::default())?;
    let client = Client::new(TIMEOUT);
    let urls = site.urls();
    out.say(format!(
        "site on {}: {} pages of {} KiB, {} ms each; page 7 fails, page 13 is slower than the {} ms timeout",
        site.base_url(),
        urls.len(),
        site.config().page_size / 1024,
        site.config().delay.as_millis(),
        TIMEOUT.as_millis()
    ));

    // Sequential, for comparison.
    let (sequential, seq_time) = timed(|| urls.iter().map(|u| client.get(u)).collect::<Vec<_>>());
    let seq_ok = sequential.iter().filter(|r| r.is_ok()).count();
    out.say(format!(
        "sequential: {seq_ok} of {} pages fetched",
        urls.len()
    ));

    // 1. map: results in input order, one Result per URL — a failing URL does not end the
    //    iteration (Python's map raises at the first exception and the rest are lost).
    let pool = ThreadPoolExecutor::new(THREADS)?;
    let c = client.clone();
    let (results, map_time) = timed(|| -> Result<Vec<_>, BoxError> {
        Ok(pool
            .map(move |url: String| c.get(&url), urls.clone())?
            .collect())
    });
    let results = results?;
    let mut ok = 0;
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(Ok(body)) => ok += usize::from(!body.is_empty()),
            Ok(Err(e)) => out.say(format!("map: page {i} failed: {}", describe(e))),
            Err(e) => out.say(format!("map: page {i}: the task failed: {e}")),
        }
    }
    out.say(format!(
        "map: {ok} of {} pages fetched, in input order",
        urls.len()
    ));
    out.measured(
        format!("fetch 42 pages: map on {THREADS} threads"),
        Some(seq_time),
        map_time,
    );

    // 2. submit + as_completed: handle each page as soon as it arrives. `fallible` makes a
    //    failed request fail its future, so `result()` gives the error.
    let (done, ac_time) = timed(|| -> Result<Vec<String>, BoxError> {
        // Which page each future fetches, by the future's id.
        let mut page_of: HashMap<FutureId, usize> = HashMap::new();
        let mut futures: Vec<Future<Vec<u8>>> = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let (c, url) = (client.clone(), url.clone());
            let f = pool.submit(fallible(move || c.get(&url)))?;
            page_of.insert(f.id(), i);
            futures.push(f);
        }
        let mut lines = Vec::new();
        let mut order = Vec::new();
        for f in as_completed(futures, Some(Duration::from_secs(30))) {
            let f = f?; // a TimedOut error would say how many pages were unfinished
            let i = page_of[&f.id()];
            match f.result() {
                Ok(_) => order.push(i),
                Err(e) => {
                    // The task's own error is inside: `fallible` kept it.
                    let why = e
                        .task_error()
                        .and_then(|t| t.downcast_ref::<ureq::Error>())
                        .map_or_else(|| e.to_string(), describe);
                    lines.push(format!("as_completed: page {i} failed: {why}"));
                }
            }
        }
        let first: Vec<String> = order.iter().take(8).map(|i| i.to_string()).collect();
        lines.push(format!(
            "as_completed: {} pages fetched; completion order starts {} …",
            order.len(),
            first.join(", ")
        ));
        Ok(lines)
    });
    for line in done? {
        out.say(line);
    }
    out.measured(
        format!("fetch 42 pages: submit + as_completed on {THREADS} threads"),
        Some(seq_time),
        ac_time,
    );
    out.say(format!(
        "the slow page bounds both runs: one request waits {} for its timeout",
        Secs(TIMEOUT)
    ));
    Ok(())
}
