//! [`Progress`]: how many done out of how many.

use std::fmt;

/// How many are done out of how many: what [`AsCompleted`](crate::AsCompleted),
/// [`Map`](crate::Map) and [`MapUnordered`](crate::MapUnordered) report, so a progress bar
/// is one line.
///
/// Displays as `done/total`.
///
/// # Examples
///
/// ```
/// use cfutures_combinators::Progress;
///
/// let p = Progress { done: 3, total: 4 };
/// assert_eq!(p.to_string(), "3/4");
/// assert_eq!(p.fraction(), 0.75);
/// assert_eq!(p.remaining(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Progress {
    /// How many are done.
    pub done: usize,
    /// Out of how many.
    pub total: usize,
}

impl Progress {
    /// `done / total`, or 1.0 when `total` is zero.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }

    /// `total - done`.
    pub fn remaining(&self) -> usize {
        self.total.saturating_sub(self.done)
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.done, self.total)
    }
}
