"""W10's Python half: mpi4py.futures.MPIPoolExecutor, spawn mode (singleton start), 2 workers.

Run by `mpi/examples/w10.rs` (the Rust half), each part in its own process under a hard
timeout; on its own:

    python3 examples/python/mpi4py_bench.py start
    python3 examples/python/mpi4py_bench.py main [TASKS TRIPS MAP_ITEMS]
    timeout -k 5 20 python3 examples/python/mpi4py_bench.py kill

Prints `key value` lines. Needs mpi4py on the same Open MPI as the Rust side
(`MPICC=mpicc.openmpi python3 -m pip install mpi4py`) and the environment of
`../shared/MPI.md` (OMPI_ALLOW_RUN_AS_ROOT..., OMPI_MCA_mpi_yield_when_idle=1).
"""

import time

T0 = time.perf_counter()  # before MPI_Init (importing mpi4py.futures initializes MPI)

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from mpi4py.futures import MPIPoolExecutor  # noqa: E402


def square(x):
    return x * x


def double(x):
    return x * 2


def announce_and_sleep(path, secs):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(secs)
    return os.getpid()


def start():
    with MPIPoolExecutor(max_workers=2) as ex:
        assert ex.submit(square, 3).result() == 9
    print("start_ms", (time.perf_counter() - T0) * 1e3, flush=True)


def main(tasks, trips, items):
    with MPIPoolExecutor(max_workers=2) as ex:
        for i in range(100):  # warm: both workers up
            ex.submit(square, i).result()
        t = time.perf_counter()
        fs = [ex.submit(square, i) for i in range(tasks)]
        for i, f in enumerate(fs):
            assert f.result() == i * i
        print("throughput_us", (time.perf_counter() - t) * 1e6 / tasks, flush=True)
        t = time.perf_counter()
        for i in range(trips):
            assert ex.submit(square, i).result() == i * i
        print("round_trip_us", (time.perf_counter() - t) * 1e6 / trips, flush=True)
        t = time.perf_counter()
        out = list(ex.map(double, range(items), chunksize=1000))
        print("map_ms", (time.perf_counter() - t) * 1e3, flush=True)
        assert len(out) == items and out[-1] == 2 * (items - 1)


def kill():
    path = os.path.join(tempfile.gettempdir(), "mpi4py-w10-kill-%d" % os.getpid())
    ex = MPIPoolExecutor(max_workers=2)
    f = ex.submit(announce_and_sleep, path, 60)
    t = time.perf_counter()
    pid = None
    while pid is None and time.perf_counter() - t < 30:
        try:
            with open(path) as fh:
                pid = int(fh.read())
        except (OSError, ValueError):
            time.sleep(0.002)
    os.unlink(path)
    os.kill(pid, signal.SIGKILL)
    killed = time.perf_counter()
    try:
        f.exception(timeout=10)
        print("kill_s", time.perf_counter() - killed, flush=True)
    except TimeoutError:
        print("kill_hangs 10", flush=True)
    # The executor cannot shut down with a dead worker (it waits forever): end here, hard.
    os._exit(0)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "main"
    if what == "start":
        start()
    elif what == "kill":
        kill()
    else:
        n, trips, items = (int(a) for a in (sys.argv[2:5] or (10000, 2000, 1000000)))
        main(n, trips, items)
