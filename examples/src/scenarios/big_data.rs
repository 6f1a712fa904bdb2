//! Scenario 12 — big data: sha256 of eight 16 MB buffers in worker processes, the buffers
//! sent through the pipes (as Python's pool pickles `bytes` through its pipes), through
//! shared memory (the default for payloads of 64 KiB or more), and as views of one
//! `SharedBytes` (nothing but a descriptor crosses); then the transfer alone, with tasks
//! that return only the buffer's length.
//!
//! Nothing in the task code changes between the first two: `submit_fn(digest, buffer)`
//! with a plain `Vec<u8>`. The third makes the data shared once and sends views.

use std::time::Duration;

use cfutures_process_pool::{ProcessPoolExecutor, SharedBytes};
use sha2::{Digest, Sha256};

use crate::report::{timed, BoxError, Out};

/// Buffers hashed.
pub const BUFFERS: usize = 8;
/// Bytes in each (16 MB).
pub const SIZE: usize = 16_000_000;
/// Workers in each pool.
pub const WORKERS: usize = 2;

const WAIT: Duration = Duration::from_secs(60);

/// The sha256 digest of a buffer (the task).
pub fn digest(buf: Vec<u8>) -> [u8; 32] {
    Sha256::digest(&buf).into()
}

/// The sha256 digest of a view of shared data (the task, for `SharedBytes`).
pub fn digest_view(buf: SharedBytes) -> [u8; 32] {
    Sha256::digest(&buf[..]).into()
}

/// The length of a buffer (a task that does nothing but receive it).
pub fn length(buf: Vec<u8>) -> usize {
    buf.len()
}

/// The length of a view (receiving it costs O(1)).
pub fn length_view(buf: SharedBytes) -> usize {
    buf.len()
}

/// `n` pseudo-random bytes (xorshift from `seed`).
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ seed;
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    v
}

/// Runs the scenario.
///
/// # Errors
///
/// If a pool cannot start or a task fails.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    run_sized(out, SIZE)
}

/// The scenario with buffers of `size` bytes (the tests use small ones).
///
/// # Errors
///
/// As [`run`].
pub fn run_sized(out: &mut Out, size: usize) -> Result<(), BoxError> {
    let bufs: Vec<Vec<u8>> = (0..BUFFERS).map(|i| data(size, i as u64)).collect();
    let each = human(size);
    out.say(format!(
        "sha256 of {BUFFERS} buffers of {each} on {WORKERS} worker processes"
    ));
    let (expected, seq) = timed(|| bufs.iter().map(|b| digest(b.clone())).collect::<Vec<_>>());

    let pipes = ProcessPoolExecutor::builder()
        .max_workers(WORKERS)
        .shared_memory_threshold(usize::MAX)
        .build()?;
    let shm = ProcessPoolExecutor::new(WORKERS)?;
    for pool in [&pipes, &shm] {
        // Workers up, and each side's buffers warm.
        let warm: Vec<_> = (0..WORKERS)
            .map(|_| pool.submit_fn(length, bufs[0].clone()))
            .collect::<Result<_, _>>()?;
        for f in warm {
            f.result_timeout(WAIT)?;
        }
    }
    // The data once in shared memory; each task gets a view of its buffer.
    let (shared, made) = timed(|| {
        SharedBytes::new_with(BUFFERS * size, |d| {
            for (chunk, b) in d.chunks_mut(size).zip(&bufs) {
                chunk.copy_from_slice(b);
            }
        })
    });
    let shared = shared?;
    let views: Vec<SharedBytes> = (0..BUFFERS)
        .map(|i| shared.slice(i * size..(i + 1) * size))
        .collect();

    let mut times = Vec::new();
    for (what, pool) in [
        ("through the pipes", &pipes),
        ("through shared memory", &shm),
    ] {
        // (The copies the pool consumes are made before the clock starts: Python's pool is
        // handed the same `bytes` without a copy.)
        let args = bufs.clone();
        let (got, t) = timed(|| -> Result<Vec<[u8; 32]>, BoxError> {
            let fs = args
                .into_iter()
                .map(|b| pool.submit_fn(digest, b))
                .collect::<Result<Vec<_>, _>>()?;
            fs.iter().map(|f| Ok(*f.result_timeout(WAIT)?)).collect()
        });
        check(&expected, got?)?;
        out.measured(format!("8 × {each} sha256, {what}"), Some(seq), t);
        times.push(t);
    }
    let (got, t) = timed(|| -> Result<Vec<[u8; 32]>, BoxError> {
        let fs = views
            .iter()
            .map(|v| shm.submit_fn(digest_view, v.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        fs.iter().map(|f| Ok(*f.result_timeout(WAIT)?)).collect()
    });
    check(&expected, got?)?;
    out.measured(
        format!("8 × {each} sha256, views of one SharedBytes"),
        Some(seq),
        t,
    );
    out.say(format!(
        "through shared memory the same code ran {:.1}× faster than through the pipes \
         (the SharedBytes was made once, in {} ms)",
        times[0].as_secs_f64() / times[1].as_secs_f64(),
        made.as_millis()
    ));

    // The transfer alone: the task only receives the buffer.
    let mut sent = Vec::new();
    for pool in [&pipes, &shm] {
        let args = bufs.clone();
        let (n, t) = timed(|| -> Result<usize, BoxError> {
            let fs = args
                .into_iter()
                .map(|b| pool.submit_fn(length, b))
                .collect::<Result<Vec<_>, _>>()?;
            fs.iter().map(|f| Ok(*f.result_timeout(WAIT)?)).sum()
        });
        if n? != BUFFERS * size {
            return Err("a buffer arrived cut".into());
        }
        sent.push(t);
    }
    let (n, t) = timed(|| -> Result<usize, BoxError> {
        let fs = views
            .iter()
            .map(|v| shm.submit_fn(length_view, v.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        fs.iter().map(|f| Ok(*f.result_timeout(WAIT)?)).sum()
    });
    if n? != BUFFERS * size {
        return Err("a view arrived cut".into());
    }
    out.say(format!(
        "sending the {} alone (tasks that return the length): pipes {} ms, shared memory \
         {} ms, SharedBytes views {:.2} ms",
        human(BUFFERS * size),
        sent[0].as_millis(),
        sent[1].as_millis(),
        t.as_secs_f64() * 1e3
    ));
    Ok(())
}

/// `n` bytes in MB or kB.
fn human(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{:.0} MB", n as f64 / 1e6)
    } else {
        format!("{:.0} kB", n as f64 / 1e3)
    }
}

fn check(expected: &[[u8; 32]], got: Vec<[u8; 32]>) -> Result<(), BoxError> {
    if got == expected {
        Ok(())
    } else {
        Err("the pool computed different digests".into())
    }
}
