//! [`TryMap`]: `map` over a function returning `Result`, with the function's error as the
//! item's task error (what [`fallible`](cfutures_core::fallible) does for `submit`).

use std::iter::FusedIterator;

use cfutures_core::{Error, TaskError};

use crate::map::{Map, MapUnordered};
use crate::progress::Progress;

/// The iterator of [`try_map`](crate::MapBuilder::try_map) and
/// [`try_map_unordered`](crate::MapBuilder::try_map_unordered): each item's
/// `Result<R, Error>`, where an `Err(e)` the function returned is
/// [`Error::Failed`]`(`[`TaskError::Error`]`)` holding `e` (downcast it with
/// [`TaskError::downcast_ref`]), exactly as a failed `submit(fallible(..))`.
///
/// Without it, `map` over a function returning `Result<R, E>` yields
/// `Result<Result<R, E>, Error>`: two layers to unpack, and `FIRST_EXCEPTION`-style code
/// cannot treat "the task failed" and "the task returned an error" alike.
///
/// The conversion happens on the calling thread as the items are taken, so it works with
/// every executor, the process pool included: there `E` crosses back as part of the result
/// (so it must be serializable, like `R`), and the future's error is the original `E`.
#[derive(Debug)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct TryMap<M> {
    inner: M,
}

impl<M> TryMap<M> {
    pub(crate) fn new(inner: M) -> Self {
        TryMap { inner }
    }

    /// The underlying `map` iterator (its items are `Result<Result<R, E>, Error>`).
    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<E, F, I: Iterator, R> TryMap<Map<E, F, I, R>> {
    /// Items done of items submitted so far (see [`Map::progress`]).
    pub fn progress(&self) -> Progress {
        self.inner.progress()
    }
}

impl<E, F, I: Iterator, R: Send + Sync + 'static> TryMap<MapUnordered<E, F, I, R>> {
    /// Items done of items submitted so far (see [`MapUnordered::progress`]).
    pub fn progress(&self) -> Progress {
        self.inner.progress()
    }
}

/// An item of the inner `map`, with the function's own error moved into the task error.
#[inline]
pub(crate) fn flatten<R, Er>(item: Result<Result<R, Er>, Error>) -> Result<R, Error>
where
    Er: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    match item {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Failed(TaskError::from_boxed(e.into()))),
        Err(e) => Err(e),
    }
}

impl<M, R, Er> Iterator for TryMap<M>
where
    M: Iterator<Item = Result<Result<R, Er>, Error>>,
    Er: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    type Item = Result<R, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(flatten)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<M, R, Er> FusedIterator for TryMap<M>
where
    M: FusedIterator<Item = Result<Result<R, Er>, Error>>,
    Er: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
}
