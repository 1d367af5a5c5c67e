"""Tests for ezq.

Process tests run under each start method (fork, spawn, forkserver) through
the `start_method` fixture. Every test has a hard timeout (pytest-timeout, set
in pyproject.toml): a hang is a failure.

Run `python test_ezq.py` to run the README's examples and print what they print.
"""

from __future__ import annotations

# std
import concurrent.futures
import contextlib
import functools
import gc
import importlib.util
import itertools
import json
import multiprocessing
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
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
HAVE_DILL = importlib.util.find_spec("dill") is not None
needs_dill = pytest.mark.skipif(not HAVE_DILL, reason="sends a lambda or closure to a process: needs dill")

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
    """In a process worker: use a thread map, and a process map (which runs on threads there)."""
    out.put(list(ezq.map(double, range(5), kind="thread")))
    out.put(list(ezq.map(double, range(5))))


def exit_worker(code: int) -> None:
    """Exit the worker process without a word."""
    os._exit(code)


def slow_double(x: int) -> int:
    """Return twice x, slowly."""
    time.sleep(0.01)
    return 2 * x


def boom_later(x: int) -> None:
    """Raise after a while, when the parent is well into join()."""
    time.sleep(0.35)
    raise ValueError(f"boom {x}")


def forking_worker(out: ezq.Q[Any]) -> None:
    """In a process worker: fork, and let the forked child try the worker's queue."""
    pid = os.fork()
    if pid == 0:
        try:
            out.put("from a forked child")
        except RuntimeError:
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    out.put(os.waitstatus_to_exitcode(status))


def rebuild_fails() -> None:
    """Called when a FailsToUnpickle is unpickled."""
    raise ValueError("can't be rebuilt here")


class FailsToUnpickle:
    """Pickles fine; raises when unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild_fails, ())


def leave_a_reader(q: ezq.Q[int]) -> None:
    """In a process worker: leave a thread blocked reading a queue, and return."""
    threading.Thread(target=lambda: list(q), daemon=True).start()
    time.sleep(0.2)  # it asks for messages and waits


def descendants() -> list[int]:
    """Live processes below this one (workers, the fork server), from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it has gone
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    new = {os.getpid()}
    while new:
        found |= new
        new = {pid for pid, parent in parents.items() if parent in new} - found
    return sorted(found - {os.getpid()})


def boom(x: int) -> int:
    """Raise on 3, so we can check error propagation."""
    if x == 3:
        raise ValueError(f"boom {x}")
    return x


class PendingError(Exception):
    """An exception that can't be pickled, even by dill (it holds a generator)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.pending = (i for i in range(3))


def raise_unpicklable(x: int) -> int:
    """Raise an exception that can't travel back by pickle."""
    raise PendingError(f"pending {x}")


def give_a_generator(x: int) -> Iterator[int]:
    """Return a result that can't be pickled, even by dill."""
    return (i for i in range(x))


def die_on_3(x: int) -> int:
    """Exit without a word on item 3."""
    if x == 3:
        os._exit(3)
    return x


def sigkill_on_3(x: int) -> int:
    """Be SIGKILLed on item 3, as the OOM killer would do."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def segfault_on_3(x: int) -> int:
    """Crash the interpreter on item 3."""
    if x == 3:
        import ctypes
        import faulthandler

        faulthandler.disable()  # pytest enabled it; we want a quiet, real crash
        ctypes.string_at(0)
    return x


FAULTS = {
    "exit": (die_on_3, "exited with code 3"),
    "sigkill": (sigkill_on_3, "killed by signal SIGKILL"),
    "segfault": (segfault_on_3, "killed by signal SIGSEGV"),
}


def faulty_worker(q: ezq.Q[int], how: str) -> None:
    """Read q; fail in the way `how` says on item 3."""
    for msg in q:
        FAULTS[how][0](msg.data)


def raising_worker(q: ezq.Q[str]) -> None:
    """Raise on the message "boom"."""
    for msg in q:
        if msg.data == "boom":
            raise ValueError("bad message")


def sleeper() -> None:
    """Sleep for longer than any test."""
    time.sleep(1000)


## README ##


class Example:
    """A Python block of the README, with the output blocks that follow it.

    A ```text block is exactly what it prints (worker numbers and pids as N); a ```pytb block (a traceback it
    ends with) or a ```console block is what it prints to stderr, matched
    by `output_matches`.
    """

    def __init__(self, code: str, after: dict[str, str]) -> None:
        self.code = code
        self.stdout = after.get("text", "")
        self.stderr = after.get("pytb", after.get("console", ""))
        self.fails = "pytb" in after  # it ends with an uncaught exception
        self.ctrl_c = "Ctrl-C" in code  # the runner presses Ctrl-C once it has printed a line


def readme_examples() -> list[Example]:
    blocks = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)
    examples = []
    for index, (lang, code) in enumerate(blocks):
        if lang == "python":
            after: dict[str, str] = {}
            for kind, text in blocks[index + 1 : index + 4]:
                if kind == "python":
                    break
                after.setdefault(kind, text)
            examples.append(Example(code, after))
    return examples


def run_example(example: Example, method: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run one README block as a script (`python example.py`), with ezq.py importable."""
    code = example.code
    if method != "default":  # on the first line, so that line numbers stay the same
        code = f"import multiprocessing; multiprocessing.set_start_method({method!r}, force=True); {code}"
    script = folder / "example.py"
    script.write_text(code)
    args = [sys.executable, str(script)]
    with start_in_own_group(args, folder) as child:
        try:
            first = ""
            if example.ctrl_c:
                assert child.stdout is not None
                first = child.stdout.readline()
                time.sleep(2)  # the workers start and get busy
                os.killpg(child.pid, signal.SIGINT)  # as a terminal does
            stdout, stderr = child.communicate(timeout=40)  # less than the test's limit
        except subprocess.TimeoutExpired:
            # Say where it hung: faulthandler (on in the example and its
            # workers) prints every thread's stack on SIGABRT.
            os.killpg(child.pid, signal.SIGABRT)
            time.sleep(1)
            os.killpg(child.pid, signal.SIGKILL)
            pytest.fail(f"the example hung; where each of its processes was:\n{child.communicate()[1]}")
        finally:  # whatever happened, nothing of the example outlives the test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        return subprocess.CompletedProcess(args, child.returncode, first + stdout, stderr)


def without_pids(text: str) -> str:
    """`text` with worker names' numbers and pids as N."""
    return re.sub(r"-\d+ \(pid \d+\)", "-N (pid N)", text)


def output_lines(text: str) -> list[str]:
    """Lines of output without what varies between runs and Python versions."""
    text = re.sub(r'File "[^"]*?([\w.]+\.py)"', r'File "\1"', text)  # folders
    text = without_pids(text)
    return [line for line in text.splitlines() if line.strip(" ^~")]  # 3.11+ adds ^^^ lines


def output_matches(want: str, have: str) -> bool:
    """`True` if `have` matches `want`: a line "..." stands for any lines, "..." in a line for any text."""
    parts = []
    for line in output_lines(want):
        if line.strip() == "...":
            parts.append(r"(?:.*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.fullmatch("".join(parts), "".join(line + "\n" for line in output_lines(have))) is not None


@needs_dill
@pytest.mark.parametrize("method", METHODS)  # the interpreter's default is one of them
@pytest.mark.parametrize("index", range(len(readme_examples())))
def test_readme_example_prints_what_the_readme_says(index: int, method: str, tmp_path: Path) -> None:
    example = readme_examples()[index]
    done = run_example(example, method, tmp_path)
    assert without_pids(done.stdout) == example.stdout, f"example {index} printed something else"
    if example.ctrl_c:
        assert done.returncode == -signal.SIGINT, done.stderr
    elif example.fails:
        assert done.returncode == 1, done.stderr
    else:
        assert done.returncode == 0, done.stderr
    assert output_matches(example.stderr, done.stderr), f"example {index} printed otherwise:\n{done.stderr}"


def test_output_matching_is_strict_outside_the_dots() -> None:
    bar = "\r  0%|   | 0/10 [00:00<?]\r100%|###| 10/10 [00:01<00:00]\n"
    assert output_matches("...\n100%|...| 10/10 [...]\n", bar)
    assert not output_matches("...\n100%|...| 10/10 [...]\n", bar.replace("10/10", "9/10"))
    want = "Traceback (most recent call last):\n  ...\nValueError: boom\n"
    assert output_matches(want, 'Traceback (most recent call last):\n  File "/a/b.py", x\nValueError: boom\n')
    assert not output_matches(want, "Traceback (most recent call last):\nValueError: bang\n")
    assert output_matches("", "")
    assert not output_matches("", "Traceback\n")


def test_every_public_name_is_documented_in_code_and_in_the_readme() -> None:
    api = README.read_text().split("## API", 1)[1].split("\n## ", 1)[0]
    for name in ezq.__all__:
        assert f"`ezq.{name}" in api, f"expected {name} in the README's API section"
        value = getattr(ezq, name)
        if callable(value) and name != "Kind":
            assert (value.__doc__ or "").strip(), f"expected a docstring on {name}"
    for method in ["put", "end", "sorted", "items", "stop", "qsize", "empty", "__iter__"]:
        assert getattr(ezq.Q, method).__doc__, f"expected a docstring on Q.{method}"
    for method in ["process", "thread", "join", "is_alive", "pid", "exitcode"]:
        assert getattr(ezq.Worker, method).__doc__, f"expected a docstring on Worker.{method}"


def test_the_examples_in_docstrings_run() -> None:
    import doctest

    failures, tried = doctest.testmod(ezq, extraglobs={"ezq": ezq})
    assert tried >= 5 and failures == 0


def test_readme_starts_with_the_two_setup_commands() -> None:
    text = README.read_text()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (HERE / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


## A script runs once ##
# The user's script runs once, in the process the user started. Under spawn and
# forkserver, workers come from ezq's own fork server, which never imports the
# script: what a task needs of it travels by value (with dill).

UNGUARDED = """\
import ezq
print(list(ezq.map(lambda x: x * 2, range(6))))
"""

SIDE_EFFECT = """\
import os
import ezq
with open("log.txt", "a") as log:  # what importing this script does
    log.write(f"{os.getpid()}\\n")

def negate(x):
    return -x

print(sum(ezq.map(negate, range(100), num=2, chunksize=1)))
"""

MAIN_GLOBAL = """\
import ezq
FACTOR = None

def scale(x):
    return x * FACTOR

if __name__ == "__main__":
    FACTOR = 3
    print(list(ezq.map(scale, range(4))))
"""

MAIN_CLASS = """\
import ezq

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

def flip(q, out, shift):
    for msg in q:
        p = msg.data
        out.put((Point(p.y + shift.x, p.x + shift.y), isinstance(p, Point) and isinstance(shift, Point)))

if __name__ == "__main__":
    q, out = ezq.Q(), ezq.Q()
    worker = ezq.run(flip, q, out, Point(10, 20))
    q.put(Point(1, 2)).put(Point(3, 4))
    q.stop(worker)
    for point, same in [msg.data for msg in out.items()]:
        print(type(point) is Point, point.x, point.y, same)
"""


def run_code(code: str, method: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` as a script (example.py), with `method` set first ("default": the interpreter's)."""
    return run_example(Example(code, {}), method, folder)


@needs_dill
@pytest.mark.parametrize("method", [*METHODS, "default"])
def test_an_unguarded_script_prints_once(method: str, tmp_path: Path) -> None:
    done = run_code(UNGUARDED, method, tmp_path)
    assert (done.stdout, done.stderr, done.returncode) == ("[0, 2, 4, 6, 8, 10]\n", "", 0)


@needs_dill
@pytest.mark.parametrize("method", [*METHODS, "default"])
def test_a_top_level_side_effect_happens_once(method: str, tmp_path: Path) -> None:
    done = run_code(SIDE_EFFECT, method, tmp_path)
    assert (done.stdout, done.stderr) == ("-4950\n", "")
    assert len((tmp_path / "log.txt").read_text().splitlines()) == 1, "expected one import of the script"


@needs_dill
@pytest.mark.parametrize("method", [*METHODS, "default"])
def test_a_task_sees_a_global_that_the_main_block_set(method: str, tmp_path: Path) -> None:
    done = run_code(MAIN_GLOBAL, method, tmp_path)
    assert (done.stdout, done.stderr) == ("[0, 3, 6, 9]\n", "")


@needs_dill
@pytest.mark.parametrize("method", [*METHODS, "default"])
def test_a_class_of_the_script_travels_in_messages_and_arguments(method: str, tmp_path: Path) -> None:
    done = run_code(MAIN_CLASS, method, tmp_path)
    assert done.stderr == ""
    assert done.stdout == "True 12 21 True\nTrue 14 23 True\n", "expected the script's own class back"


SERVER_SCRIPT = """\
import os, sys, time
import ezq

def parent(_):
    return os.getppid()

def children():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                found.append(pid)
        except OSError:  # it has gone
            pass
    return found

print(len(children()), flush=True)  # ezq starts nothing on import
servers = {pid for _ in range(3) for pid in ezq.map(parent, range(4), num=2)}
command = open(f"/proc/{servers.pop()}/cmdline", "rb").read().split(b"\\0")
print(len(servers) + 1, command[-3].decode(), flush=True)
time.sleep(60)
"""


@needs_dill  # the script has no guard
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_one_fork_server_starts_on_first_use_and_exits_with_a_killed_parent(
    method: str, tmp_path: Path
) -> None:
    first = f"import multiprocessing; multiprocessing.set_start_method({method!r})\n"
    (tmp_path / "server.py").write_text(first + SERVER_SCRIPT)
    child = start_in_own_group([sys.executable, "server.py"], tmp_path)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "0\n", "expected no process before the first map"
        assert child.stdout.readline() == "1 ezq-forkserver\n", "expected every worker from one server"
        os.kill(child.pid, signal.SIGKILL)
        assert_group_ends(child.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()


GUARDED = """\
import ezq

def triple(x):
    return 3 * x

if __name__ == "__main__":
    print(list(ezq.map(triple, range(3))))
"""


@pytest.mark.skipif(HAVE_DILL, reason="checks what happens where dill is not installed")
def test_without_dill_workers_import_a_guarded_script(start_method: str, tmp_path: Path) -> None:
    done = run_code(GUARDED, start_method, tmp_path)
    assert (done.stdout, done.stderr) == ("[0, 3, 6]\n", "")


@pytest.mark.skipif(HAVE_DILL, reason="checks what happens where dill is not installed")
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_without_dill_a_function_of_a_script_without_a_file_asks_for_dill(method: str) -> None:
    code = f"import multiprocessing; multiprocessing.set_start_method({method!r})\n{GUARDED}"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "workers can't import (python -c, stdin, a notebook); install dill" in done.stderr


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


@needs_dill
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


def mixed_sizes_worker(out: ezq.Q[bytes]) -> None:
    """Put small and large messages, alternating."""
    for i in range(40):
        out.put(bytes([i]) * (3 if i % 2 else (i + 1) * 50_000), order=i)


def test_small_and_large_messages_arrive_whole_and_in_order(start_method: str) -> None:
    out: ezq.Q[bytes] = ezq.Q()
    ezq.run(mixed_sizes_worker, out).join()
    have = [(m.order, len(m.data), set(m.data)) for m in out.items()]
    want = [(i, 3 if i % 2 else (i + 1) * 50_000, {i}) for i in range(40)]
    assert have == want, "expected one writer's messages whole and in the order it put them"


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


@needs_dill
def test_workers_start_with_the_current_start_method(start_method: str) -> None:
    global MARK
    MARK = "parent"
    try:
        ((seen, parent),) = list(ezq.map(lambda _: mark(), [0], num=1))
    finally:
        MARK = "imported"
    assert seen == ("parent" if start_method == "fork" else "imported")
    if start_method == "fork":
        assert parent == os.getpid(), "expected a fork of the caller"
    else:  # forked by ezq's own server, which never imports the caller's script
        assert b"ezq-forkserver" in Path(f"/proc/{parent}/cmdline").read_bytes()


@needs_dill
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
    assert [m.data for m in out2.items()] == [[0, 2, 4, 6, 8]] * 2, "expected a nested map to run"


def test_process_worker_cannot_start_a_process_worker(start_method: str) -> None:
    out: ezq.Q[str] = ezq.Q()
    ezq.run(nested_process_worker, out).join()
    (message,) = [m.data for m in out.items()]
    assert "can't start process workers" in message and "run_thread" in message


class Celsius(float):
    """A float of our own: it must travel as what it is, not as a plain float."""


def test_messages_keep_their_exact_type(start_method: str) -> None:
    values = [7, 10**30, 2.5, True, None, "text", b"bytes", "x" * 200_000, Celsius(21.5), (1, "a")]
    q: ezq.Q[Any] = ezq.Q()
    out: ezq.Q[Any] = ezq.Q()
    worker = ezq.run(echo_worker, q, out)
    for value in values:
        q.put(value)
    q.stop([worker])
    have = [msg.data for msg in out.items()]
    assert have == values
    assert [type(value) for value in have] == [type(value) for value in values]


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


RANGES = [range(10**6, 10**6 + 5000), range(100, -100, -3), range(0), range(5, 10**19, 10**18)]


@pytest.mark.parametrize("numbers", RANGES, ids=repr)
def test_map_over_a_range(numbers: range, kind: str) -> None:
    assert list(ezq.map(double, numbers, kind=kind)) == [2 * x for x in numbers]  # type: ignore[arg-type]


def test_map_cuts_a_range_input_into_ranges() -> None:
    """The parent sends a range's chunks as ranges: it creates and pickles no item."""
    source = ezq._Input(range(3, 30, 4), [])
    assert [source.take(2), source.take(5), source.take(5)] == [range(3, 11, 4), range(11, 30, 4), range(0)]
    zipped = ezq._Input(range(3), [range(3)])  # several iterables: items are tuples
    assert zipped.take(5) == [(0, 0), (1, 1), (2, 2)]


def test_map_workers_exit_while_the_caller_reads_the_last_results(start_method: str) -> None:
    """Once every chunk is answered, the workers are told so: they exit while the caller
    reads the last results, and the end of the loop need not wait for them."""
    results = ezq.map(nap, [0.0] * 3, num=1)
    pids = {next(results)[0] for _ in range(3)}  # every result; the map does not know it is done
    deadline = time.monotonic() + 5
    while not all(is_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, "expected the worker to exit before the loop ends"
        time.sleep(0.01)
    assert list(results) == []


@pytest.mark.parametrize("num", [1, 3])
def test_map_uses_num_workers(num: int) -> None:
    pids = {pid for pid, _, _ in ezq.map(nap, [0.05] * 12, num=num, chunksize=1)}
    assert len(pids) == num


def test_map_runs_tasks_at_the_same_time(kind: str) -> None:
    """2 equal tasks on 2 workers overlap in time (3.0.4 ran them one after the other)."""
    naps = list(ezq.map(nap, [0.5, 0.5], num=2, kind=kind))  # type: ignore[arg-type]
    (_, start1, end1), (_, start2, end2) = naps
    assert max(start1, start2) < min(end1, end2), "expected the two naps to overlap"


class Endless:
    """0, 1, 2, ... without end, counting how many were read."""

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count():
            self.read += 1
            yield i


def test_map_reads_input_lazily(kind: str) -> None:
    numbers = Endless()
    results = ezq.map(double, numbers, kind=kind)  # type: ignore[arg-type]
    assert numbers.read == 0, "expected nothing read before the first result is asked for"
    first = [next(results) for _ in range(10)]
    assert first == [2 * i for i in range(10)]
    assert numbers.read < 10**6, "expected a bounded window of input"
    results.close()  # type: ignore[attr-defined]


def test_map_respects_a_fixed_chunksize() -> None:
    assert list(ezq.map(slow_double, range(7), chunksize=3, kind="thread")) == [2 * i for i in range(7)]


def test_map_unordered_yields_everything(kind: str) -> None:
    have = list(ezq.map(double, range(500), kind=kind, ordered=False))  # type: ignore[arg-type]
    assert sorted(have) == [2 * i for i in range(500)]


def sleep_then_return(seconds: float) -> float:
    """Sleep, then return how long."""
    time.sleep(seconds)
    return seconds


def test_map_unordered_yields_results_as_they_finish(kind: str) -> None:
    results = ezq.map(sleep_then_return, [1.0, 0.01], num=2, kind=kind, ordered=False)  # type: ignore[arg-type]
    assert next(results) == 0.01, "expected the quick result before the slow one before it"
    assert list(results) == [1.0]


def test_chunks_grow_gradually_and_stay_within_bounds() -> None:
    chunker = ezq._Chunker(None, seconds=0.01)
    sizes = []
    for _ in range(8):
        sizes.append(chunker.size)
        chunker.record(chunker.size, chunker.size * 1e-7)  # tiny tasks: 0.1 µs each
    assert sizes[:4] == [1, 32, 1024, ezq._CHUNK_MAX], "expected growth of at most 32x per chunk"
    assert max(sizes) == ezq._CHUNK_MAX
    chunker.sent(100, 100 * 65536)  # 64 KiB items
    assert chunker.size == ezq._CHUNK_BYTES // 65536, "expected about 1 MiB per chunk"
    slow = ezq._Chunker(None, seconds=0.01)
    slow.record(1, 1.0)
    assert slow.size == 1, "expected slow tasks to go one by one"
    fixed = ezq._Chunker(7, seconds=0.01)
    fixed.record(7, 1e-6)
    assert fixed.size == 7


MEMORY_SCRIPT = """
import resource, sys
import ezq

if __name__ == "__main__":
    items = (bytes([i & 255]) * 1024 for i in range(200_000))  # 195 MiB in all
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert all(size == 1024 for size in ezq.map(len, items))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_map_memory_stays_bounded_on_a_large_input(tmp_path: Path) -> None:
    script = tmp_path / "memory.py"
    script.write_text(MEMORY_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(HERE))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 40, "expected the parent to grow by far less than the 195 MiB of input"


## Failures ##


def test_map_raises_the_task_exception_after_the_results_before_it(kind: str) -> None:
    have = []
    with pytest.raises(ValueError, match="boom 3") as info:
        for result in ezq.map(boom, range(8), kind=kind):  # type: ignore[arg-type]
            have.append(result)
    assert have == [0, 1, 2]
    if kind == "process":
        cause = str(info.value.__cause__)
        assert "by input item 3" in cause and 'raise ValueError(f"boom {x}")' in cause, cause
        assert multiprocessing.active_children() == [], "expected no worker left"
    else:
        frames = traceback.extract_tb(info.value.__traceback__)
        assert "boom" in [frame.name for frame in frames], "expected the task's frame in the traceback"


def test_map_cancels_the_remaining_work_after_an_exception(kind: str) -> None:
    numbers = Endless()
    with pytest.raises(ValueError, match="boom 3"):
        list(ezq.map(boom, numbers, kind=kind))  # type: ignore[arg-type]
    assert numbers.read < 10**6, "expected the input to stop being read"
    assert multiprocessing.active_children() == []


def test_an_exception_that_cannot_be_pickled_still_arrives(start_method: str) -> None:
    with pytest.raises(ezq.WorkerError, match="PendingError: pending 5") as info:
        list(ezq.map(raise_unpicklable, [5]))
    assert "in raise_unpicklable" in str(info.value.__cause__), "expected the worker's traceback text"
    worker = ezq.run(raise_unpicklable, 6)
    with pytest.raises(ezq.WorkerError, match="PendingError: pending 6"):
        worker.join()


@pytest.mark.parametrize("how", FAULTS)
def test_map_notices_a_dead_worker_at_once(how: str, start_method: str) -> None:
    task, ending = FAULTS[how]
    start = time.monotonic()
    with pytest.raises(ezq.WorkerError, match=f"{ending} while running input item") as info:
        list(ezq.map(task, range(100)))
    assert time.monotonic() - start < 10, "expected the death to be noticed, not waited out"
    assert info.value.exitcode is not None and re.match(r"map-\d+", info.value.name or "")
    found = re.search(r"input items? (\d+)(?:-(\d+))?$", str(info.value))
    assert found, str(info.value)
    first, last = int(found[1]), int(found[2] or found[1])
    assert first <= 3 <= last, "expected the items it was running to include the one that killed it"
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("how", FAULTS)
def test_stop_notices_a_dead_worker_and_stops_the_others(how: str, start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(faulty_worker, q, how), ezq.run(sleeper)]
    q.put(3)
    start = time.monotonic()
    with pytest.raises(ezq.WorkerError, match=f"worker faulty_worker-\\d+ \\(pid \\d+\\) .*{FAULTS[how][1]}"):
        q.stop(workers)
    assert time.monotonic() - start < 10, "expected stop() not to wait for the sleeper"
    assert not any(w.is_alive() for w in workers)


def test_stop_raises_what_a_process_worker_raised(start_method: str) -> None:
    q: ezq.Q[str] = ezq.Q()
    workers = [ezq.run(raising_worker, q) for _ in range(2)]
    q.put("fine").put("boom")
    with pytest.raises(ValueError, match="bad message") as info:
        q.stop(workers)
    assert "raised in worker raising_worker-" in str(info.value.__cause__)
    assert 'raise ValueError("bad message")' in str(info.value.__cause__)
    assert [w.exitcode for w in workers].count(1) == 1


def test_stop_raises_what_a_thread_worker_raised() -> None:
    q: ezq.Q[str] = ezq.Q("thread")
    workers = [ezq.run_thread(raising_worker, q) for _ in range(2)]
    q.put("boom")
    with pytest.raises(ValueError, match="bad message"):
        q.stop(workers)


def test_stop_says_how_many_workers_failed(kind: str) -> None:
    q: ezq.Q[str] = ezq.Q()
    run = ezq.run if kind == "process" else ezq.run_thread
    workers = [run(raising_worker, q) for _ in range(3)]
    for _ in workers:
        q.put("boom")
    with pytest.raises(ValueError, match="bad message") as info:
        q.stop(workers)
    if sys.version_info >= (3, 11):
        assert info.value.__notes__ == ["3 of 3 workers failed; this is the first error"]


@needs_dill
@pytest.mark.parametrize("code", [3, -9])
def test_stop_and_join_raise_for_a_worker_that_exited_badly(code: int, start_method: str) -> None:
    q: ezq.Q[None] = ezq.Q()
    task = (lambda: os._exit(3)) if code > 0 else (lambda: os.kill(os.getpid(), signal.SIGKILL))
    worker = ezq.run(task)
    with pytest.raises(
        ezq.WorkerError, match="exited with code 3" if code > 0 else "killed by signal SIGKILL"
    ):
        q.stop(worker)
    assert worker.exitcode == code
    with pytest.raises(ezq.WorkerError):
        worker.join()


def test_a_worker_that_exits_with_0_did_not_fail(start_method: str) -> None:
    worker = ezq.run(exit_worker, 0)
    worker.join()
    assert worker.exitcode == 0


def test_put_raises_at_the_call_and_the_queue_stays_usable(start_method: str) -> None:
    q: ezq.Q[Any] = ezq.Q()
    out: ezq.Q[Any] = ezq.Q()
    worker = ezq.run(echo_worker, q, out)
    with pytest.raises(TypeError, match=r"cannot pickle 'sqlite3\.Connection' object"):
        q.put(sqlite3.connect(":memory:"))
    q.put("after").stop(worker)
    assert [m.data for m in out.items()] == ["after"]


def test_run_raises_at_the_call_for_an_argument_that_cannot_be_pickled(start_method: str) -> None:
    with pytest.raises(TypeError, match=r"the task or its arguments .*sqlite3\.Connection"):
        ezq.run(echo_worker, sqlite3.connect(":memory:"), ezq.Q())
    assert multiprocessing.active_children() == []


def test_map_names_an_input_item_that_cannot_be_pickled(start_method: str) -> None:
    with pytest.raises(TypeError, match=r"map input item 1 .*sqlite3\.Connection"):
        list(ezq.map(double, [1, sqlite3.connect(":memory:"), 3], chunksize=3))
    with pytest.raises(TypeError, match=r"the map task .*sqlite3\.Connection"):
        ezq.map(sqlite3.connect(":memory:").execute, [1])


def test_map_raises_for_a_result_that_cannot_be_pickled(start_method: str) -> None:
    with pytest.raises(TypeError, match=r"result of map item .*generator"):
        list(ezq.map(give_a_generator, [1, 2]))


class Refuses:
    """An object whose own `__reduce__` raises: not a pickler's refusal, the object's error."""

    def __reduce__(self) -> tuple[Any, ...]:
        raise RuntimeError("this object won't be copied")


def give_a_refusing_object(_: int) -> Refuses:
    return Refuses()


class Interrupted(Exception):
    """What the test's signal handler raises (an `Exception`, as a user's handler may)."""


class SignalsWhilePickled:
    """Sends this process a real SIGUSR1 while it is pickled, as if it came at that moment."""

    def __reduce__(self) -> tuple[Any, ...]:
        signal.raise_signal(signal.SIGUSR1)
        return (int, ())


def test_an_objects_own_error_while_pickled_reaches_the_caller_as_it_is(start_method: str) -> None:
    q: ezq.Q[Any] = ezq.Q()
    out: ezq.Q[Any] = ezq.Q()
    worker = ezq.run(echo_worker, q, out)
    with pytest.raises(RuntimeError, match="this object won't be copied"):
        q.put(Refuses())  # not a TypeError asking for dill, nor dill's retry
    q.put("after").stop(worker)
    assert [m.data for m in out.items()] == ["after"]
    with pytest.raises(RuntimeError, match="this object won't be copied"):
        list(ezq.map(double, [1, Refuses()]))
    with pytest.raises(RuntimeError, match="this object won't be copied") as caught:
        list(ezq.map(give_a_refusing_object, [1, 2]))
    assert "__reduce__" in str(caught.value.__cause__)  # the worker's traceback


def test_a_signal_handlers_exception_while_put_pickles_reaches_the_caller_as_it_is(start_method: str) -> None:
    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted("from the signal handler")

    q: ezq.Q[Any] = ezq.Q()
    out: ezq.Q[Any] = ezq.Q()
    worker = ezq.run(echo_worker, q, out)
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with pytest.raises(Interrupted):
            q.put(SignalsWhilePickled())
        with pytest.raises(Interrupted):
            list(ezq.map(double, [1, SignalsWhilePickled()]))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    q.put("after").stop(worker)
    assert [m.data for m in out.items()] == ["after"]


def test_a_thread_q_cannot_go_to_a_process_worker() -> None:
    with pytest.raises(TypeError, match=r"Q\('thread'\) can't be sent to a process worker"):
        ezq.run(sum_worker, ezq.Q("thread"), ezq.Q())


def test_a_q_cannot_travel_inside_a_message() -> None:
    with pytest.raises(TypeError, match=r"only as an argument of ezq\.run"):
        q: ezq.Q[Any] = ezq.Q()
        q.put(ezq.Q())


def test_breaking_out_of_map_stops_its_workers(start_method: str) -> None:
    for _ in ezq.map(slow_double, range(10**6)):
        break
    assert multiprocessing.active_children() == [], "expected the workers gone after the loop"
    results = ezq.map(slow_double, range(10**6))
    next(results)
    del results
    assert multiprocessing.active_children() == [], "expected the workers gone with the iterator"


BAD_CALLS: list[tuple[Any, type[Exception], str]] = [
    (lambda: ezq.Q("socket"), ValueError, "Q kind must be 'process' or 'thread', not 'socket'"),  # type: ignore[arg-type]
    (lambda: ezq.map(double, [1], kind="gpu"), ValueError, "map kind must be 'process' or 'thread'"),  # type: ignore[arg-type]
    (lambda: ezq.map(double, [1], num=0), ValueError, "num must be >= 1, not 0"),
    (lambda: ezq.map(double, [1], num=2.5), TypeError, "num must be an int >= 1, not float"),  # type: ignore[arg-type]
    (lambda: ezq.map(double, [1], chunksize=0), ValueError, "chunksize must be >= 1"),
    (lambda: ezq.map(42, [1]), TypeError, "task must be callable, not int"),  # type: ignore[arg-type]
    (lambda: ezq.map(double), TypeError, "needs at least one iterable"),
    (lambda: ezq.map(double, 5), TypeError, "not iterable"),  # type: ignore[arg-type]
    (lambda: ezq.run(42), TypeError, "task must be callable, not int"),  # type: ignore[arg-type]
    (lambda: ezq.run_thread("f"), TypeError, "task must be callable, not str"),  # type: ignore[arg-type]
    (lambda: ezq.Q().stop(42), TypeError, "expected a Worker or an iterable of Workers, not int"),  # type: ignore[arg-type]
    (lambda: ezq.Q().stop([42]), TypeError, "expected a Worker .* got a int"),  # type: ignore[list-item]
    (lambda: ezq.Q().put(1, order="1"), TypeError, "order must be an int, not str"),  # type: ignore[arg-type]
    (lambda: ezq.Q("thread").put(1, order=1.5), TypeError, "order must be an int, not float"),  # type: ignore[arg-type]
    (lambda: ezq.Q().put(1, kind=3), TypeError, "kind must be a str, not int"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_bad_input_gets_a_clear_error_at_the_call(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()
    assert multiprocessing.active_children() == []


## Ctrl-C, exit and leaks ##

SCRIPT_HEAD = """
import multiprocessing, os, signal, sys, time
import ezq

def stuck_in_c(x):
    return sum(range(10**13))  # one C call that holds the GIL for hours

def big_worker(q, out):
    for msg in q:
        out.put(b"x" * msg.data)

def stubborn_worker():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it handles SIGTERM its own way
    while True:
        time.sleep(0.05)

def spin(x):
    os.write(1, b"busy\\n")  # one write, so that threads don't interleave
    while True:
        x += 1

def spin_worker(q):
    spin(0)

def idle_worker(q):
    for msg in q:
        pass

def ready_worker(ready, q, *others):
    ready.put("ready")
    for msg in q:
        pass
"""

CTRL_C_SCRIPTS = {
    "map": "list(ezq.map(spin, range(8), num=2))",
    "thread map": "list(ezq.map(spin, range(8), num=2, kind='thread'))",
    "stop": "q = ezq.Q(); q.stop([ezq.run(spin_worker, q) for _ in range(2)])",
    "join": "[ezq.run(spin_worker, None) for _ in range(2)][0].join()",
    "iteration": "q = ezq.Q(); ws = [ezq.run(spin_worker, q) for _ in range(2)]; list(q)",
}


@contextlib.contextmanager
def script(body: str, method: str, folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Run a script in its own process group, the way a terminal runs a program.

    Whatever happens in the test, nothing of the script outlives it.
    """
    child = run_script(body, method, folder)
    try:
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()


def run_script(body: str, method: str, folder: Path) -> subprocess.Popen[str]:
    """Start a script in its own process group (use `script` to also clean up)."""
    script = folder / "script.py"
    script.write_text(
        SCRIPT_HEAD + f"\nif __name__ == '__main__':\n    multiprocessing.set_start_method({method!r})\n"
    )
    script.write_text(script.read_text() + "".join(f"    {line}\n" for line in body.splitlines()))
    return start_in_own_group([sys.executable, str(script)], folder)


LAUNCHER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then raises KeyboardInterrupt on it
if sys.platform == "linux":
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG, which outlives exec
os.execv(sys.argv[1], sys.argv[1:])
"""
"""Starts a test's program as a terminal would, even if the tests ignore Ctrl-C (a shell's
background job does), and has it killed if the test run is: a killed pytest runs no `finally`,
and the README's Ctrl-C example would spin its workers until someone noticed."""


def start_in_own_group(args: list[str], folder: Path) -> subprocess.Popen[str]:
    """Start a program in its own process group (as a terminal does), with ezq.py importable."""
    env = dict(os.environ, PYTHONPATH=str(HERE), PYTHONFAULTHANDLER="1")  # see run_example
    return subprocess.Popen(
        [sys.executable, "-S", "-c", LAUNCHER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=folder,
        start_new_session=True,
    )


TAKES_CTRL_C_AND_DIES_WITH_PARENT = """
import ctypes, signal
handler = signal.getsignal(signal.SIGINT)
death = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(death))  # 2: PR_GET_PDEATHSIG
print(getattr(handler, "__name__", handler), death.value)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_tests_program_takes_ctrl_c_and_dies_with_the_test_run(tmp_path: Path) -> None:
    # Run from a shell's background job, the tests ignore Ctrl-C; the programs
    # they start must not (or the Ctrl-C tests wait in vain), and must not
    # outlive a killed test run.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = start_in_own_group([sys.executable, "-c", TAKES_CTRL_C_AND_DIES_WITH_PARENT], tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    stdout, stderr = child.communicate(timeout=30)
    assert stdout.split() == ["default_int_handler", str(int(signal.SIGKILL))], stderr


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes in a process group (Linux)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def assert_group_ends(group: int) -> None:
    """The script's process group empties within a few seconds (no worker left behind)."""
    deadline = time.monotonic() + 5
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(group) == [], "expected no process left behind"


def wait_until_asleep(pid: int) -> None:
    """Wait until the main thread of process `pid` has slept for a while (Linux).

    A worker runs before its parent has returned from starting it. A Ctrl-C
    that lands there, as the parent drops its copies of the worker's pipe
    ends, may be lost: CPython prints an exception raised in a finalizer
    (`Connection.__del__`) as "Exception ignored" and goes on.
    """
    asleep = 0
    deadline = time.monotonic() + 10
    while asleep < 5 and time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        asleep = asleep + 1 if state == "S" else 0
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("where", CTRL_C_SCRIPTS)
def test_one_ctrl_c_ends_the_program_promptly(where: str, start_method: str, tmp_path: Path) -> None:
    with script(CTRL_C_SCRIPTS[where], start_method, tmp_path) as child:
        assert child.stdout is not None
        for _ in range(2):
            assert child.stdout.readline() == "busy\n"  # both workers are spinning
        wait_until_asleep(child.pid)  # in the wait named by `where`, not still starting a worker
        start = time.monotonic()
        os.killpg(child.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        _, stderr = child.communicate(timeout=30)
        assert time.monotonic() - start < 5, "expected the program to end promptly"
        assert child.returncode == -signal.SIGINT, stderr
        assert stderr.count("Traceback") == 1 and stderr.rstrip().endswith("KeyboardInterrupt"), stderr
        assert_group_ends(child.pid)


CTRL_C_IN_A_FINALIZER = """
class CtrlCInAFinalizer:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # as if pressed just as a finalizer runs
        time.sleep(30)  # the handler raises KeyboardInterrupt here, inside the finalizer
q = ezq.Q()
workers = [ezq.run(spin_worker, q) for _ in range(2)]
CtrlCInAFinalizer()
q.stop(workers)  # only the Ctrl-C ends this
"""


def test_a_ctrl_c_that_lands_in_a_finalizer_still_ends_the_program(start_method: str, tmp_path: Path) -> None:
    """CPython prints an exception raised in a finalizer (`__del__`, a weakref callback) and drops it.

    ezq's own objects have finalizers, which may run in the main thread as a
    worker starts or a queue goes; a Ctrl-C that lands in one is raised again.
    """
    with script(CTRL_C_IN_A_FINALIZER, start_method, tmp_path) as child:
        _, stderr = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGINT, stderr
        assert stderr.count("Traceback") == 1 and stderr.rstrip().endswith("KeyboardInterrupt"), stderr
        assert "Exception ignored" not in stderr, stderr
        assert_group_ends(child.pid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_program_that_forgets_stop_still_exits(start_method: str, tmp_path: Path) -> None:
    body = "q, t = ezq.Q(), ezq.Q('thread')\n"
    body += "workers = [ezq.run(idle_worker, q), ezq.run_thread(idle_worker, t)]\nprint('done')"
    with script(body, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=30)
        assert (child.returncode, stdout, stderr) == (0, "done\n", "")
        assert_group_ends(child.pid)


LEAK_SCRIPT = """
import gc, json, multiprocessing, os, sys, threading
import ezq

def descendants():  # as test_ezq.descendants; not imported, as workers may import this script
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(pid)] = int(fields[1])
    found, new = set(), {os.getpid()}
    while new:
        found |= new
        new = {pid for pid, parent in parents.items() if parent in new} - found
    return found - {os.getpid()}

def idle(q):
    for _ in q:
        pass

def cycle(number):
    assert list(ezq.map(abs, range(-3, 3), num=1)) == [3, 2, 1, 0, 1, 2]
    if number % 10 == 0:
        q = ezq.Q()
        q.put(1)
        q.stop([ezq.run(idle, q) for _ in range(2)])

def snapshot():
    gc.collect()
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "processes": len(descendants()),
        "semaphores": len([n for n in os.listdir("/dev/shm") if n.startswith("sem.")]),
    }

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    cycle(0)  # warm up: the lifeline pipe, the fork server, ...
    before = snapshot()
    for number in range(int(sys.argv[2])):
        cycle(number)
    print(json.dumps([before, snapshot()]))
"""

LEAK_CYCLES = 1000  # each a map (of one worker); every tenth also a queue and two workers


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc")
def test_a_thousand_maps_and_a_hundred_queues_leak_nothing(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "leak.py"
    script.write_text(LEAK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(HERE))
    cycles = str(LEAK_CYCLES)
    done = subprocess.run(
        [sys.executable, str(script), start_method, cycles],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert done.returncode == 0 and done.stderr == "", (
        "expected a clean exit, without resource tracker warnings"
    )
    before, after = json.loads(done.stdout)
    grown = {name: (before[name], count) for name, count in after.items() if count > before[name]}
    assert not grown, "expected nothing to grow (before, after)"


def test_a_program_that_forgets_a_worker_that_ignores_sigterm_still_exits(
    start_method: str, tmp_path: Path
) -> None:
    body = "worker = ezq.run(stubborn_worker)\ntime.sleep(0.5)\nprint('done')"
    with script(body, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=30)
        assert (child.returncode, stdout, stderr) == (0, "done\n", "")
        assert_group_ends(child.pid)


HUB_FAILS = """\
import resource
q, out = ezq.Q(), ezq.Q()
worker = ezq.run(big_worker, q, out)
q.put(1)
assert len(next(iter(out)).data) == 1  # it runs, and the hub reads its messages
pages = int(open("/proc/self/statm").read().split()[0])
resource.setrlimit(resource.RLIMIT_AS, (pages * os.sysconf("SC_PAGE_SIZE") + 200 * 2**20, -1))
q.put(400 * 2**20)  # the hub can't hold this one
try:
    q.stop(worker)
except (MemoryError, RuntimeError) as exc:
    print(type(exc).__name__, type(exc.__cause__).__name__)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_a_failure_in_the_hub_thread_reaches_the_caller(start_method: str, tmp_path: Path) -> None:
    with script(HUB_FAILS, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=30)
        assert stdout in ("RuntimeError MemoryError\n", "MemoryError NoneType\n"), stderr
        assert_group_ends(child.pid)


FORKED_CHILD = """\
import warnings
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+ warns of os.fork() beside threads
q = ezq.Q()
worker = ezq.run(idle_worker, q)
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit, so exit handlers run
os.waitpid(pid, 0)
time.sleep(0.3)
print(worker.is_alive())
q.stop(worker)
print("stopped")
"""


def test_a_plain_forked_child_does_not_take_the_workers_with_it(start_method: str, tmp_path: Path) -> None:
    with script(FORKED_CHILD, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=30)
        assert (stdout, stderr) == ("True\nstopped\n", ""), "expected the worker to outlive the child"


LATE_REQUEST = """\
import threading
pause = []  # seconds the hub waits, once, after it takes a request

def pause_after_answering(frame, event, arg):
    # In the hub thread, when it has taken a request (q.end() first has it
    # read what workers wrote), and before it goes on.
    if event == "return" and frame.f_code.co_name == "drain" and pause:
        time.sleep(pause.pop())

hub_run = ezq._Hub._run
def paused_hub_run(hub):  # the hub thread's body, profiled
    sys.setprofile(pause_after_answering)
    hub_run(hub)
ezq._Hub._run = paused_hub_run
q, go, ready = ezq.Q(), ezq.Q(), ezq.Q()
worker = ezq.run(ready_worker, ready, go, q)
next(iter(ready))
time.sleep(0.3)  # it waits on go, and has nothing more to say to the hub
pause.append(0.5)
first = threading.Thread(target=q.end)
first.start()
time.sleep(0.2)  # the hub has taken the first request, and waits
second = threading.Thread(target=q.end)
second.start()
second.join(10)
print("paused" if not pause else "not paused", "answered" if not second.is_alive() else "not answered")
go.end()
worker.join()
"""


def test_a_request_to_the_hub_while_it_answers_another_is_answered(start_method: str, tmp_path: Path) -> None:
    # The hub thread must not take the second request's wake-up with the
    # first's: then it would sleep until some worker wrote or exited.
    with script(LATE_REQUEST, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=30)
        assert (stdout, stderr) == ("paused answered\n", "")


def test_a_process_forked_from_a_worker_cannot_use_its_queues(start_method: str) -> None:
    out: ezq.Q[Any] = ezq.Q()
    ezq.run(forking_worker, out).join()
    assert [m.data for m in out.items()] == [3], "expected a RuntimeError in the forked child"


## Hardening ##


def test_a_map_starts_nothing_until_asked_and_stops_when_dropped(kind: str) -> None:
    def running() -> int:
        return threading.active_count() if kind == "thread" else len(descendants())

    list(ezq.map(double, [1], kind=kind))  # type: ignore[arg-type]  # the fork server, if any, starts
    before = running()
    results = ezq.map(slow_double, range(1000), num=2, kind=kind)  # type: ignore[arg-type]
    assert running() == before, "expected no worker before the first result is asked for"
    assert next(results) == 0
    assert running() > before
    del results
    gc.collect()
    deadline = time.monotonic() + 5
    while running() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running() == before, "expected the workers to stop when the map is dropped"


@pytest.mark.parametrize("qkind", KINDS)
def test_breaking_out_of_sorted_hands_back_what_it_held(qkind: str) -> None:
    q: ezq.Q[None] = ezq.Q(qkind)  # type: ignore[arg-type]
    for order in [2, 0, 3]:
        q.put(order=order)
    in_order = q.sorted()
    assert next(in_order).order == 0  # 2 waits for 1
    in_order.close()  # type: ignore[attr-defined]
    assert sorted(msg.order for msg in q.end()) == [2, 3], "expected 2 back on the queue"


def test_file_descriptors_above_1023_work(start_method: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("can't open 2048 files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        q: ezq.Q[int] = ezq.Q()
        out: ezq.Q[int] = ezq.Q()
        workers = [ezq.run(sum_worker, q, out) for _ in range(2)]
        q.put(1).put(2)
        q.stop(workers)
        assert sum(msg.data for msg in out.items()) == 3
        with pytest.raises(ezq.WorkerError, match="exited with code 3"):
            list(ezq.map(die_on_3, range(8), num=2, chunksize=1))
    finally:
        for fd in padding:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_worker_that_reports_and_exits_at_once_is_never_called_dead(start_method: str) -> None:
    # Its report and its exit come together: whoever looks first, the
    # worker raised, it did not die.
    workers = [ezq.run(boom_later, 0) for _ in range(20)]
    for worker in workers:
        with pytest.raises(ValueError, match="boom 0"):
            worker.join(timeout=30)


def join_into(worker: ezq.Worker, errors: list[BaseException | None]) -> None:
    """Join `worker`; append what it raised (or None)."""
    try:
        worker.join()
        errors.append(None)
    except BaseException as exc:
        errors.append(exc)


@pytest.mark.parametrize(("task", "rounds"), [(nap, 12), (boom_later, 2)])
def test_two_threads_may_join_one_worker(kind: str, task: Any, rounds: int) -> None:
    for _ in range(rounds):
        run = ezq.run_thread if kind == "thread" else ezq.run
        worker = run(task, 0.05)
        errors: list[BaseException | None] = []
        threads = [threading.Thread(target=join_into, args=(worker, errors)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kinds = {type(error) for error in errors}
        assert kinds == ({type(None)} if task is nap else {ValueError}), errors


def test_join_with_timeout_0_raises_for_a_worker_that_already_failed(kind: str) -> None:
    worker = (ezq.run_thread if kind == "thread" else ezq.run)(boom, 3)
    while worker.is_alive():
        time.sleep(0.01)
    with pytest.raises(ValueError, match="boom 3"):
        worker.join(timeout=0)


@needs_dill
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_script_read_from_stdin_runs(method: str, tmp_path: Path) -> None:
    code = f"import multiprocessing; multiprocessing.set_start_method({method!r})\n{GUARDED}"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    done = subprocess.run(
        [sys.executable, "-"], input=code, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert (done.stdout, done.stderr) == ("[0, 3, 6]\n", "")


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_task_stuck_in_c_dies_with_a_killed_parent(start_method: str, tmp_path: Path) -> None:
    body = "print('started', flush=True)\nlist(ezq.map(stuck_in_c, range(2), num=2))"
    with script(body, start_method, tmp_path) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "started\n"
        time.sleep(1.5)  # the workers are deep in their C call
        os.kill(child.pid, signal.SIGKILL)
        assert_group_ends(child.pid)


def test_a_task_that_calls_sys_exit_is_an_error_not_an_exit(kind: str) -> None:
    with pytest.raises(ezq.WorkerError, match=r"the task called sys\.exit\(0\)"):
        list(ezq.map(sys.exit, [0], kind=kind))  # type: ignore[arg-type]


def test_a_map_input_that_fails_to_unpickle_in_the_worker_says_so(start_method: str) -> None:
    with pytest.raises(ValueError, match="can't be rebuilt here") as caught:
        list(ezq.map(double, [FailsToUnpickle()], num=1))
    assert "while unpickling input item 0" in str(caught.value.__cause__)


def test_stopping_twice_leaves_no_end_marker_for_the_next_workers(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(sum_worker, q, out) for _ in range(2)]
    q.stop(workers).stop(workers)
    q.put(5).put(6)
    q.stop(ezq.run(sum_worker, q, out))
    assert sorted(msg.data for msg in out.items()) == [0, 0, 11], "expected the new worker to read 5 and 6"


def test_a_worker_that_leaves_a_thread_reading_a_queue_still_exits(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    ezq.Q().stop(ezq.run(leave_a_reader, q))  # returns once the worker exits


def test_an_uplink_frame_can_carry_4_gib_and_more() -> None:
    size = 5 << 30
    assert ezq._HEAD.unpack(ezq._HEAD.pack(size, 0, 0))[0] == size


class Alarm(BaseException):
    """What the tests' signal handlers raise, as Ctrl-C raises KeyboardInterrupt (a BaseException)."""


def check_blobs(q: ezq.Q[bytes], out: ezq.Q[int]) -> None:
    """Check that each message arrived whole; put its order."""
    for msg in q:
        assert msg.data == bytes([msg.order % 256]) * len(msg.data), "a message arrived damaged"
        out.put(msg.order)


def in_ezq(frame: Any) -> bool:
    """Whether `frame` runs where ezq answers for what an exception leaves behind:
    in ezq's code, in a function that it calls, or in threading's code under it
    (whose waits release and retake ezq's locks); not in the tests' own code
    that ezq calls (a worker's task), nor deep in other libraries."""
    callee = True  # the frame itself may be any function's
    while frame is not None:
        file = frame.f_code.co_filename
        if file == ezq.__file__:
            return True
        if file == __file__ or not (callee or file == threading.__file__):
            return False
        callee = False
        frame = frame.f_back
    return False


def interrupt_each_point(call: Callable[[int], object], count: int, step: int = 1) -> tuple[list[int], int]:
    """Call `call(0)` to `call(count - 1)`, each interrupted at another point.

    Returns the numbers of the calls that returned, and how many raised.

    Python runs a signal handler in the main thread at a function's start and
    just after a call returns, and a signal that arrives during a write is
    handled right after the write. So a handler's exception (Ctrl-C's
    KeyboardInterrupt, a SIGALRM timeout) may come at any such point in ezq.
    A profile hook counts them (the entries and returns of functions, and the
    returns from C, inside a call to ezq: in ezq's code, or in what it calls,
    such as threading's Condition.wait), and in turn, for each
    count N, the Nth gets a real signal (SIGUSR1: pytest-timeout's hard limit
    uses SIGALRM) whose handler raises. When a call has fewer, the count
    starts again from 1. With `step`, N goes 1, 1 + step, 1 + 2 * step...,
    then 2, 2 + step... (for a call with more points than calls to spare).
    """
    first = 1  # the first point of this pass
    target, seen = first - step, 0  # the point in this call to interrupt (from 1), and the points so far
    returned: list[int] = []
    interrupted = 0

    def at_point(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if event in ("call", "return", "c_return") and in_ezq(frame):
            seen += 1
            if seen == target:
                signal.raise_signal(signal.SIGUSR1)  # its handler runs here, inside ezq

    with raising_in_ezq(signal.SIGUSR1, also=at_point):
        for number in range(count):
            target, seen = target + step, 0
            sys.setprofile(at_point)
            try:
                call(number)
                sys.setprofile(None)
                returned.append(number)
            except Alarm:
                interrupted += 1
            finally:
                sys.setprofile(None)
            if seen < target:
                first = first % step + 1
                target = first - step
    return returned, interrupted


@contextlib.contextmanager
def raising_in_ezq(signum: int, also: Callable[..., object] | None = None) -> Iterator[None]:
    """Have a handler of `signum` raise `Alarm` inside a call to ezq (or in `also`), nowhere else."""

    def interrupt(signum: int, frame: Any) -> None:
        if in_ezq(frame) or (also is not None and frame.f_code is also.__code__):
            raise Alarm

    previous = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def put_while_interrupted(q: ezq.Q[bytes], count: int) -> list[int]:
    """Put messages 0 to count-1, each interrupted at another point, then 50 of 1 MB with a signal
    every millisecond (a write that a signal interrupts may have written part of its message).
    Return the orders of the messages that put took."""

    def put(order: int, size: int) -> None:
        q.put(bytes([order % 256]) * size, order=order)

    sizes = [300_000, 1000, 1000]  # a large one fills a pipe
    took, interrupted = interrupt_each_point(lambda order: put(order, sizes[order % 3]), count)
    assert interrupted > count // 2, "expected most puts to be interrupted"

    def keep_signalling(main: int) -> None:
        while not stop.wait(0.001):
            signal.pthread_kill(main, signal.SIGUSR1)

    stop = threading.Event()
    signaller = threading.Thread(target=keep_signalling, args=(threading.get_ident(),))
    with raising_in_ezq(signal.SIGUSR1):
        signaller.start()
        try:
            for order in range(count, count + 50):
                with contextlib.suppress(Alarm):
                    put(order, 1 << 20)
                    took.append(order)
        finally:
            stop.set()
            signaller.join()
    return took


def test_an_exception_inside_put_loses_no_reader_and_damages_no_message(start_method: str) -> None:
    # Each message goes down a pipe to a reader in a worker (the hub writes
    # what a full pipe can't take). Every message that put took must arrive,
    # once and whole; one that put raised on may arrive too.
    q: ezq.Q[bytes] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(check_blobs, q, out) for _ in range(2)]
    q.put(b"", order=-1)
    next(iter(out))  # a reader is waiting for the next message: puts hand it a batch
    took = put_while_interrupted(q, 600)
    q.stop(workers, timeout=60)
    got = [msg.data for msg in out.end()]
    assert len(got) == len(set(got)), "expected no message twice"
    assert set(took) <= set(got), "expected every message that put() took to arrive"


def put_interrupted_blobs(q: ezq.Q[bytes], took: ezq.Q[list[int]]) -> None:
    took.put(put_while_interrupted(q, 400))


def test_an_exception_inside_a_workers_put_damages_no_message(start_method: str) -> None:
    # In a worker, put writes its message up a pipe that the worker's queues
    # share: an interrupted write must not leave half a message in it.
    q: ezq.Q[bytes] = ezq.Q()
    took: ezq.Q[list[int]] = ezq.Q()
    ezq.run(put_interrupted_blobs, q, took).join(timeout=30)
    got = []
    for msg in q.items():
        assert msg.data == bytes([msg.order % 256]) * len(msg.data), "a message arrived damaged"
        got.append(msg.order)
    assert len(got) == len(set(got)), "expected no message twice"
    [report] = took.items()
    assert set(report.data) <= set(got), "expected every message that put() took to arrive"


def test_an_exception_inside_get_leaves_the_queue_usable() -> None:
    # A message that an interrupted get took may be lost, as with any queue,
    # but none may come twice, and the queue's lock must not stay held (from
    # 3.14 on, `with lock:` leaves it held if a handler raises just after it
    # is taken), or the next put would wait forever.
    q: ezq.Q[int] = ezq.Q()
    put: list[int] = []
    got: list[int] = []

    reader = iter(q)

    def put_then_get(number: int) -> None:
        nonlocal reader
        q.put(order=number)
        put.append(number)
        try:
            got.append(next(reader).order)
        except Alarm:
            reader = iter(q)  # the exception ended that one
            raise

    _, interrupted = interrupt_each_point(put_then_get, 300)
    got += [msg.order for msg in q.items()]
    assert interrupted > 150, "expected most calls to be interrupted"
    assert len(got) == len(set(got)), "expected no message twice"
    assert len(set(put) - set(got)) <= interrupted, "expected no message lost but by an interrupted get"


def test_an_exception_inside_a_waiting_get_leaves_the_queue_usable() -> None:
    # A get that waits for a message in the queue's own process waits on a
    # threading.Condition, which releases and retakes the queue's lock in
    # Python code. An exception there must neither leave the lock held nor
    # release it again ("release unlocked lock", chained to the Ctrl-C, or
    # taking the lock from the thread that holds it). Each get has a queue
    # of its own, empty until a thread puts a message once the get waits.
    count = 200
    queues: list[ezq.Q[int]] = [ezq.Q() for _ in range(count)]
    got: list[int] = []
    readers: list[Iterator[ezq.Msg[int]]] = []  # closed after the test, not inside a get

    def get(number: int) -> None:
        q = queues[number]
        threading.Timer(0.002, lambda: q.put(order=number)).start()
        readers.append(iter(q))
        got.append(next(readers[-1]).order)

    _, interrupted = interrupt_each_point(get, count)
    readers.clear()
    time.sleep(0.1)  # the last timer's put
    for q in queues:  # the messages that interrupted gets left
        got += [msg.order for msg in q.end().items()]
    assert interrupted > count // 2, "expected most calls to be interrupted"
    assert len(got) == len(set(got)), "expected no message twice"
    assert count - len(got) <= interrupted, "expected no message lost but by an interrupted get"


def test_an_exception_inside_end_leaves_the_queue_usable(start_method: str) -> None:
    # Before an end marker, the queue waits for the hub to read what workers
    # wrote: an exception in that wait must leave the lock it waits on whole.
    control: ezq.Q[int] = ezq.Q()
    q: ezq.Q[int] = ezq.Q()
    worker = ezq.run(sum_worker, control, q)  # it could read q, but does not
    count = 100
    ended, interrupted = interrupt_each_point(lambda _: q.end(), count)
    assert interrupted > count // 2, "expected most calls to be interrupted"
    markers = q.qsize()
    assert len(ended) <= markers <= count, "expected an end marker for each end() that returned"
    control.put(5).stop([worker], timeout=30)  # the worker puts its sum after the markers
    assert [list(q.items()) for _ in range(markers)] == [[]] * markers
    assert [msg.data for msg in q.end().items()] == [5]


def quit_at_once(*args: object) -> None:
    """A worker's task that returns at once."""


def test_an_exception_inside_join_leaves_ezq_usable(start_method: str) -> None:
    # Waiting for a worker takes locks in the caller's thread (the worker's,
    # the hub's). An exception at any point must leave none held, or the next
    # join, start or put would wait forever (from 3.14 on, `with lock:` leaves
    # its lock held if a handler raises just after it is taken).
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(quit_at_once, q) for _ in range(100)]
    _, interrupted = interrupt_each_point(lambda number: workers[number].join(), len(workers))
    assert interrupted > len(workers) // 2, "expected most joins to be interrupted"
    for worker in workers:
        with contextlib.suppress(ezq.WorkerError):  # one an interrupted join terminated
            worker.join()
    q.put(2)
    q.stop([ezq.run(sum_worker, q, out)], timeout=30)
    assert [msg.data for msg in out.end().items()] == [2]


def test_an_exception_inside_run_leaves_ezq_usable(start_method: str) -> None:
    # Starting a worker takes locks in the caller's thread (ezq's start lock,
    # the queue's, the hub's) and, under spawn and forkserver, asks the fork
    # server. An exception at any point must leave no lock held and the
    # server's answers in step: the next worker is started, and is the one
    # its pid says.
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    # Under fork, each of a start's points; else a sample (a start through the
    # fork server has ten times the points, mostly in pickling for it).
    count, step = (300, 1) if start_method == "fork" else (100, 29)
    _, interrupted = interrupt_each_point(lambda _: ezq.run(quit_at_once, q), count, step)
    assert interrupted > count // 2, "expected most starts to be interrupted"
    worker = ezq.run(report_pid, out)
    worker.join(timeout=30)
    assert [msg.data for msg in out.end().items()] == [worker.pid]


def report_pid(out: ezq.Q[int]) -> None:
    out.put(os.getpid())


def test_an_interrupted_start_leaves_the_next_one_its_own_pid(start_method: str) -> None:
    # Under spawn and forkserver, a start asks ezq's fork server for a worker
    # and reads back its pid. An exception between the two leaves that reply
    # unread: the next start must not take it for its own worker's, or
    # terminate(), kill() and timeouts would signal the wrong process.
    if start_method == "fork":
        pytest.skip("fork starts workers without the fork server")
    out: ezq.Q[int] = ezq.Q()
    ezq.run(quit_at_once).join()  # the server runs

    def after_asking(frame: Any, event: str, arg: Any) -> None:  # as it waits for the answer
        if event == "call" and frame.f_code.co_name == "result" and in_ezq(frame):
            signal.raise_signal(signal.SIGUSR1)

    with raising_in_ezq(signal.SIGUSR1, also=after_asking), pytest.raises(Alarm):
        sys.setprofile(after_asking)
        try:
            ezq.run(quit_at_once)
        finally:
            sys.setprofile(None)
    worker = ezq.run(report_pid, out)
    worker.join(timeout=30)
    assert [msg.data for msg in out.end().items()] == [worker.pid]


def test_the_fork_servers_request_numbers_wrap_around(start_method: str) -> None:
    # A request's number is 4 bytes on the wire: a long-running program goes past that.
    if start_method == "fork":
        pytest.skip("fork starts workers without the fork server")
    ezq.run(quit_at_once).join()  # the server runs
    hub = ezq._state.hub
    assert hub is not None and hub.servers
    hub.servers[-1].numbers = itertools.count(2**32 - 1)
    out: ezq.Q[int] = ezq.Q()
    workers = [ezq.run(report_pid, out) for _ in range(2)]
    for worker in workers:
        worker.join(timeout=30)
    pids = [worker.pid for worker in workers]
    assert None not in pids
    assert sorted(msg.data for msg in out.end().items()) == sorted(pid for pid in pids if pid is not None)


def get_while_interrupted(q: ezq.Q[bytes], count: int, out: ezq.Q[tuple[list[int], int]]) -> None:
    """Read `count` messages, each get interrupted at another point; put what arrived, and how many raised."""
    got: list[int] = []
    reader = iter(q)

    def get(number: int) -> None:
        nonlocal reader
        try:
            msg = next(reader)
        except Alarm:
            reader = iter(q)  # the exception ended that one
            raise
        assert msg.data == bytes([msg.order % 256]) * len(msg.data), "a message arrived damaged"
        got.append(msg.order)

    _, interrupted = interrupt_each_point(get, count)
    out.put((got, interrupted))


def test_an_exception_inside_a_workers_get_damages_no_message(start_method: str) -> None:
    # A batch of messages comes down a pipe: a read that an exception
    # interrupts (a large message takes many) must leave the next get where
    # it stopped, and a request for a batch sent twice must not bring two.
    # A message that an interrupted get took may be lost, as with any queue.
    q: ezq.Q[bytes] = ezq.Q()
    out: ezq.Q[tuple[list[int], int]] = ezq.Q()
    count = 300
    for order in range(count):
        q.put(bytes([order % 256]) * (300_000 if order % 3 == 0 else 1000), order=order)
    ezq.run(get_while_interrupted, q, count, out).join(timeout=30)
    [report] = out.items()
    got, interrupted = report.data
    left = [msg.order for msg in q.items()]  # what the worker gave back
    assert interrupted > count // 2, "expected most gets to be interrupted"
    assert len(got + left) == len(set(got + left)), "expected no message twice"
    assert count - len(got + left) <= interrupted, "expected no message lost but by an interrupted get"


def ask_then_stop(q: ezq.Q[int]) -> None:
    """Get one message, but stop (an exception) just after asking the queue for a batch, and end."""

    def after_asking(frame: Any, event: str, arg: Any) -> None:
        if event == "return" and frame.f_code.co_name == "request" and frame.f_back.f_code.co_name == "get":
            signal.raise_signal(signal.SIGUSR1)

    with raising_in_ezq(signal.SIGUSR1, also=after_asking), contextlib.suppress(Alarm):
        sys.setprofile(after_asking)
        try:
            next(iter(q))
        finally:
            sys.setprofile(None)


def test_a_worker_that_stops_just_after_asking_for_messages_loses_none(start_method: str) -> None:
    # The batch it asked for comes down its pipe after it stopped reading:
    # the queue must get it back.
    q: ezq.Q[int] = ezq.Q()
    for number in range(10):
        q.put(number)
    ezq.run(ask_then_stop, q).join(timeout=30)
    assert sorted(msg.data for msg in q.items()) == list(range(10))


## Timeouts ##


def hang_on(x: int, hang: int = 5, start_file: str = "") -> int:
    """Return x, but sleep "forever" on `hang` (writing when it started to `start_file`)."""
    if x == hang:
        if start_file:
            Path(start_file).write_text(repr(time.monotonic()))
        time.sleep(1000)
    return x


def pid_in(error: BaseException) -> int:
    match = re.search(r"\(pid (\d+)\)", str(error))
    assert match, f"expected a pid in {error}"
    return int(match[1])


def is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # (the second if it was reaped as we read)
        return True
    return state == "Z"  # a zombie has stopped running


def map_workers() -> list[int]:
    """This process's worker processes (ezq's fork server and multiprocessing's helpers aside)."""
    helpers = ("ezq-forkserver", "resource_tracker", "forkserver")
    pids = []
    for pid in descendants():
        with contextlib.suppress(OSError):
            if not any(h in Path(f"/proc/{pid}/cmdline").read_text() for h in helpers):
                pids.append(pid)
    return pids


LIMIT = 1.0


def collect_until_timeout(results: Iterator[int]) -> tuple[list[int], TimeoutError, float]:
    """The results before a TimeoutError, the error, and when it was raised (monotonic)."""
    got: list[int] = []
    with pytest.raises(TimeoutError) as caught:
        for result in results:
            got.append(result)
    return got, caught.value, time.monotonic()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("ordered", [True, False])
def test_a_call_that_hangs_raises_timeout_error_after_the_results_before_it(
    kind: str, ordered: bool, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    before = set(map_workers())
    task = functools.partial(hang_on, hang=5, start_file=str(started))
    got, error, raised = collect_until_timeout(
        ezq.map(task, range(12), kind=kind, num=2, timeout=LIMIT, ordered=ordered)  # type: ignore[arg-type]
    )
    waited = raised - float(started.read_text())
    assert LIMIT - 0.01 <= waited < LIMIT + 2, f"expected the error {LIMIT} s after the call started"
    where = r"map worker map-\d+ \(pid \d+\)" if kind == "process" else r"map thread ezq-map-\d"
    assert re.fullmatch(rf"task took longer than {LIMIT} s on input item 5 in {where}", str(error)), error
    if ordered:
        assert got == [0, 1, 2, 3, 4]
    else:
        assert set(range(5)) <= set(got) and 5 not in got
    if kind == "process":
        assert "time.sleep(1000)" in str(error.__cause__), "expected the worker's traceback: where it hung"
        assert is_gone(pid_in(error)), "expected the worker that hung to be killed"
        assert set(map_workers()) <= before, "expected no worker of this map left"


def slow_then_hang(x: int) -> int:
    """About 50 ms per item; item 25 hangs."""
    time.sleep(1000 if x == 25 else 0.05)
    return x


def test_the_clock_runs_per_call_not_per_chunk(start_method: str) -> None:
    # A chunk of 40 takes about 2 s, longer than the limit: only item 25's own call is too slow.
    start = time.monotonic()
    got, error, raised = collect_until_timeout(ezq.map(slow_then_hang, range(80), chunksize=40, timeout=0.6))
    assert got == list(range(25))
    assert "on input item 25 in map worker" in str(error)
    assert 25 * 0.05 + 0.6 <= raised - start < 25 * 0.05 + 0.6 + 5


def stuck_in_c(x: int) -> int:
    """Hang on 3 in one C call that holds the GIL (no signal handler runs in it)."""
    return sum(range(10**13)) if x == 3 else x


def test_a_call_that_ignores_the_interrupt_is_killed_with_its_worker(start_method: str) -> None:
    got, error, _ = collect_until_timeout(ezq.map(stuck_in_c, range(8), chunksize=1, timeout=0.5))
    assert got == [0, 1, 2]
    assert "on input item 3 in map worker" in str(error)
    if sys.version_info >= (3, 11):  # 3.10 has no notes
        assert any("did not stop within" in note and "killed the worker" in note for note in error.__notes__)
    assert is_gone(pid_in(error))
    got, error, _ = collect_until_timeout(ezq.map(stuck_in_c, range(8), chunksize=8, timeout=0.5))
    assert got == []  # its chunk's results went with the worker, and the note says so
    if sys.version_info >= (3, 11):
        assert "the results of input items 0-2 went with it" in error.__notes__[0]


def test_no_timeout_fires_for_calls_within_the_limit(kind: str) -> None:
    slow = ezq.map(sleep_then_return, [0.2] * 4, kind=kind, num=2, timeout=1.0)  # type: ignore[arg-type]
    assert list(slow) == [0.2] * 4
    fast = ezq.map(double, range(10_000), kind=kind, timeout=5)  # type: ignore[arg-type]
    assert list(fast) == [2 * x for x in range(10_000)]


def test_a_timeout_in_a_nested_map_runs_on_threads(start_method: str) -> None:
    out: ezq.Q[Any] = ezq.Q()
    ezq.Q().stop(ezq.run(nested_timeout_worker, out))
    assert [msg.data for msg in out.end()] == ["TimeoutError", [0, 1]]


def nested_timeout_worker(out: ezq.Q[Any]) -> None:
    got = []
    try:
        for result in ezq.map(functools.partial(hang_on, hang=2), range(5), timeout=0.3):
            got.append(result)
    except TimeoutError as error:
        out.put(type(error).__name__)
    out.put(got)


THREAD_HANG_SCRIPT = """
import time
import ezq

def hang(x):
    if x == 1:
        time.sleep(1000)
    return x

if __name__ == "__main__":
    try:
        list(ezq.map(hang, range(4), kind=KIND, timeout=0.3))
    except TimeoutError as error:
        print(type(error).__name__)
"""


@needs_dill
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("map_kind", KINDS)
def test_a_call_that_hangs_does_not_keep_the_program_from_exiting(
    map_kind: str, start_method: str, tmp_path: Path
) -> None:
    body = THREAD_HANG_SCRIPT.replace("KIND", repr(map_kind))
    with script(body, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=30)
        assert (child.returncode, stdout, stderr) == (0, "TimeoutError\n", "")
        assert_group_ends(child.pid)


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        (0, ValueError, "timeout must be a number of seconds > 0 or None, not 0"),
        (-1.5, ValueError, "not -1.5"),
        (float("nan"), ValueError, "not nan"),
        ("1", TypeError, "timeout must be a number of seconds > 0 or None, not str"),
        (True, TypeError, "not bool"),
    ],
)
def test_a_bad_timeout_gets_a_clear_error_at_the_call(
    timeout: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ezq.map(double, [1], timeout=timeout)
    with pytest.raises(error, match=message):
        ezq.Q().stop([], timeout=timeout)
    with pytest.raises(ValueError, match="with an executor, timeout needs chunksize=1"):
        ezq.map(double, [1], timeout=1, chunksize=2, executor=concurrent.futures.ThreadPoolExecutor(1))
    assert list(ezq.map(double, [1, 2], timeout=float("inf"))) == [2, 4]


def late_reader(q: ezq.Q[int], out: ezq.Q[int], wait: float) -> None:
    """Read `q` only after `wait` seconds."""
    time.sleep(wait)
    for msg in q:
        out.put(msg.data)


def test_stop_with_a_timeout_names_the_workers_still_running_and_leaves_them(kind: str) -> None:
    q: ezq.Q[int] = ezq.Q(kind)  # type: ignore[arg-type]
    out: ezq.Q[int] = ezq.Q(kind)  # type: ignore[arg-type]
    start = ezq.run if kind == "process" else ezq.run_thread
    worker = start(late_reader, q, out, 1.5)
    q.put(7)
    before = time.monotonic()
    with pytest.raises(TimeoutError, match=r"1 worker\(s\) still running after 0.3 s: 'late_reader"):
        q.stop(worker, timeout=0.3)
    assert 0.3 <= time.monotonic() - before < 3
    assert worker.is_alive()
    q.stop(worker)  # waits again, with no second end marker for it
    assert q.qsize() == 0, "expected no stale end marker"
    assert [msg.data for msg in out.end()] == [7]


def test_terminate_and_kill_stop_a_process_worker(start_method: str) -> None:
    for stop, name in [(ezq.Worker.terminate, "SIGTERM"), (ezq.Worker.kill, "SIGKILL")]:
        q: ezq.Q[int] = ezq.Q()
        worker = ezq.run(sleeper)
        with pytest.raises(TimeoutError, match=r"still running after 0.1 s: 'sleeper-\d+' \(pid \d+\)"):
            q.stop(worker, timeout=0.1)
        stop(worker)
        with pytest.raises(ezq.WorkerError, match=f"was killed by signal {name}"):
            worker.join()
        stop(worker)  # once it has gone: nothing to do


def test_a_thread_worker_cannot_be_killed() -> None:
    release = threading.Event()
    worker = ezq.run_thread(release.wait)
    for stop in (worker.terminate, worker.kill):
        with pytest.raises(TypeError, match="is a thread: Python can't stop a thread from outside"):
            stop()
    release.set()
    worker.join()


RELEASE = threading.Event()
STARTED: list[int] = []


def hang_on_2_until_released(x: int) -> int:
    STARTED.append(x)
    if x == 2:
        RELEASE.wait()
    return x


def test_an_executor_cancels_what_has_not_started_after_a_timeout() -> None:
    STARTED.clear()
    RELEASE.clear()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        results = ezq.map(hang_on_2_until_released, range(100), executor=pool, num=1, timeout=0.5)
        got, error, raised = collect_until_timeout(results)
        RELEASE.set()  # item 2 returns; item 3 had been submitted, and is cancelled
    assert str(error) == "task took longer than 0.5 s on input item 2 on the executor"
    assert got == [0, 1] and 0.5 <= raised - start < 5
    assert STARTED == [0, 1, 2], "expected the calls that had not started to be cancelled"


## Executors ##

ENGINES = ["ProcessPoolExecutor", "loky", "dask"]


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Any]]:
    """Executors of real engines, made once for the tests that use them."""
    with contextlib.ExitStack() as stack:
        made: dict[str, Any] = {}

        def make(name: str) -> Any:
            if name not in made:
                if name == "ProcessPoolExecutor":
                    from concurrent.futures import ProcessPoolExecutor

                    made[name] = stack.enter_context(ProcessPoolExecutor(2))
                elif name == "loky":
                    made[name] = pytest.importorskip("loky").get_reusable_executor(max_workers=2)
                else:
                    distributed = pytest.importorskip("distributed")
                    cluster = stack.enter_context(
                        distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
                    )
                    made[name] = stack.enter_context(distributed.Client(cluster)).get_executor()
            return made[name]

        yield {"make": make}


@pytest.fixture(params=ENGINES)
def executor(request: pytest.FixtureRequest, engines: dict[str, Any]) -> Any:
    """An executor of each engine: the stdlib's, loky's and a dask.distributed local cluster's."""
    return engines["make"](request.param)


def mark_slowly(path: str, i: int) -> int:
    """Write down that item i ran (to a file every process can see), slowly."""
    time.sleep(0.1)
    with open(path, "a") as marks:
        marks.write(f"{i}\n")
    return i


def test_map_on_an_executor_yields_results_in_order(executor: Any) -> None:
    assert list(ezq.map(double, range(1000), executor=executor, num=2)) == [2 * i for i in range(1000)]
    have = list(ezq.map(add, range(100), range(100), executor=executor, ordered=False, num=2))
    assert sorted(have) == [2 * i for i in range(100)]


def test_map_on_an_executor_raises_the_task_exception(executor: Any) -> None:
    have = []
    with pytest.raises(ValueError, match="boom 3") as info:
        for result in ezq.map(boom, range(8), executor=executor, num=2):
            have.append(result)
    assert have == [0, 1, 2]
    assert "by input item 3" in str(info.value.__cause__) and "in boom" in str(info.value.__cause__)


def test_breaking_out_of_map_on_an_executor_cancels_what_has_not_started(
    executor: Any, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    for _ in ezq.map(mark_slowly, itertools.repeat(str(marks)), range(100), executor=executor, num=10):
        break  # 20 chunks were in flight, on 2 workers
    time.sleep(1.5)  # time enough for all 20 to run, had they not been cancelled
    # Some engines queue a few calls ahead in a way that can't be cancelled
    # (ProcessPoolExecutor: one per worker, plus one); all the others must go.
    ran = len(marks.read_text().split())
    assert ran <= 10, f"expected the chunks that had not started to be cancelled, but {ran} of 20 ran"
    assert executor.submit(double, 21).result(timeout=30) == 42, "expected the executor to stay usable"


def test_map_on_an_executor_reads_a_large_generator_lazily(executor: Any) -> None:
    pulled = 0

    def kilobytes() -> Iterator[bytes]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield bytes([i & 255]) * 1024

    ahead = 0
    for count, size in enumerate(ezq.map(len, kilobytes(), executor=executor, num=2), 1):
        assert size == 1024
        ahead = max(ahead, pulled - count)
    assert count == 100_000
    assert ahead < 10_000, f"expected a bounded window of input in flight, not {ahead} items"


def test_map_wants_an_executor_that_can_submit() -> None:
    with pytest.raises(TypeError, match=r"executor must have a submit\(fn, \*args\) method"):
        ezq.map(double, [1], executor=object())  # type: ignore[arg-type]


## Without dill ##


@pytest.mark.skipif(HAVE_DILL, reason="checks what happens where dill is not installed")
def test_without_dill_plain_data_works_and_a_lambda_asks_for_dill(start_method: str) -> None:
    assert list(ezq.map(double, range(5))) == [0, 2, 4, 6, 8]
    with pytest.raises(TypeError, match=r"install dill \(pip install dill\)"):
        ezq.map(lambda x: x, [1])
    with pytest.raises(TypeError, match="install dill"):
        ezq.run(lambda: None)


## The package ##

USER_SCRIPT = """\
import ezq


def double(x: int) -> int:
    return 2 * x


def worker(q: ezq.Q[int], out: ezq.Q[int]) -> None:
    for msg in q:
        out.put(msg.data * 2)


def main() -> None:
    results: list[int] = list(ezq.map(double, range(3)))
    q, out = ezq.Q(), ezq.Q()  # as the README writes them
    typed: ezq.Q[int] = ezq.Q()
    w = ezq.run(worker, typed, out)
    typed.put(2).stop(w)
    q.put(ezq.Msg(data=3, order=1)).end()
    total: int = sum(msg.data for msg in out.items())
    wrong: str = next(ezq.map(double, [1]))  # the deliberate error, line 21
    print(results, total, wrong, [msg.data for msg in q])
"""


def type_errors(folder: Path, python: str) -> dict[str, list[str]]:
    """The errors mypy --strict and pyright (strict) find in folder/user.py, using `python`'s packages."""
    (folder / "user.py").write_text(USER_SCRIPT)
    (folder / "pyrightconfig.json").write_text('{"typeCheckingMode": "strict"}')
    tools = Path(sys.executable).parent
    mypy = [
        str(tools / "mypy"),
        "--strict",
        "--python-executable",
        python,
        "--cache-dir",
        str(folder / ".mypy"),
    ]
    pyright = [str(tools / "pyright"), "--pythonpath", python]
    found = {}
    for name, command in {"mypy": mypy, "pyright": pyright}.items():
        done = subprocess.run([*command, "user.py"], cwd=folder, capture_output=True, text=True, timeout=300)
        found[name] = [
            line.strip() for line in done.stdout.splitlines() if "error" in line and "user.py:" in line
        ]
    return found


def assert_only_the_deliberate_error(found: dict[str, list[str]]) -> None:
    for checker, errors in found.items():
        assert len(errors) == 1 and "user.py:21" in errors[0], f"{checker} found: {errors}"


package = pytest.mark.skipif("EZQ_WHEEL" not in os.environ, reason="run by make package, with a built wheel")


@package
@pytest.mark.package
@pytest.mark.timeout(600)
def test_an_installed_wheel_is_typed_for_its_users(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    python = str(tmp_path / "venv" / "bin" / "python")
    install = [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        os.environ["EZQ_WHEEL"],
    ]
    subprocess.run(install, check=True, timeout=300)
    where = [python, "-c", "import ezq, pathlib; print(*pathlib.Path(ezq.__file__).parent.iterdir())"]
    files = subprocess.run(where, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert {Path(name).name for name in files} >= {"__init__.py", "py.typed"}, "expected a typed package"
    assert_only_the_deliberate_error(type_errors(tmp_path, python))


@package
@pytest.mark.package
@pytest.mark.timeout(600)
def test_a_copied_ezq_py_is_typed_for_its_users(tmp_path: Path) -> None:
    (tmp_path / "ezq.py").write_text((HERE / "ezq.py").read_text())
    assert_only_the_deliberate_error(type_errors(tmp_path, sys.executable))


@package
@pytest.mark.package
def test_the_sdist_holds_only_what_users_need() -> None:
    import tarfile

    with tarfile.open(os.environ["EZQ_SDIST"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    want = {"ezq.py", "py.typed", "test_ezq.py", "README.md", "LICENSE.md", "pyproject.toml", "PKG-INFO"}
    assert names - {".gitignore"} == want  # hatchling always adds the .gitignore


@package
@pytest.mark.package
def test_the_version_has_one_source() -> None:
    wheel = Path(os.environ["EZQ_WHEEL"]).name
    assert wheel.startswith(f"ezq-{ezq.__version__}-"), "expected the build to read ezq.__version__"
    assert ezq.__version__ in README.read_text().split("## Changelog", 1)[1], "expected a changelog entry"


## Demo ##


def demo() -> int:
    """Run every README example, printing what it prints; non-zero if one fails."""
    import tempfile

    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for index, example in enumerate(readme_examples()):
            print(
                f"--- README example {index + 1}{' (pressing Ctrl-C)' if example.ctrl_c else ''} ---",
                flush=True,
            )
            done = run_example(example, "default", Path(folder))
            print(done.stdout + done.stderr, end="", flush=True)
            if without_pids(done.stdout) != example.stdout or not output_matches(example.stderr, done.stderr):
                print(f"!!! example {index + 1} did not print what the README says")
                failed += 1
    return failed


if __name__ == "__main__":
    sys.exit(demo())
