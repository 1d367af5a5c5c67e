"""Tests for ezq.

Process tests run under each start method (fork, spawn, forkserver) through
the `start_method` fixture. Every test has a hard timeout (pytest-timeout, set
in pyproject.toml): a hang is a failure.

Run `python test_ezq.py` to run the README's examples and print what they print.
"""

from __future__ import annotations

# std
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# lib
import pytest

# pkg
import ezq

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
METHODS = ["fork", "spawn", "forkserver"]
KINDS = ["process", "thread"]

# Forkserver children are forked from a server that has imported this module
# once, so they don't each pay for importing pytest.
multiprocessing.set_forkserver_preload(["ezq", "test_ezq"])


@pytest.fixture(params=METHODS)
def start_method(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with each multiprocessing start method."""
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(request.param, force=True)
    yield request.param
    multiprocessing.set_start_method(before, force=True)


@pytest.fixture(params=["thread", *METHODS])
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Thread workers, and process workers under each start method."""
    if request.param == "thread":
        yield "thread"
        return
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(request.param, force=True)
    yield "process"
    multiprocessing.set_start_method(before, force=True)


## Tasks ##
# At module level, so that spawn and forkserver children can import them.

MARK = "imported"  # set to "parent" by a test, to see whether children share memory


def double(x: int) -> int:
    """Return twice x."""
    return 2 * x


def add(x: int, y: int) -> int:
    """Return x + y."""
    return x + y


def mark() -> tuple[str, int]:
    """Return MARK and the parent's pid, as this process sees them."""
    return MARK, os.getppid()


def nap(seconds: float) -> tuple[int, float, float]:
    """Sleep; return who slept and when."""
    start = time.monotonic()
    time.sleep(seconds)
    return os.getpid(), start, time.monotonic()


def sum_worker(q: ezq.Q[int], out: ezq.Q[int]) -> None:
    """The README's worker: add up the messages."""
    total = 0
    for msg in q:
        total += msg.data
    out.put(total)


def echo_worker(q: ezq.Q[Any], out: ezq.Q[Any]) -> None:
    """Put each message's data on `out`, keeping its order."""
    for msg in q:
        out.put(msg.data, order=msg.order)


def blob_worker(q: ezq.Q[int], out: ezq.Q[bytes], size: int) -> None:
    """Write `size` bytes for each message."""
    for msg in q:
        out.put(bytes([msg.order % 256]) * size, order=msg.order)


def call_worker(q: ezq.Q[Any], out: ezq.Q[Any]) -> None:
    """Call each message's data (a function) and put the result."""
    for msg in q:
        out.put(msg.data(msg.order))


def size_worker(q: ezq.Q[int], out: ezq.Q[tuple[int, bool]]) -> None:
    """Report the size of `q` as the worker sees it."""
    out.put((q.qsize(), q.empty()))


def thread_fan_worker(out: ezq.Q[int]) -> None:
    """In a process worker: start thread workers connected by a Q('thread')."""
    q: ezq.Q[int] = ezq.Q("thread")
    threads = [ezq.run_thread(sum_worker, q, out) for _ in range(3)]
    for i in range(100):
        q.put(i)
    q.stop(threads)


def nested_process_worker(out: ezq.Q[str]) -> None:
    """In a process worker: try to start a process worker."""
    try:
        ezq.run(double, 1)
    except RuntimeError as exc:
        out.put(str(exc))


def nested_map_worker(out: ezq.Q[list[int]]) -> None:
    """In a process worker: use a thread map."""
    out.put(list(ezq.map(double, range(5), kind="thread")))


def exit_worker(code: int) -> None:
    """Exit the worker process without a word."""
    os._exit(code)


def slow_double(x: int) -> int:
    """Return twice x, slowly."""
    time.sleep(0.01)
    return 2 * x


## README ##


def readme_examples() -> list[tuple[str, str]]:
    """Each Python block of the README with the text block that follows it (or "")."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)
    examples = []
    for index, (lang, code) in enumerate(blocks):
        if lang == "python":
            after = blocks[index + 1] if index + 1 < len(blocks) else ("", "")
            examples.append((code, after[1] if after[0] == "text" else ""))
    return examples


RUNNER = textwrap.dedent(
    """
    import multiprocessing, runpy, sys
    if sys.argv[1] != "default":
        multiprocessing.set_start_method(sys.argv[1])
    runpy.run_path(sys.argv[2], run_name="__main__")
    """
)


def run_example(
    code: str, method: str, folder: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one README block as a script, with ezq.py importable."""
    script = folder / "example.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.run(
        [sys.executable, "-c", RUNNER, method, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
        env=env,
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("index", range(len(readme_examples())))
def test_readme_example_prints_what_the_readme_says(index: int, method: str, tmp_path: Path) -> None:
    code, want = readme_examples()[index]
    done = run_example(code, method, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == want, f"example {index} printed something else"
    assert done.stderr == "", "expected a quiet run"


def test_readme_starts_with_the_two_setup_commands() -> None:
    text = README.read_text()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (HERE / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


## Msg and constants ##


def test_msg_defaults_and_the_end_marker() -> None:
    assert ezq.Msg() == ezq.Msg(data=None, kind="", order=0)
    assert ezq.END_MSG.kind == "END"
    assert ezq.NUM_CPUS >= 1
    assert ezq.NUM_THREADS == min(32, ezq.NUM_CPUS + 4)
    assert ezq.IS_MACOS == (sys.platform == "darwin")
    assert set(ezq.__all__) <= set(dir(ezq))
    assert re.fullmatch(r"\d+\.\d+\.\d+", ezq.__version__)


## Q ##


@pytest.mark.parametrize("qkind", KINDS)
def test_q_put_chains_and_iteration_stops_at_the_end(qkind: str) -> None:
    q: ezq.Q[int] = ezq.Q(qkind)  # type: ignore[arg-type]
    assert q.put(1).put(2, kind="x", order=5).put(ezq.Msg(3, "y", 7)) is q
    q.end()
    assert list(q) == [ezq.Msg(1), ezq.Msg(2, "x", 5), ezq.Msg(3, "y", 7)]


def test_thread_q_passes_objects_without_copying_them() -> None:
    lock = threading.Lock()
    q: ezq.Q[Any] = ezq.Q("thread")
    q.put(lock).end()
    assert [msg.data for msg in q] == [lock], "expected the very same object"


def test_process_q_copies_messages() -> None:
    data = [1, 2]
    q: ezq.Q[list[int]] = ezq.Q()
    q.put(data).end()
    data.append(3)
    assert [msg.data for msg in q] == [[1, 2]], "expected the message as it was at put()"


@pytest.mark.parametrize("qkind", KINDS)
def test_sorted_yields_in_order_and_flushes_after_a_gap(qkind: str) -> None:
    q: ezq.Q[str] = ezq.Q(qkind)  # type: ignore[arg-type]
    for order in [2, 0, 5, 1, 4]:  # 3 is missing
        q.put(str(order), order=order)
    q.end()
    assert [msg.order for msg in q.sorted()] == [0, 1, 2, 4, 5]


def test_sorted_starts_where_asked_and_passes_duplicates_on() -> None:
    q: ezq.Q[None] = ezq.Q("thread")
    for order in [11, 10, 10, 12]:
        q.put(order=order)
    q.end()
    assert [msg.order for msg in q.sorted(start=10)] == [10, 11, 10, 12]


@pytest.mark.parametrize("qkind", KINDS)
def test_items_ends_the_queue_and_can_cache(qkind: str) -> None:
    q: ezq.Q[int] = ezq.Q(qkind)  # type: ignore[arg-type]
    q.put(1, order=1).put(0, order=0)
    assert [m.data for m in q.items(cache=True)] == [1, 0]
    assert [m.data for m in q.items(cache=True)] == [1, 0], "expected the same messages again"
    assert [m.data for m in q.items(cache=True, sort=True)] == [0, 1]
    q.put(5)
    assert [m.data for m in q.items(sort=True)] == [5]


@pytest.mark.parametrize("qkind", KINDS)
def test_qsize_and_empty_count_waiting_messages(qkind: str) -> None:
    q: ezq.Q[int] = ezq.Q(qkind)  # type: ignore[arg-type]
    assert (q.qsize(), q.empty()) == (0, True)
    q.put(1).put(2)
    assert (q.qsize(), q.empty()) == (2, False)
    q.end()
    assert [m.data for m in q] == [1, 2]
    assert (q.qsize(), q.empty()) == (0, True)


def test_qsize_and_empty_work_in_a_process_worker(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[tuple[int, bool]] = ezq.Q()
    q.put(1).put(2).put(3)
    worker = ezq.run(size_worker, q, out)
    worker.join()
    assert [m.data for m in out.items()] == [(3, False)]


def test_process_q_stop_then_read_many_messages(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(echo_worker, q, out) for _ in range(2)]
    for i in range(5000):
        q.put(i, order=i)
    q.stop(workers)
    assert [m.data for m in out.items(sort=True)] == list(range(5000)), "expected every message once"


def test_each_message_reaches_exactly_one_reader(start_method: str) -> None:
    """Readers in several processes and in the home share one queue."""
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(echo_worker, q, out) for _ in range(2)]
    threads = [ezq.run_thread(echo_worker, q, out) for _ in range(2)]
    for i in range(3000):
        q.put(i, order=i)
    q.stop(workers + threads)
    assert sorted(m.data for m in out.items()) == list(range(3000))


def test_message_data_may_be_a_lambda(start_method: str) -> None:
    q: ezq.Q[Any] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    worker = ezq.run(call_worker, q, out)
    offset = 100
    q.put(lambda x: x + offset, order=1)
    q.stop(worker)
    assert [m.data for m in out.items()] == [101]


## Size ##


@pytest.mark.timeout(120)
def test_stop_then_read_100_mb_of_results(start_method: str) -> None:
    """The README's "2 queues" pattern: join the workers first, read after."""
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[bytes] = ezq.Q()
    size = 1 << 20
    workers = [ezq.run(blob_worker, q, out, size) for _ in range(2)]
    for i in range(100):
        q.put(i, order=i)
    q.stop(workers)
    have = [(m.order, len(m.data), m.data[:1]) for m in out.items(sort=True)]
    assert have == [(i, size, bytes([i])) for i in range(100)]


def test_stop_then_read_100_mb_with_thread_workers() -> None:
    q: ezq.Q[int] = ezq.Q("thread")
    out: ezq.Q[bytes] = ezq.Q("thread")
    workers = [ezq.run_thread(blob_worker, q, out, 1 << 20) for _ in range(4)]
    for i in range(100):
        q.put(i, order=i)
    q.stop(workers)
    assert [m.order for m in out.items(sort=True)] == list(range(100))


def test_thread_workers_may_write_to_a_process_q_read_by_a_process(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q("thread")
    mid: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    threads = [ezq.run_thread(echo_worker, q, mid) for _ in range(3)]
    process = ezq.run(sum_worker, mid, out)
    for i in range(1000):
        q.put(i)
    q.stop(threads)
    mid.stop(process)
    assert [m.data for m in out.items()] == [sum(range(1000))]


@pytest.mark.timeout(120)
def test_map_over_a_million_items(start_method: str) -> None:
    count = total = 0
    for value in ezq.map(double, range(1_000_000)):
        count += 1
        total += value
    assert (count, total) == (1_000_000, 2 * sum(range(1_000_000)))


## Workers ##


def test_process_worker_reports_pid_exitcode_and_name(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    worker = ezq.run(sum_worker, q, out)
    assert worker.is_alive() and worker.pid not in (None, os.getpid())
    assert worker.exitcode is None
    assert worker.name.startswith("sum_worker")
    worker.join(timeout=0.1)  # still waiting for its queue to end
    assert worker.is_alive()
    q.stop(worker)
    assert not worker.is_alive() and worker.exitcode == 0
    assert [m.data for m in out.items()] == [0]


def test_thread_worker_has_a_name_and_no_pid() -> None:
    q: ezq.Q[int] = ezq.Q("thread")
    out: ezq.Q[int] = ezq.Q("thread")
    worker = ezq.Worker.thread(sum_worker, q, out)
    assert worker.is_alive() and worker.pid is None and worker.exitcode is None
    q.put(4).stop(worker)
    assert not worker.is_alive()
    assert [m.data for m in out.items()] == [4]


def test_run_and_run_thread_are_aliases() -> None:
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(sum_worker, q, out), ezq.run_thread(sum_worker, q, out)]
    assert workers[0].pid is not None and workers[1].pid is None
    q.stop(workers)


def test_workers_start_with_the_current_start_method(start_method: str) -> None:
    global MARK
    MARK = "parent"
    try:
        ((seen, parent),) = list(ezq.map(lambda _: mark(), [0], num=1))
    finally:
        MARK = "imported"
    assert seen == ("parent" if start_method == "fork" else "imported")
    assert (parent == os.getpid()) == (start_method != "forkserver")


def test_closures_and_lambdas_run_in_process_workers(start_method: str) -> None:
    factor = 3
    out: ezq.Q[int] = ezq.Q()
    worker = ezq.run(lambda q: q.put(factor * 7), out)
    worker.join()
    assert [m.data for m in out.items()] == [21]
    assert list(ezq.map(lambda x: x * factor, range(4))) == [0, 3, 6, 9]


def test_a_thread_q_carries_a_socket_between_threads() -> None:
    left, right = socket.socketpair()
    q: ezq.Q[socket.socket] = ezq.Q("thread")
    out: ezq.Q[bytes] = ezq.Q("thread")

    def reader(q: ezq.Q[socket.socket], out: ezq.Q[bytes]) -> None:
        for msg in q:
            out.put(msg.data.recv(5))

    worker = ezq.run_thread(reader, q, out)
    left.sendall(b"hello")
    q.put(right).stop(worker)
    assert [m.data for m in out.items()] == [b"hello"]
    left.close()
    right.close()


def test_process_worker_may_run_thread_workers(start_method: str) -> None:
    out: ezq.Q[int] = ezq.Q()
    ezq.run(thread_fan_worker, out).join()
    assert sum(m.data for m in out.items()) == sum(range(100))
    out2: ezq.Q[list[int]] = ezq.Q()
    ezq.run(nested_map_worker, out2).join()
    assert [m.data for m in out2.items()] == [[0, 2, 4, 6, 8]]


def test_process_worker_cannot_start_a_process_worker(start_method: str) -> None:
    out: ezq.Q[str] = ezq.Q()
    ezq.run(nested_process_worker, out).join()
    (message,) = [m.data for m in out.items()]
    assert "can't start process workers" in message and "run_thread" in message


## map ##


def test_map_yields_results_in_input_order(kind: str) -> None:
    want = [2 * x for x in range(1000)]
    have = list(ezq.map(double, range(1000), kind=kind))  # type: ignore[arg-type]
    assert have == want, f"expected ordered results from {kind} workers"


def test_map_zips_several_iterables(kind: str) -> None:
    have = list(ezq.map(add, range(5), [10, 20, 30], kind=kind))  # type: ignore[arg-type]
    assert have == [10, 21, 32]


def test_map_of_nothing_is_empty(kind: str) -> None:
    assert list(ezq.map(double, [], kind=kind)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("num", [1, 3])
def test_map_uses_num_workers(num: int) -> None:
    pids = {pid for pid, _, _ in ezq.map(nap, [0.05] * 12, num=num, chunksize=1)}
    assert len(pids) == num


def test_map_runs_tasks_at_the_same_time(kind: str) -> None:
    """2 equal tasks on 2 workers overlap in time (3.0.4 ran them one after the other)."""
    naps = list(ezq.map(nap, [0.5, 0.5], num=2, kind=kind))  # type: ignore[arg-type]
    (_, start1, end1), (_, start2, end2) = naps
    assert max(start1, start2) < min(end1, end2), "expected the two naps to overlap"


def test_map_reads_input_lazily(kind: str) -> None:
    pulled = []

    def numbers() -> Iterator[int]:
        for i in range(10**9):
            pulled.append(i)
            yield i

    results = ezq.map(double, numbers(), kind=kind)  # type: ignore[arg-type]
    assert pulled == [], "expected nothing read before the first result is asked for"
    first = [next(results) for _ in range(10)]
    assert first == [2 * i for i in range(10)]
    assert len(pulled) < 10**6, "expected a bounded window of input"
    results.close()  # type: ignore[attr-defined]


def test_map_respects_a_fixed_chunksize() -> None:
    assert list(ezq.map(slow_double, range(7), chunksize=3, kind="thread")) == [2 * i for i in range(7)]


def test_map_unordered_yields_everything(kind: str) -> None:
    have = list(ezq.map(double, range(500), kind=kind, ordered=False))  # type: ignore[arg-type]
    assert sorted(have) == [2 * i for i in range(500)]


## Demo ##


def demo() -> int:
    """Run every README example, printing what it prints; non-zero if one fails."""
    import tempfile

    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for index, (code, want) in enumerate(readme_examples()):
            print(f"--- README example {index + 1} ---", flush=True)
            done = run_example(code, "default", Path(folder))
            print(done.stdout + done.stderr, end="", flush=True)
            if done.returncode != 0 or done.stdout != want:
                print(f"!!! example {index + 1} did not print what the README says")
                failed += 1
    return failed


if __name__ == "__main__":
    sys.exit(demo())
