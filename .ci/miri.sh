#!/usr/bin/env bash
# Miri over the unsafe code of core, the thread pool and `map_vec`, under Stacked Borrows with
# Miri's leak and data-race checks: the future states' slabs (`state_arc`), the deadlock
# detector's per-thread frame stack (`tests/deadlock.rs`), `map_chunk`'s in-place buffers
# (`tests/map_chunk.rs`), the thread pool's inline job storage (`thread-pool/src/job.rs`),
# `map_vec`'s shared output buffer on its failure paths (`combinators/tests/map_vec.rs`),
# and the future's value cell and handle cast, which all of these go through
# (`tests/waiter.rs` waits on futures from other threads). About 3 minutes of tests on 2
# cores. Run by hand when changing their unsafe code (too slow for every run):
# core's `tests/future.rs` (2 min) and the rest of `map_vec.rs` (12 min). The process
# pool's unsafe code is system calls, which Miri does not run.
#
# Needs a nightly toolchain with the `miri` and `rust-src` components: installed here with
# rustup (3 tries; `--allow-downgrade` takes the newest nightly that has Miri). Fails loudly
# if that fails: the step is part of CI, not optional.
set -euo pipefail
cd "$(dirname "$0")/.."

installed=0
for t in 1 2 3; do
  if rustup toolchain install nightly --profile minimal --component miri,rust-src \
      --allow-downgrade --no-self-update; then
    installed=1
    break
  fi
  echo "installing nightly with miri failed (try $t of 3)" >&2
  sleep $((10 * t))
done
if [ "$installed" -ne 1 ]; then
  echo "could not install a nightly toolchain with miri" >&2
  exit 1
fi

cargo +nightly miri setup
# Isolation off: the tests' bounded waits read the real clock.
export MIRIFLAGS="-Zmiri-disable-isolation"
cargo +nightly miri test -p cfutures-core --lib state_arc
cargo +nightly miri test -p cfutures-core --test deadlock --test map_chunk --test waiter
cargo +nightly miri test -p cfutures-thread-pool --lib job
# Miri's scheduler found shutdown(wait) stranding a worker here (87ee5ba): keep it honest.
cargo +nightly miri test -p cfutures-thread-pool --test shutdown -- concurrent_submits
cargo +nightly miri test -p cfutures-combinators --test map_vec -- \
  a_panicking_drop first_failure refused_after_shutdown cancelled_chunks
