#!/usr/bin/env bash
# W10: cfutures-mpi vs mpi4py.futures in the same run (spawn mode, 2 workers), printing ratios.
#   bash mpi/bench.sh            # full (3 starts, 2,000 round trips)
#   W10_QUICK=1 bash mpi/bench.sh  # quick (CI): 1 start, 500 round trips
# Needs Open MPI 4.1 and libclang (../shared/MPI.md; .ci/mpi.sh installs them) and, for the
# Python half, mpi4py on the same Open MPI (MPICC=mpicc.openmpi python3 -m pip install mpi4py).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
export MPICC=${MPICC:-mpicc.openmpi}
cargo build --release -p cfutures-mpi --features mpi --example w10
quick=()
if [ -n "${W10_QUICK:-}" ] && [ "${W10_QUICK}" != 0 ]; then quick=(--quick); fi
# Every MPI process of the benchmark runs under a timeout of its own; this is the backstop.
exec timeout -k 10 600 cargo run -q --release -p cfutures-mpi --features mpi --example w10 -- "${quick[@]}"
