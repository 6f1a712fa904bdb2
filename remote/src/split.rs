//! A `map` chunk taken apart into its items.
//!
//! A chunk runs as one task in one worker, so when that worker dies, which item killed it is
//! not known. An executor that retries such tasks ([`Slot::split`]) runs the chunk's items
//! again one job each: the item that kills workers then fails alone, and the others give
//! their values. The user holds one future for the chunk (`Future<ChunkOutput<R>>`), and that
//! stays so: the parts' slots are internal, each holds its item's place, and the last part
//! to finish completes the chunk's future with every item's own result, in input order. The
//! chunk's future is `Broken` if a part's executor broke (or lost it), cancelled if a part
//! was cancelled, and otherwise a [`ChunkOutput`] (compact when every item succeeded).
//!
//! Splitting needs the item type, which only the chunk's constructor knows
//! ([`crate::job::chunk`]): its slot is a [`ChunkSlot`], which decodes the chunk's items from
//! its command frame and encodes each as a chunk of one, for the same trampoline.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use cfutures_core::{Broken, ChunkOutput, FutureId, Promise, TaskError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::job::{Outcome, Parts as SplitParts, ReceivedPayload, Slot, TypedSlot};
use crate::oob;
use crate::prim;
use crate::wire;

/// The slot of a `map` chunk: a typed slot that can be split into one part per item.
pub(crate) struct ChunkSlot<A, R> {
    /// `None` once split: the parts hold the promise.
    inner: Option<TypedSlot<ChunkOutput<R>>>,
    id: FutureId,
    _items: PhantomData<fn(A)>,
}

impl<A, R> ChunkSlot<A, R> {
    pub(crate) fn new(inner: TypedSlot<ChunkOutput<R>>) -> Self {
        ChunkSlot {
            id: inner.id,
            inner: Some(inner),
            _items: PhantomData,
        }
    }
}

impl<A, R> Slot for ChunkSlot<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + Send + Sync + 'static,
{
    fn future_id(&self) -> FutureId {
        self.id
    }
    fn is_cancelled(&self) -> bool {
        self.inner.as_ref().map_or(true, |s| s.is_cancelled())
    }
    fn start(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.start())
    }
    fn cancel(&self) {
        if let Some(s) = &self.inner {
            s.cancel();
        }
    }
    fn finish(self: Box<Self>, outcome: Outcome, payloads: &[u8]) {
        if let Some(s) = self.inner {
            Box::new(s).finish(outcome, payloads);
        }
    }
    fn split(&mut self, frame: &[u8]) -> Option<SplitParts> {
        // A chunk whose payload went out of line (a segment, shared data attached) is
        // retried whole: its items are not in its frame.
        if self.inner.is_none()
            || frame.len() < wire::CMD_HEADER
            || frame[4] & wire::OUT_OF_LINE != 0
        {
            return None;
        }
        let items = prim::decode_items::<A>(&frame[wire::CMD_HEADER..]).ok()?;
        if items.len() < 2 {
            return None;
        }
        let mut frames = Vec::with_capacity(items.len());
        for item in items {
            let one = vec![item];
            let mut f = Vec::with_capacity(wire::CMD_HEADER + 16);
            // Same kind and function as the chunk; the executor gives each its own id.
            f.extend_from_slice(&frame[..wire::CMD_HEADER]);
            if !prim::encode_items(&one, &mut f) {
                wire::encode_into(&one[..], &mut f).ok()?;
            }
            wire::finish(&mut f, 0).ok()?;
            frames.push(f);
        }
        let promise = self.inner.take()?.promise;
        let n = frames.len();
        let parts = Arc::new(Mutex::new(Parts {
            promise: Some(promise),
            results: (0..n).map(|_| None).collect(),
            left: n,
            broken: None,
            cancelled: false,
        }));
        Some(
            frames
                .into_iter()
                .enumerate()
                .map(|(index, f)| {
                    let part: Box<dyn Slot> = Box::new(Part {
                        parts: parts.clone(),
                        index,
                        id: self.id,
                        done: false,
                    });
                    (f, part)
                })
                .collect(),
        )
    }
}

/// What the parts of one chunk share: the chunk's promise and each item's result so far.
struct Parts<R> {
    promise: Option<Promise<ChunkOutput<R>>>,
    results: Vec<Option<Result<R, TaskError>>>,
    left: usize,
    broken: Option<Broken>,
    cancelled: bool,
}

/// One item of a split chunk, run as a job of its own.
struct Part<R> {
    parts: Arc<Mutex<Parts<R>>>,
    index: usize,
    /// The chunk's future: `cancel` of it finds its parts.
    id: FutureId,
    done: bool,
}

/// How one part ended.
enum Ended<R> {
    Item(Result<R, TaskError>),
    Broken(Broken),
    Cancelled,
}

impl<R> Part<R> {
    fn lock(&self) -> MutexGuard<'_, Parts<R>> {
        // Nothing panics while holding it (user code runs after it is released).
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records this part's end; the last part completes the chunk's future.
    fn end(&mut self, ended: Ended<R>) {
        self.done = true;
        let mut p = self.lock();
        match ended {
            Ended::Item(r) => p.results[self.index] = Some(r),
            Ended::Broken(b) => {
                p.broken.get_or_insert(b);
            }
            Ended::Cancelled => p.cancelled = true,
        }
        p.left -= 1;
        if p.left > 0 {
            return;
        }
        let Some(promise) = p.promise.take() else {
            return;
        };
        let results = std::mem::take(&mut p.results);
        let (broken, cancelled) = (p.broken.take(), p.cancelled);
        drop(p);
        // Completing runs the future's callbacks: outside the lock.
        let _ = if let Some(b) = broken {
            promise.set_broken(b)
        } else if cancelled {
            promise.set_cancelled()
        } else {
            promise.set_result(
                results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(wire::codec("the item's result was lost"))))
                    .collect(),
            )
        };
    }
}

impl<R: DeserializeOwned + Send + Sync + 'static> Slot for Part<R> {
    fn future_id(&self) -> FutureId {
        self.id
    }
    fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }
    fn start(&self) -> bool {
        // The chunk's future is running already (it ran before it was split).
        !self.lock().cancelled
    }
    fn cancel(&self) {
        self.lock().cancelled = true;
    }
    fn finish(mut self: Box<Self>, outcome: Outcome, payloads: &[u8]) {
        let ended = match outcome {
            Outcome::Frame(true, r) => {
                Ended::Item(prim::decode_output::<R>(&payloads[r]).and_then(|out| {
                    out.into_iter()
                        .next()
                        .unwrap_or_else(|| Err(wire::codec("a chunk of one item gave no result")))
                }))
            }
            Outcome::Frame(false, r) => {
                Ended::Item(Err(match wire::decode::<TaskError>(&payloads[r]) {
                    Ok(e) | Err(e) => e,
                }))
            }
            // A result that came with an extension (its payload out of line, or shared
            // data attached): its bytes, copied, then as above. (A part's `R` is decoded
            // in a chunk of one; the attachments are the chunk output's own.)
            Outcome::Received(ok, rec) => {
                let bytes = match &rec.payload {
                    ReceivedPayload::InBand(r) => payloads[r.clone()].to_vec(),
                    ReceivedPayload::Shared(sp) => sp.to_vec(),
                };
                // The sender is a worker: not trusted with shared data it could still
                // change (see `oob`).
                oob::with_source(rec.attachments, false, || {
                    if ok {
                        Ended::Item(prim::decode_output::<R>(&bytes).and_then(|out| {
                            out.into_iter().next().unwrap_or_else(|| {
                                Err(wire::codec("a chunk of one item gave no result"))
                            })
                        }))
                    } else {
                        Ended::Item(Err(match wire::decode::<TaskError>(&bytes) {
                            Ok(e) | Err(e) => e,
                        }))
                    }
                })
            }
            Outcome::Failed(e) => Ended::Item(Err(e)),
            Outcome::Broken(b) => Ended::Broken(b),
            Outcome::Cancelled => Ended::Cancelled,
        };
        self.end(ended);
    }
}

impl<R> Drop for Part<R> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped without an outcome: cancelled (and then discarded), or lost.
            let ended = if self.lock().cancelled {
                Ended::Cancelled
            } else {
                Ended::Broken(Broken::new(
                    "the executor lost a part of the map chunk (a promise dropped without a \
                     result)",
                ))
            };
            self.end(ended);
        }
    }
}
