"""ezq next to the standard library, on this machine: `make bench` (or `python bench/bench.py`).

Every measurement runs in a fresh interpreter (so memory peaks and start-up
costs are its own); rounds interleave the implementations, and the table shows
medians. The last column is ezq divided by the best standard-library peer, so
read it as "how many times better" when higher is better (↑), and "how many
times worse" when lower is better (↓). On Linux, the report ends by saying
whether other processes took CPU during the runs (then their figures are off:
a busy machine even makes round trips faster, as no CPU sleeps).

    python bench/bench.py                    # every case, 3 rounds
    python bench/bench.py --repeat 5 map_tiny latency
    python bench/bench.py --size             # the size runs: 1M-item map, 100 MB stop-then-read
    python bench/bench.py --calls            # a small map per call, on each start method
    python bench/bench.py --travel           # the script's own classes and globals, on each start method
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if os.environ.get("BENCH_SLOW_IMPORT"):  # stands for a script that imports something slow
    time.sleep(0.3)
sys.path.insert(0, str(ROOT))
import ezq  # noqa: E402  (the checkout's ezq.py, not an installed one)

CPUS = ezq.NUM_CPUS
THREADS = ezq.NUM_THREADS
MiB = 1 << 20


## Work ##


def double(x: int) -> int:
    return 2 * x


def spin(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i & 7
    return total


def nap(x: int) -> int:
    time.sleep(0.01)
    return x


def blob(x: int) -> bytes:
    return bytes([x & 255]) * MiB


def sum_worker(q: Any, out: Any) -> None:
    total = 0
    for msg in q:
        total += msg.data
    out.put(total)


def std_sum_worker(q: Any, out: Any) -> None:
    total = 0
    for x in iter(q.get, None):
        total += x
    out.put(total)


def echo_worker(q: Any, out: Any) -> None:
    for msg in q:
        out.put(msg.data)


def std_echo_worker(q: Any, out: Any) -> None:
    for x in iter(q.get, None):
        out.put(x)


def pipe_echo_worker(conn: Any) -> None:
    for x in iter(conn.recv, None):
        conn.send(x)


def blob_worker(q: Any, out: Any) -> None:
    for msg in q:
        out.put(bytes([msg.data & 255]) * MiB, order=msg.data)


def idle_worker(q: Any) -> None:
    for _ in q:
        pass


def std_idle_worker(q: Any) -> None:
    for _ in iter(q.get, None):
        pass


@dataclass
class Point:
    """A class of the script's own: under spawn and forkserver it travels by value."""

    x: int
    y: int


def point_worker(q: Any, out: Any) -> None:
    total = 0
    for msg in q:
        total += msg.data.x
    out.put(total)


BIG = b""
"""A large global of the script's: set by map_big_global, read by the task."""


def read_big(i: int) -> int:
    return len(BIG) + i


## Implementations of a parallel map ##


def process_map(impl: str, func: Callable[[Any], Any], items: Iterable[Any], n: int) -> Iterator[Any]:
    chunksize = max(1, n // (4 * CPUS))  # Pool.map's rule, for the peers that need one
    if impl == "serial":
        yield from map(func, items)
    elif impl == "Pool.imap":
        with multiprocessing.Pool() as pool:
            yield from pool.imap(func, items, chunksize)
    elif impl == "ProcessPoolExecutor":
        with ProcessPoolExecutor() as executor:
            yield from executor.map(func, items, chunksize=chunksize)
    elif impl == "ezq":
        yield from ezq.map(func, items)
    else:
        raise ValueError(impl)


def thread_map(impl: str, func: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    if impl == "ThreadPool.imap":
        from multiprocessing.pool import ThreadPool

        with ThreadPool(THREADS) as pool:
            yield from pool.imap(func, items)
    elif impl == "ThreadPoolExecutor":
        with ThreadPoolExecutor(THREADS) as executor:
            yield from executor.map(func, items)
    elif impl == "ezq":
        yield from ezq.map(func, items, kind="thread")
    else:
        raise ValueError(impl)


def drain(results: Iterable[Any], want: Callable[[int], Any], n: int) -> None:
    count = 0
    for i, have in enumerate(results):
        if have != want(i):
            raise AssertionError(f"result {i} is {have!r}, not {want(i)!r}")
        count += 1
    if count != n:
        raise AssertionError(f"{count} results, not {n}")


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


## Cases: each returns (figure, details) ##


def map_tiny(impl: str) -> tuple[float, dict[str, Any]]:
    n = 200_000
    seconds = timed(lambda: drain(process_map(impl, double, range(n), n), lambda i: 2 * i, n))
    return n / seconds, {"seconds": seconds}


def map_cpu(impl: str) -> tuple[float, dict[str, Any]]:
    n = 1000
    loops = max(1, int(200_000 * 0.002 / min(timed(lambda: spin(200_000)) for _ in range(3))))
    serial = timed(lambda: [spin(loops) for _ in range(n // 5)]) * 5
    want = spin(loops)
    seconds = timed(lambda: drain(process_map(impl, spin, repeat(loops, n), n), lambda i: want, n))
    return serial / seconds, {"seconds": seconds, "serial_seconds": serial}


def map_large(impl: str) -> tuple[float, dict[str, Any]]:
    n = 200
    items = (bytes([i & 255]) * MiB for i in range(n))
    seconds = timed(lambda: drain(process_map(impl, len, items, n), lambda i: MiB, n))
    return n * MiB / 1e6 / seconds, {"seconds": seconds}


def map_memory(impl: str) -> tuple[float, dict[str, Any]]:
    n = 250_000
    items = (bytes([i & 255]) * 1024 for i in range(n))
    seconds = timed(lambda: drain(process_map(impl, len, items, n), lambda i: 1024, n))
    return peak_mib(), {"seconds": seconds}


def map_io_threads(impl: str) -> tuple[float, dict[str, Any]]:
    n = 500
    seconds = timed(lambda: drain(thread_map(impl, nap, range(n)), lambda i: i, n))
    return n / seconds, {"seconds": seconds, "limit": THREADS / 0.01}


def q_sum(impl: str) -> tuple[float, dict[str, Any]]:
    """The README's "Sum Messages" with process workers."""
    return sum_messages(impl, 50_000, threads=False)


def q_thread(impl: str) -> tuple[float, dict[str, Any]]:
    """The same with thread workers."""
    return sum_messages(impl, 200_000, threads=True)


def sum_messages(impl: str, n: int, threads: bool) -> tuple[float, dict[str, Any]]:
    """n messages to one worker per CPU, one total back from each: messages per second."""

    def run() -> None:
        if impl in ("multiprocessing.Queue", "queue.Queue"):
            make_queue: Any = queue.Queue if threads else multiprocessing.Queue
            make_worker: Any = threading.Thread if threads else multiprocessing.Process
            q, out = make_queue(), make_queue()
            workers = [make_worker(target=std_sum_worker, args=(q, out)) for _ in range(CPUS)]
            for w in workers:
                w.start()
            for i in range(n):
                q.put(i)
            for _ in workers:
                q.put(None)
            total = sum(out.get() for _ in workers)  # before join: a multiprocessing.Queue could hang
            for w in workers:
                w.join()
        else:
            kind: ezq.Kind = "thread" if threads else "process"
            ezq_q: ezq.Q[int] = ezq.Q(kind)
            ezq_out: ezq.Q[int] = ezq.Q(kind)
            start = ezq.run_thread if threads else ezq.run
            ezq_workers = [start(sum_worker, ezq_q, ezq_out) for _ in range(CPUS)]
            for i in range(n):
                ezq_q.put(i)
            ezq_q.stop(ezq_workers)
            total = sum(m.data for m in ezq_out.items())
        assert total == n * (n - 1) // 2

    seconds = timed(run)
    return n / seconds, {"seconds": seconds}


def latency(impl: str) -> tuple[float, dict[str, Any]]:
    """One small message to a process worker and back, over two queues (or a Pipe)."""
    n, warmup = 2000, 100
    if impl == "Pipe":
        here, there = multiprocessing.Pipe()
        worker = multiprocessing.Process(target=pipe_echo_worker, args=(there,))
        worker.start()
        samples = ping_pong(here.send, here.recv, n + warmup)
        here.send(None)
        worker.join()
    elif impl == "multiprocessing.Queue":
        q: Any = multiprocessing.Queue()
        out: Any = multiprocessing.Queue()
        worker = multiprocessing.Process(target=std_echo_worker, args=(q, out))
        worker.start()
        samples = ping_pong(q.put, out.get, n + warmup)
        q.put(None)
        worker.join()
    else:
        ezq_q: ezq.Q[int] = ezq.Q()
        ezq_out: ezq.Q[int] = ezq.Q()
        ezq_worker = ezq.run(echo_worker, ezq_q, ezq_out)
        replies = iter(ezq_out)
        samples = ping_pong(ezq_q.put, lambda: next(replies).data, n + warmup)
        ezq_q.stop(ezq_worker)
    return statistics.median(samples[warmup:]) * 1e6, {}


def ping_pong(send: Callable[[int], Any], recv: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        send(i)
        assert recv() == i
        samples.append(time.perf_counter() - start)
    return samples


def startup(impl: str) -> tuple[float, dict[str, Any]]:
    n = 20

    def cycle() -> None:
        if impl == "multiprocessing.Queue":
            q: Any = multiprocessing.Queue()
            workers = [multiprocessing.Process(target=std_idle_worker, args=(q,)) for _ in range(2)]
            for w in workers:
                w.start()
            for _ in workers:
                q.put(None)
            for w in workers:
                w.join()
        else:
            q = ezq.Q()
            q.stop([ezq.run(idle_worker, q) for _ in range(2)])

    def cycles() -> None:
        for _ in range(n):
            cycle()

    return timed(cycles) / n * 1000, {}


def size_map_1m(impl: str) -> tuple[float, dict[str, Any]]:
    n = 1_000_000
    seconds = timed(lambda: drain(ezq.map(double, range(n)), lambda i: 2 * i, n))
    return seconds, {"peak_rss_mib": peak_mib()}


def size_stop_then_read(impl: str) -> tuple[float, dict[str, Any]]:
    """The README's "2 queues": 100 results of 1 MiB, stop() first, then items()."""
    kind: ezq.Kind = "thread" if impl == "ezq threads" else "process"
    run = ezq.run_thread if kind == "thread" else ezq.run

    def go() -> None:
        q: ezq.Q[int] = ezq.Q(kind)
        out: ezq.Q[bytes] = ezq.Q(kind)
        workers = [run(blob_worker, q, out) for _ in range(CPUS)]
        for i in range(100):
            q.put(i)
        q.stop(workers)
        have = [len(m.data) for m in out.items(sort=True)]
        assert have == [MiB] * 100

    seconds = timed(go)
    return seconds, {"peak_rss_mib": peak_mib()}


def size_map_100k_executor(impl: str) -> tuple[float, dict[str, Any]]:
    """The README's dask example: 100,000 tiny tasks, on a local dask cluster or ezq's own workers."""
    n = 100_000
    if impl == "ezq":
        seconds = timed(lambda: drain(ezq.map(double, range(n)), lambda i: 2 * i, n))
        return seconds, {"peak_rss_mib": peak_mib()}
    distributed = importlib.import_module("distributed")  # in make bench's venv, not lint's

    with distributed.LocalCluster(n_workers=CPUS, threads_per_worker=1, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            executor = client.get_executor()
            seconds = timed(
                lambda: drain(ezq.map(double, range(n), executor=executor, num=CPUS), lambda i: 2 * i, n)
            )
    return seconds, {"peak_rss_mib": peak_mib()}


def per_call(impl: str) -> tuple[float, dict[str, Any]]:
    """`map(double, range(20))` on 2 workers, 20 calls after one to warm up: median ms per call.

    `ezq.map` starts fresh workers on every call; the Pool is made once and reused.
    """
    items = range(20)
    pool = multiprocessing.Pool(2) if impl == "Pool (reused)" else None

    def call() -> None:
        have = pool.map(double, items) if pool else list(ezq.map(double, items, num=2))
        assert have == [2 * x for x in items]

    samples = [timed(call) for _ in range(21)]
    if pool:
        pool.close()
    return statistics.median(samples[1:]) * 1000, {}


def q_dataclass(impl: str) -> tuple[float, dict[str, Any]]:
    """µs per message for 20,000 puts of a script's dataclass to a worker that reads them."""
    n = 20_000
    q, out = ezq.Q(), ezq.Q()
    worker = ezq.run(point_worker, q, out)

    def go() -> None:
        for i in range(n):
            q.put(Point(i, 0))
        q.stop(worker)
        assert [msg.data for msg in out.items()] == [n * (n - 1) // 2]

    return timed(go) / n * 1e6, {}


def map_big_global(impl: str) -> tuple[float, dict[str, Any]]:
    """Seconds per `ezq.map` of 100 items whose task reads a 200 MB global: median of 3 calls."""
    global BIG
    BIG = bytes(200 * MiB)
    want = [len(BIG) + i for i in range(100)]

    def call() -> None:
        assert list(ezq.map(read_big, range(100))) == want

    return statistics.median(timed(call) for _ in range(3)), {}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


MAPS = ["serial", "Pool.imap", "ProcessPoolExecutor", "ezq"]
CASES: dict[str, tuple[Callable[[str], tuple[float, dict[str, Any]]], str, str, list[str]]] = {
    # name: (function, unit, better, implementations)
    "map_tiny": (map_tiny, "items/s", "higher", MAPS),
    "map_cpu": (map_cpu, "x serial", "higher", MAPS),
    "map_large": (map_large, "MB/s", "higher", MAPS[1:]),
    "map_memory": (map_memory, "peak MiB", "lower", MAPS),
    "map_io_threads": (map_io_threads, "items/s", "higher", ["ThreadPool.imap", "ThreadPoolExecutor", "ezq"]),
    "q_sum": (q_sum, "msgs/s", "higher", ["multiprocessing.Queue", "ezq"]),
    "q_thread": (q_thread, "msgs/s", "higher", ["queue.Queue", "ezq"]),
    "latency": (latency, "µs", "lower", ["Pipe", "multiprocessing.Queue", "ezq"]),
    "startup": (startup, "ms", "lower", ["multiprocessing.Queue", "ezq"]),
}
SIZES: dict[str, tuple[Callable[[str], tuple[float, dict[str, Any]]], str, str, list[str]]] = {
    "map 1,000,000 items": (size_map_1m, "s", "lower", ["ezq"]),
    "stop, then read 100 MB": (size_stop_then_read, "s", "lower", ["ezq", "ezq threads"]),
    "map 100,000 items": (size_map_100k_executor, "s", "lower", ["ezq", "ezq on a local dask cluster"]),
}
CALLS = ["ezq.map", "Pool (reused)"]
TRAVEL: dict[str, tuple[Callable[[str], tuple[float, dict[str, Any]]], str]] = {
    "Q.put of a script's dataclass": (q_dataclass, "µs per message"),
    "map reading a 200 MB global": (map_big_global, "s per call"),
}
OTHER_LOAD = 0.5
"""CPUs that other processes may use during a run before the report says the machine was busy."""
NOT_PEERS = {"ezq", "serial", "Pipe", "ezq threads"}  # Pipe is the limit, not a peer


## Runner ##


def measure(table: str, case: str, impl: str, method: str | None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; note how busy other processes kept the CPUs."""
    args = [sys.executable, __file__, "--one", table, case, impl]
    if method:
        args += ["--method", method]
    before, start = cpu_by_process(), time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    if before:
        after = cpu_by_process()
        # (max: a pid may have been reused by a newer process, which has used less)
        others = sum(max(0.0, after[pid] - before[pid]) for pid in before.keys() & after.keys())
        result["other_cores"] = round(others / (time.perf_counter() - start), 2)
    return result


def cpu_by_process() -> dict[int, float]:
    """CPU seconds each process but this one has used so far (Linux; elsewhere, none).

    A run's own processes (and their workers) start after the first look, so only
    processes that ran all along count as other load: enough to catch a busy machine.
    """
    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited
        seconds[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    seconds.pop(os.getpid(), None)
    return seconds


def report_other_load(results: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    """Say whether other processes took CPU during the runs: their figures are then off."""
    loads = [float(r["other_cores"]) for runs in results.values() for r in runs if "other_cores" in r]
    if loads:
        busy = sum(load > OTHER_LOAD for load in loads)
        print(
            f"\nOther processes used up to {max(loads):.2f} CPUs during a run; "
            f"{busy} of {len(loads)} runs saw more than {OTHER_LOAD}"
            + (": rerun when the machine is quiet." if busy else ".")
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cases", nargs="*", help="cases to run (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", action="store_true", help="the size runs instead of the comparison")
    parser.add_argument("--calls", action="store_true", help="a small map per call, on each start method")
    parser.add_argument(
        "--travel", action="store_true", help="the script's classes and globals, per start method"
    )
    parser.add_argument("--method", help="multiprocessing start method (default: the platform's)")
    parser.add_argument("--one", nargs=3, metavar=("TABLE", "CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.method:
        multiprocessing.set_start_method(args.method)
    if args.one:
        table, case, impl = args.one
        run: Callable[[str], tuple[float, dict[str, Any]]]
        if table == "calls":
            run = per_call
        elif table == "travel":
            run = TRAVEL[case][0]
        else:
            run = (SIZES if table == "size" else CASES)[case][0]
        figure, details = run(impl)
        print(json.dumps({"figure": figure, **details}))
        return 0
    if args.calls:
        return calls_table(args.repeat)
    if args.travel:
        return travel_table(args.repeat)

    table = "size" if args.size else "cases"
    cases = SIZES if args.size else CASES
    chosen = args.cases or list(cases)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.repeat):
        for case in chosen:
            impls = cases[case][3]
            shift = round_ % len(impls)  # rotate the order between rounds
            for impl in impls[shift:] + impls[:shift]:
                result = measure(table, case, impl, args.method)
                results.setdefault((case, impl), []).append(result)
                print(f"[{round_ + 1}/{args.repeat}] {case} {impl}: {result}", file=sys.stderr, flush=True)

    method = args.method or multiprocessing.get_start_method()
    print(
        f"\n{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"start method {method}, {time.strftime('%Y-%m-%d')}, medians of {args.repeat} runs\n"
    )
    if args.size:
        print("| run | seconds | peak RSS of the main process (MiB) |\n|---|---|---|")
        for case in chosen:
            for impl in cases[case][3]:
                good = [r for r in results[(case, impl)] if "error" not in r]
                if not good:
                    print(f"| {case} ({impl}) | error | |")
                    continue
                seconds = statistics.median(float(r["figure"]) for r in good)
                rss = statistics.median(float(r["peak_rss_mib"]) for r in good)
                print(f"| {case} ({impl}) | {seconds:.2f} | {rss:.0f} |")
        report_other_load(results)
        return 0

    print("| case | unit | ezq | best standard-library peer | ezq / peer | reference |")
    print("|---|---|---|---|---|---|")
    for case in chosen:
        _, unit, better, impls = cases[case]
        medians: dict[str, float] = {}
        for impl in impls:
            figures = [float(r["figure"]) for r in results[(case, impl)] if "error" not in r]
            if figures:
                medians[impl] = statistics.median(figures)
        peers = {i: m for i, m in medians.items() if i not in NOT_PEERS}
        arrow = "↑" if better == "higher" else "↓"
        peer = ratio = "—"
        if peers and "ezq" in medians:
            best = (max if better == "higher" else min)(peers, key=lambda i: peers[i])
            peer = f"{fmt(peers[best])} ({best})"
            ratio = f"{medians['ezq'] / peers[best]:.2f}"
        refs = [f"{fmt(medians[i])} ({i})" for i in ("serial", "Pipe") if i in medians]
        if case == "map_cpu":
            refs.append(f"{CPUS}.00 (CPUs)")
        if case == "map_io_threads":
            refs.append(f"{fmt(THREADS / 0.01)} (limit)")
        print(
            f"| {case} | {unit} {arrow} | {fmt(medians.get('ezq'))} | {peer} | {ratio} | {', '.join(refs)} |"
        )
    report_other_load(results)
    return 0


def calls_table(repeat: int) -> int:
    """ezq.map per call against a reused Pool, on each start method, with and without a slow import."""
    runs = [(m, slow) for m in multiprocessing.get_all_start_methods() for slow in (False, True)]
    results: dict[tuple[str, bool, str], list[float]] = {}
    for round_ in range(repeat):
        for method, slow in runs:
            for impl in CALLS if round_ % 2 == 0 else CALLS[::-1]:
                args = [sys.executable, __file__, "--one", "calls", "-", impl, "--method", method]
                env = dict(os.environ, BENCH_SLOW_IMPORT="1" if slow else "")
                done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
                figure = float(json.loads(done.stdout.strip().splitlines()[-1])["figure"])
                results.setdefault((method, slow, impl), []).append(figure)
                note = f"[{round_ + 1}/{repeat}] {method} slow={slow} {impl}: {figure:.2f} ms"
                print(note, file=sys.stderr)
    print(
        f"\n{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}, medians of {repeat} runs of the median of 20 calls\n"
    )
    columns = ["start method", "the script imports", "ezq.map per call (ms)", "a reused Pool per call (ms)"]
    print("| " + " | ".join([*columns, "ezq / ezq on fork"]) + " |")
    print("|---|---|---|---|---|")
    fork = statistics.median(results[("fork", False, "ezq.map")])
    for method, slow in runs:
        ezq_ms = statistics.median(results[(method, slow, "ezq.map")])
        pool_ms = statistics.median(results[(method, slow, "Pool (reused)")])
        what = "a slow module (0.3 s)" if slow else "nothing slow"
        print(f"| {method} | {what} | {ezq_ms:.2f} | {pool_ms:.2f} | {ezq_ms / fork:.2f} |")
    return 0


def travel_table(repeat: int) -> int:
    """What the script's own classes and globals cost to travel: each start method against fork."""
    methods = multiprocessing.get_all_start_methods()
    results: dict[tuple[str, str], list[float]] = {}
    for round_ in range(repeat):
        for case in TRAVEL:
            for method in methods[round_ % len(methods) :] + methods[: round_ % len(methods)]:
                result = measure("travel", case, "ezq", method)
                print(f"[{round_ + 1}/{repeat}] {case} {method}: {result}", file=sys.stderr, flush=True)
                if "error" in result:
                    raise SystemExit(f"{case} under {method}: {result['error']}")
                results.setdefault((case, method), []).append(float(result["figure"]))
    print(
        f"\n{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}, medians of {repeat} runs\n"
    )
    others = [m for m in methods if m != "fork"]
    print("| case | unit | " + " | ".join(methods) + " | " + " | ".join(f"{m} / fork" for m in others) + " |")
    print("|---|---|" + "---|" * (len(methods) + len(others)))
    for case, (_, unit) in TRAVEL.items():
        medians = {m: statistics.median(results[(case, m)]) for m in methods}
        cells = [fmt(medians[m]) for m in methods] + [f"{medians[m] / medians['fork']:.2f}" for m in others]
        print(f"| {case} | {unit} | " + " | ".join(cells) + " |")
    return 0


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


if __name__ == "__main__":
    sys.exit(main())
