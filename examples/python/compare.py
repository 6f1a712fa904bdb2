"""The Python side of `compare`: workloads W1-W8 on concurrent.futures.

Run by `cargo run --release -p cfutures-examples --bin compare`, which runs the same
workloads on cfutures and prints both side by side. Alone:

    python3 examples/python/compare.py [--only W1,W2] [--w6-mib N]

Prints one line per workload, `RESULT W1 <value> <unit>`. Every figure is measured
the way the Rust side measures it (same sizes, same worker counts, pools started before the
clock starts unless creating the pool is the workload).
"""

import argparse
import hashlib
import statistics
import sys
import time
from concurrent.futures import (
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)

MIB = bytes(i % 251 for i in range(1 << 20))


def noop():
    return None


def double(x):
    return x * 2


def inc(x):
    return x + 1


def sha256_mib(mib):
    h = hashlib.sha256()
    for _ in range(mib):
        h.update(MIB)  # releases the GIL (buffer > 2 KiB)
    return h.hexdigest()


def w1():
    """Submit 100,000 no-op tasks to 2 threads, collect every result: us per task."""
    n = 100_000
    with ThreadPoolExecutor(2) as ex:
        ex.submit(noop).result()
        t = time.perf_counter()
        fs = [ex.submit(noop) for _ in range(n)]
        for f in fs:
            f.result()
        dt = time.perf_counter() - t
    return dt / n * 1e6, "us/task"


def w2():
    """One task submitted and waited for, 10,000 times: median us."""
    with ThreadPoolExecutor(2) as ex:
        ex.submit(noop).result()
        samples = []
        for _ in range(10_000):
            t = time.perf_counter_ns()
            ex.submit(noop).result()
            samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1e3, "us"


def w3():
    """Process-pool map of x*2 over 1,000,000 items, chunksize 1000: ms."""
    with ProcessPoolExecutor(2) as ex:
        ex.submit(noop).result()
        t = time.perf_counter()
        out = list(ex.map(double, range(1_000_000), chunksize=1000))
        dt = time.perf_counter() - t
    assert out[-1] == 1_999_998
    return dt * 1e3, "ms"


def w4():
    """as_completed over 100,000 already-finished futures: ms."""
    fs = []
    for i in range(100_000):
        f = Future()
        f.set_result(i)
        fs.append(f)
    t = time.perf_counter()
    n = sum(1 for _ in as_completed(fs))
    dt = time.perf_counter() - t
    assert n == 100_000
    return dt * 1e3, "ms"


def w5():
    """Process pool, 10,000 tiny tasks (x + 1) on 2 workers: us per task."""
    n = 10_000
    with ProcessPoolExecutor(2) as ex:
        ex.submit(noop).result()
        t = time.perf_counter()
        fs = [ex.submit(inc, i) for i in range(n)]
        total = sum(f.result() for f in fs)
        dt = time.perf_counter() - t
    assert total == n * (n + 1) // 2
    return dt / n * 1e6, "us/task"


def w6(mib):
    """8 CPU-bound sha256 tasks on 2 threads vs sequential: speedup (best of 3 each)."""
    seq = par = float("inf")
    with ThreadPoolExecutor(2) as ex:
        ex.submit(noop).result()
        for _ in range(3):
            t = time.perf_counter()
            a = [sha256_mib(mib) for _ in range(8)]
            seq = min(seq, time.perf_counter() - t)
            t = time.perf_counter()
            b = list(ex.map(sha256_mib, [mib] * 8))
            par = min(par, time.perf_counter() - t)
            assert a == b
    return seq / par, "x"


def w7():
    """42 tasks sleeping 100 ms on 20 threads: ms (ideal 300)."""
    with ThreadPoolExecutor(20) as ex:
        t = time.perf_counter()
        fs = [ex.submit(time.sleep, 0.1) for _ in range(42)]
        for f in fs:
            f.result()
        dt = time.perf_counter() - t
    return dt * 1e3, "ms"


def w8():
    """Create a process pool of 2, run one task, shut down: median ms of 5."""
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        with ProcessPoolExecutor(2) as ex:
            ex.submit(inc, 1).result()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3, "ms"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--only", default="W1,W2,W3,W4,W5,W6,W7,W8")
    p.add_argument("--w6-mib", type=int, default=32)
    args = p.parse_args()
    work = {
        "W1": w1,
        "W2": w2,
        "W3": w3,
        "W4": w4,
        "W5": w5,
        "W6": lambda: w6(args.w6_mib),
        "W7": w7,
        "W8": w8,
    }
    print(f"VERSION {sys.version.split()[0]}", flush=True)
    for name in args.only.split(","):
        value, unit = work[name]()
        print(f"RESULT {name} {value:.6g} {unit}", flush=True)


if __name__ == "__main__":
    main()
