//! How a scenario reports what it did: lines of text, and timed measurements (sequential
//! vs pool) that the tour gathers into one table.

use std::fmt::{self, Display};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// The error type scenarios return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One timed measurement: the same work done sequentially and on a pool.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured ("42 pages, map on 8 threads").
    pub what: String,
    /// The sequential time, when there is one to compare with.
    pub sequential: Option<Duration>,
    /// The time on the pool.
    pub pooled: Duration,
}

impl Row {
    /// `sequential / pooled`, when there is a sequential time.
    pub fn speedup(&self) -> Option<f64> {
        self.sequential
            .map(|s| s.as_secs_f64() / self.pooled.as_secs_f64().max(1e-9))
    }
}

/// Where a scenario writes: prints each line (indented) and keeps the measurements.
#[derive(Debug, Default)]
pub struct Out {
    rows: Vec<Row>,
    lines: Vec<String>,
    quiet: bool,
}

impl Out {
    /// Prints to stdout.
    pub fn new() -> Self {
        Out::default()
    }

    /// Prints nothing (keeps the measurements): for tests.
    pub fn quiet() -> Self {
        Out::with_quiet(true)
    }

    /// Prints nothing if `quiet`, else prints to stdout.
    pub fn with_quiet(quiet: bool) -> Self {
        Out {
            rows: Vec::new(),
            lines: Vec::new(),
            quiet,
        }
    }

    /// Whether stdout is a terminal (progress bars draw only there).
    pub fn is_terminal(&self) -> bool {
        !self.quiet && std::io::stdout().is_terminal()
    }

    /// Whether this output prints nothing.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Prints one line of what the scenario did.
    pub fn say(&mut self, line: impl Display) {
        let line = line.to_string();
        if !self.quiet {
            println!("   {line}");
        }
        self.lines.push(line);
    }

    /// Every line said so far.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Records (and prints) a measurement of the same work done sequentially and on a pool.
    pub fn measured(
        &mut self,
        what: impl Into<String>,
        sequential: Option<Duration>,
        pooled: Duration,
    ) {
        let row = Row {
            what: what.into(),
            sequential,
            pooled,
        };
        let line = match (row.sequential, row.speedup()) {
            (Some(s), Some(x)) => format!(
                "⏱ {}: sequential {}, pool {} ({})",
                row.what,
                Secs(s),
                Secs(row.pooled),
                Speedup(x)
            ),
            _ => format!("⏱ {}: {}", row.what, Secs(row.pooled)),
        };
        self.say(line);
        self.rows.push(row);
    }

    /// The measurements recorded so far.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Takes the measurements out.
    pub fn take_rows(&mut self) -> Vec<Row> {
        std::mem::take(&mut self.rows)
    }
}

/// Replaces the panic hook with one that prints nothing, so the panics the scenarios cause
/// on purpose (each caught and reported as the future's error) do not clutter the output.
/// Set `CFUTURES_SHOW_PANICS=1` to keep the default hook.
pub fn quiet_panics() {
    if std::env::var_os("CFUTURES_SHOW_PANICS").is_none() {
        std::panic::set_hook(Box::new(|_| {}));
    }
}

/// Runs `f` and returns its output and how long it took.
pub fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

/// A duration printed with a unit that suits it: `1.23 s`, `45.6 ms`, `789 µs`, `450 ns`.
#[derive(Clone, Copy, Debug)]
pub struct Secs(pub Duration);

impl Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs_f64();
        let (v, unit) = if s >= 1.0 {
            (s, "s")
        } else if s >= 1e-3 {
            (s * 1e3, "ms")
        } else if s >= 1e-6 {
            (s * 1e6, "µs")
        } else {
            (s * 1e9, "ns")
        };
        let text = if v >= 100.0 {
            format!("{v:.0} {unit}")
        } else if v >= 10.0 {
            format!("{v:.1} {unit}")
        } else {
            format!("{v:.2} {unit}")
        };
        f.pad(&text)
    }
}

/// A speedup printed as `3.1× faster` or `0.4× (slower)`.
#[derive(Clone, Copy, Debug)]
pub struct Speedup(pub f64);

impl Display for Speedup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if self.0 >= 1.0 {
            format!("{:.1}× faster", self.0)
        } else {
            format!("{:.2}× — slower", self.0)
        };
        f.pad(&text)
    }
}

/// Lays out a text table with aligned columns (the first column left-aligned, the others
/// right-aligned), a header and a rule.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        width
            .iter()
            .map(|w| "─".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Lays out a Markdown table (the first column left-aligned, the others right-aligned).
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|", header.join(" | "));
    for i in 0..header.len() {
        out.push_str(if i == 0 { "---|" } else { "---:|" });
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(Secs(Duration::from_millis(1500)).to_string(), "1.50 s");
        assert_eq!(Secs(Duration::from_micros(45_600)).to_string(), "45.6 ms");
        assert_eq!(Secs(Duration::from_nanos(789_000)).to_string(), "789 µs");
        assert_eq!(Secs(Duration::from_nanos(450)).to_string(), "450 ns");
    }

    #[test]
    fn tables_align() {
        let t = text_table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\n───  ──\nxyz   1\n");
        let m = markdown_table(&["a", "b"], &[vec!["x".into(), "1".into()]]);
        assert_eq!(m, "| a | b |\n|---|---:|\n| x | 1 |\n");
    }

    #[test]
    fn out_keeps_rows_and_speedups() {
        let mut out = Out::quiet();
        out.measured(
            "w",
            Some(Duration::from_millis(300)),
            Duration::from_millis(100),
        );
        let s = out.rows()[0].speedup().unwrap();
        assert!((s - 3.0).abs() < 1e-9);
    }
}
