//! Diagnostics: what cfutures reports when there is no caller to hand a problem to — a
//! done-callback that panicked, a pool that broke, a worker process that died.
//!
//! With the `log` feature, [`report`] goes through the [`log`](https://docs.rs/log) facade
//! (target `"cfutures"`), so it lands wherever the program's logger sends it (`env_logger`,
//! `tracing`'s `log` bridge, …). Without the feature, or when no logger is installed
//! (`log::max_level()` is `Off`, the state before a logger sets it), it is one line on
//! standard error, `cfutures: <message>`: a problem is never silently lost.
//!
//! Every cfutures crate reports through this one function, so one logger configuration
//! covers the thread pool, the process pool and core.

use std::fmt;

/// How serious a report is (the `log` levels cfutures uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// Something failed that nobody else will hear of: a callback panicked, a pool broke.
    Error,
    /// Something went wrong and was handled: a worker died and was replaced.
    Warn,
    /// Normal but notable: a worker retired.
    Info,
    /// Details for debugging.
    Debug,
}

/// Reports `message` at `level`: through `log` when the `log` feature is on and a logger is
/// installed, otherwise (errors and warnings only) as one line on standard error.
///
/// ```
/// use cfutures_core::diag::{report, Level};
///
/// report(Level::Warn, format_args!("worker {} died; replaced", 42));
/// ```
pub fn report(level: Level, message: fmt::Arguments<'_>) {
    #[cfg(feature = "log")]
    {
        if log::max_level() != log::LevelFilter::Off {
            let level = match level {
                Level::Error => log::Level::Error,
                Level::Warn => log::Level::Warn,
                Level::Info => log::Level::Info,
                Level::Debug => log::Level::Debug,
            };
            log::log!(target: "cfutures", level, "{message}");
            return;
        }
    }
    // The fallback: what cfutures printed before it had a logging feature. Only problems
    // (errors, warnings) are worth a line on a terminal.
    // Not `eprintln!`: it panics when stderr is a closed pipe, and reports come from
    // executors' threads, which must not unwind.
    if level <= Level::Warn {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "cfutures: {message}");
    }
}
