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
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# lib
import pytest

# pkg
import ezq

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
ALL_METHODS = ["fork", "spawn", "forkserver"]
# EZQ_TEST_METHODS picks the start methods of the process tests: "default"
# (the interpreter's) or some of the three, comma-separated (`make test`
# takes all three on the oldest and newest interpreter, fewer between them,
# to save time). The scripts of the corpus always run under all three.
_methods = os.environ.get("EZQ_TEST_METHODS", "") or ",".join(ALL_METHODS)
METHODS = [multiprocessing.get_start_method()] if _methods == "default" else _methods.split(",")
KINDS = ["process", "thread"]
HAVE_DILL = importlib.util.find_spec("dill") is not None
LINUX_CALLS = sys.platform == "linux" and not os.environ.get(
    "EZQ_POSIX_ONLY"
)  # (ezq uses them: see ezq._LINUX)
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


def workers_alive() -> list[int]:
    """This process's worker processes (ezq's fork server and multiprocessing's helpers aside)."""
    helpers = ("ezq-forkserver", "resource_tracker", "forkserver")
    pids = []
    for pid in descendants():
        with contextlib.suppress(OSError):
            if not any(h in Path(f"/proc/{pid}/cmdline").read_text() for h in helpers):
                pids.append(pid)
    return pids


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


def test_importing_ezq_off_posix_says_it_runs_on_posix_only() -> None:
    # (ezq's imports first, as they are found on Windows; then ezq as it would run there)
    code = "import os, sys, ezq\ndel sys.modules['ezq']\nos.name = 'nt'\nimport ezq"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "ImportError: ezq runs on POSIX systems only (Linux, macOS)" in done.stderr


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
        assert workers_alive() == [], "expected no worker left"
    else:
        frames = traceback.extract_tb(info.value.__traceback__)
        assert "boom" in [frame.name for frame in frames], "expected the task's frame in the traceback"


def test_map_cancels_the_remaining_work_after_an_exception(kind: str) -> None:
    numbers = Endless()
    with pytest.raises(ValueError, match="boom 3"):
        list(ezq.map(boom, numbers, kind=kind))  # type: ignore[arg-type]
    assert numbers.read < 10**6, "expected the input to stop being read"
    assert workers_alive() == []


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
    assert workers_alive() == []


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
    frames = re.findall(r'File "([^"]+)"', str(info.value.__cause__))
    assert frames and Path(frames[0]).name == "test_ezq.py", (
        f"expected the worker's traceback to start at the task: {frames}"
    )
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
    assert workers_alive() == []


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
    assert workers_alive() == [], "expected the workers gone after the loop"
    results = ezq.map(slow_double, range(10**6))
    next(results)
    del results
    assert workers_alive() == [], "expected the workers gone with the iterator"


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
    assert workers_alive() == []


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


@pytest.mark.skipif(not LINUX_CALLS, reason="PR_SET_PDEATHSIG is Linux's")
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
        if event == "return" and frame.f_code.co_name == "poke" and frame.f_back.f_code.co_name == "get":
            signal.raise_signal(signal.SIGUSR1)

    with raising_in_ezq(signal.SIGUSR1, also=after_asking), contextlib.suppress(Alarm):
        sys.setprofile(after_asking)
        try:
            next(iter(q))
        finally:
            sys.setprofile(None)


def test_a_worker_that_stops_just_after_asking_for_messages_loses_none(start_method: str) -> None:
    # The batch it asked for comes down its pipe after it stopped reading
    # (or as it ends): the queue must get it back. (Most times, the request
    # is taken back before the batch goes: so, 20 times.)
    for _ in range(20):
        q: ezq.Q[int] = ezq.Q()
        for number in range(10):
            q.put(number)
        ezq.run(ask_then_stop, q).join(timeout=30)
        assert sorted(msg.data for msg in q.items()) == list(range(10))


## One owner for every pipe ##
# Faults that an adversary finds where ownership of a pipe or a process is
# shared: each of these failed on ezq 4.2.3.


class Tick(Exception):
    """What a worker's own timer's handler raises (as a per-item deadline would)."""


def read_through_a_timer(q: ezq.Q[int], out: ezq.Q[tuple[int, int, bool]]) -> None:
    """Read `q` to its end while a timer's handler raises every 2 ms; put what arrived."""

    def tick(signum: int, frame: Any) -> None:
        if frame is None or frame.f_code.co_name != "read_through_a_timer":  # (not this loop's own steps)
            raise Tick

    got = ticks = 0
    ended = False
    signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    while not ended:
        try:
            for _ in q:
                got += 1
            ended = True
        except Tick:
            ticks += 1  # and back to the queue, as a loop with a deadline per item does
    signal.setitimer(signal.ITIMER_REAL, 0)
    out.put((got, ticks, ended))


def test_a_workers_own_signal_handler_loses_at_most_the_message_it_interrupted(start_method: str) -> None:
    count = 30_000
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[tuple[int, int, bool]] = ezq.Q()
    worker = ezq.run(read_through_a_timer, q, out)
    for i in range(count):
        q.put(i)
    q.end()  # (an end marker is a message too: one more, in case the timer cuts the first)
    q.stop(worker, timeout=50)
    [report] = out.items()
    got, ticks, ended = report.data
    assert ended and ticks > 0, "expected the timer to interrupt the reader"
    assert count - ticks <= got <= count, f"expected at most one message lost per interrupt: {got=} {ticks=}"


def one_reader_stops_while_another_waits(q: ezq.Q[int], out: ezq.Q[int]) -> None:
    """A thread reads `q`; the main thread reads it too, and stops (an alarm) while both wait."""
    other = threading.Thread(target=echo_each, args=(q, out))
    other.start()
    with raising_in_ezq(signal.SIGALRM), contextlib.suppress(Alarm):
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        for _ in q:
            raise AssertionError("expected no message before the alarm")
    out.put(-1)  # the main thread has stopped reading
    other.join()


def test_a_reader_that_stops_leaves_the_queue_to_the_other_readers_of_its_worker(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    worker = ezq.run(one_reader_stops_while_another_waits, q, out)
    assert next(iter(out)).data == -1
    for number in range(100):
        q.put(number)
    q.stop(worker, timeout=30)
    assert sorted(msg.data for msg in out.items()) == list(range(100))


def fail_leaving_a_raising_timer() -> None:
    """Raise, leaving a timer whose handler raises every 100 µs (once the task has ended)."""

    def tick(signum: int, frame: Any) -> None:  # (not in the task, nor in itself, called in the task)
        if frame is None or frame.f_code.co_name not in ("fail_leaving_a_raising_timer", "tick"):
            raise Tick

    signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
    raise ValueError("the task's own error")


def test_a_task_that_leaves_a_raising_signal_handler_still_reports_its_error(start_method: str) -> None:
    for _ in range(20):  # (a handler due in the moment the task ends is rare)
        with pytest.raises(ValueError, match="the task's own error"):
            ezq.run(fail_leaving_a_raising_timer).join(timeout=30)


def return_leaving_a_raising_timer() -> None:
    """Return, leaving a timer whose handler raises once the task has returned (due every µs till then)."""

    def tick(signum: int, frame: Any) -> None:
        if frame is not None and frame.f_code.co_name == "return_leaving_a_raising_timer":
            signal.setitimer(signal.ITIMER_REAL, 0.00001)  # (not yet: again, soon)
        elif frame is None or frame.f_code.co_name != "tick":  # (in itself: the outer run sets it again)
            raise Tick

    signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 0.00001)
    time.sleep(0.001)


def test_a_task_that_returns_leaving_a_raising_signal_handler_has_returned(start_method: str) -> None:
    for _ in range(20):  # (a handler due in the moment the task returns is rare)
        worker = ezq.run(return_leaving_a_raising_timer)
        worker.join(timeout=30)
        assert not worker.is_alive()


MAP_TASK_LEAVES_A_RAISING_TIMER = """
class Tick(Exception):
    pass
def tick(signum, frame):
    if frame is None or frame.f_code.co_name not in ("double", "tick"):  # (not in the task)
        raise Tick
def double(x):
    signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
    return 2 * x
try:
    list(ezq.map(double, range(200), num=1, chunksize=1))  # (one: a 2nd, stopped as it prints, cuts it)
    print("no error")
except ezq.WorkerError as error:
    print("WorkerError", "input item" in str(error))
except Tick:  # (raised as a call returned: the item's error)
    print("Tick")
"""


def test_a_map_worker_ended_by_a_timer_its_task_left_says_why(start_method: str, tmp_path: Path) -> None:
    with script(MAP_TASK_LEAVES_A_RAISING_TIMER, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=60)
    assert stdout in ("WorkerError True\n", "Tick\n"), stderr
    if stdout != "Tick\n":
        assert stderr.rstrip().endswith("\nTick"), f"expected the worker's traceback: {stderr}"


def test_a_failed_start_fails_alone(start_method: str) -> None:
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[int] = ezq.Q()
    running = ezq.run(sum_worker, q, out)
    ezq.run(quit_at_once).join(timeout=30)  # (the fork server, if any, runs; no start is half done)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/dev/fd")), hard))  # no file can be opened
    try:
        with pytest.raises(OSError):
            ezq.run(quit_at_once).join(timeout=30)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert running.is_alive(), "expected the worker that ran to run on"
    ezq.run(quit_at_once).join(timeout=30)
    q.put(2).stop(running, timeout=30)
    assert [msg.data for msg in out.items()] == [2]


def sum_all(queues: tuple[ezq.Q[int], ...], out: ezq.Q[int]) -> None:
    out.put(sum(msg.data for q in queues for msg in q))


def test_a_worker_may_be_given_hundreds_of_queues(start_method: str) -> None:
    queues = tuple(ezq.Q() for _ in range(300))  # more than one message can pass file descriptors for
    out: ezq.Q[int] = ezq.Q()
    worker = ezq.run(sum_all, queues, out)
    for number, q in enumerate(queues):
        q.put(number).end()
    worker.join(timeout=30)
    assert [msg.data for msg in out.items()] == [sum(range(300))]


def test_a_start_from_a_deleted_folder_fails_alone(start_method: str, tmp_path: Path) -> None:
    here = os.getcwd()
    gone = tmp_path / "gone"
    gone.mkdir()
    os.chdir(gone)
    gone.rmdir()
    try:
        ezq.run(quit_at_once).join(timeout=30)  # (spawn, forkserver: it starts in the fork server's)
    finally:
        os.chdir(here)
    assert [msg.data for msg in ezq.Q().put(1).items()] == [1]
    ezq.run(quit_at_once).join(timeout=30)


def echo_each(q: ezq.Q[Any], out: ezq.Q[Any]) -> None:
    for msg in q:
        out.put(msg.data)


def test_a_stopped_reader_holds_up_only_its_own_queue(start_method: str) -> None:
    stuck: ezq.Q[bytes] = ezq.Q()
    q: ezq.Q[int] = ezq.Q()
    out: ezq.Q[Any] = ezq.Q()
    reader = ezq.run(echo_each, stuck, out)
    other = ezq.run(echo_each, q, out)
    stuck.put(b"first")
    assert next(iter(out)).data == b"first"  # it reads, and waits for more
    assert reader.pid is not None
    os.kill(reader.pid, signal.SIGSTOP)  # a debugger, a paused container
    try:
        for _ in range(4):
            stuck.put(b"x" * (8 << 20))  # more than its pipe takes
        time.sleep(0.5)
        replies = iter(out)
        for number in range(100):  # the other queue still flows
            q.put(number)
            assert next(replies).data == number
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="still running"):
            stuck.stop(reader, timeout=2)
        assert time.monotonic() - start < 10, "expected stop() to give up after its timeout"
        q.stop(other, timeout=30)
    finally:
        reader.kill()  # (SIGKILL ends a stopped process too)
    with pytest.raises(ezq.WorkerError, match="SIGKILL"):
        reader.join(timeout=30)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_stopped_fork_server_fails_the_starts_it_does_not_answer(method: str, tmp_path: Path) -> None:
    body = """
list(ezq.map(abs, [1]))  # the fork server runs
server = ezq._state.hub.servers[-1].process.pid
os.kill(server, signal.SIGSTOP)
ezq._START_SECONDS = 2.0
start = time.monotonic()
try:
    list(ezq.map(abs, [1, 2]))
    print("no error")
except TimeoutError as error:
    print("TimeoutError", "fork server" in str(error), time.monotonic() - start < 20)
print(list(ezq.map(abs, [-3])))  # another server starts
os.kill(server, signal.SIGCONT)
"""
    with script(body, method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=60)
    assert stdout == "TimeoutError True True\n[3]\n", stderr


def leave_a_thread(x: int) -> int:
    """Return at once, but leave a non-daemon thread that runs for 5 s."""
    threading.Thread(target=time.sleep, args=(5,)).start()
    return x


def leave_a_process(x: int) -> int:
    """Return at once, but leave a process (a fork of the worker) that runs for 5 s."""
    if os.fork() == 0:
        time.sleep(5)
        os._exit(0)
    return x


@pytest.mark.parametrize("task", [leave_a_thread, leave_a_process])
def test_map_does_not_wait_for_what_a_task_leaves_behind(task: Any, start_method: str) -> None:
    start = time.monotonic()
    assert list(ezq.map(task, range(3), num=2)) == [0, 1, 2]
    assert time.monotonic() - start < 4, "expected map to end once its results are in (not 5 s later)"
    deadline = time.monotonic() + 10  # (what they left ends, and their workers with it)
    while workers_alive() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_worker_that_exits_cleanly_is_never_called_killed(start_method: str) -> None:
    failures: list[BaseException] = []

    def start_and_join() -> None:
        for _ in range(100):
            try:
                ezq.run(quit_at_once).join(timeout=30)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=start_and_join) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


SIGPIPE_DEFAULT = """
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as command-line tools do
q = ezq.Q()
worker = ezq.run(die_after_one, q)
for number in range(20):
    q.put(b"x" * 200_000)  # the hub writes to a pipe whose reader has died
    time.sleep(0.02)
try:
    q.stop(worker, timeout=30)
except ezq.WorkerError as error:
    print("WorkerError")
"""

SIGCHLD_IGNORED = """
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps children at once
worker = ezq.run(time.sleep, 0.1)
worker.join(timeout=30)
print("joined", worker.is_alive())
"""


@pytest.mark.parametrize(
    ("body", "want"), [(SIGPIPE_DEFAULT, "WorkerError\n"), (SIGCHLD_IGNORED, "joined False\n")]
)
def test_signal_settings_of_the_program_do_not_break_ezq(
    body: str, want: str, start_method: str, tmp_path: Path
) -> None:
    code = "def die_after_one(q):\n    next(iter(q))\n    os._exit(3)\n" + body
    with script(code, start_method, tmp_path) as child:
        stdout, stderr = child.communicate(timeout=60)
    assert (stdout, child.returncode) == (want, 0), stderr


@pytest.mark.skipif(not LINUX_CALLS, reason="PR_SET_PDEATHSIG is Linux's")
def test_a_task_stuck_in_c_dies_with_a_killed_parent_whichever_thread_started_it(
    start_method: str, tmp_path: Path
) -> None:
    body = (
        "import threading\n"
        "threading.Thread(target=lambda: list(ezq.map(stuck_in_c, range(2), num=2))).start()\n"
        "print('started', flush=True)\n"
        "time.sleep(60)"
    )
    with script(body, start_method, tmp_path) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "started\n"
        time.sleep(1.5)  # the workers are deep in their C call
        os.kill(child.pid, signal.SIGKILL)
        assert_group_ends(child.pid)


def swallow_everything(x: int) -> int:
    """Hang on 2, and return a fallback value whatever interrupts it (a bare except:)."""
    try:
        if x == 2:
            time.sleep(100)
        return x
    except:  # noqa: E722 (what the test is about)
        return -1


def test_a_call_that_swallows_its_timeout_still_times_out(kind: str) -> None:
    with pytest.raises(TimeoutError, match="input item 2"):
        list(ezq.map(swallow_everything, range(4), timeout=1.0, kind=kind))  # type: ignore[arg-type]


@pytest.mark.parametrize("qkind", KINDS)
def test_breaking_out_of_sorted_after_the_end_puts_the_end_back(qkind: str) -> None:
    q: ezq.Q[None] = ezq.Q(qkind)  # type: ignore[arg-type]
    q.put(order=1).put(order=2).end()  # 0 never comes: they wait, then come out at the end
    for msg in q.sorted():
        assert msg.order == 1
        break  # with 2 still held back, and the end marker read
    assert [msg.order for msg in q] == [2], "expected the message held back, then the end marker"


def test_a_worker_cannot_be_sent_to_another_worker(start_method: str) -> None:
    worker = ezq.run(quit_at_once)
    with pytest.raises(TypeError, match="can't be sent to another process"):
        ezq.run(quit_at_once, worker)
    worker.join(timeout=30)


PARENT_VANISHES = """
def keep_putting(q):
    while True:
        q.put(b"x" * 1000)

q = ezq.Q()
workers = [ezq.run(keep_putting, q) for _ in range(2)]
time.sleep(0.5)
print("gone", flush=True)
os._exit(0)
"""


def test_workers_end_quietly_when_their_parent_vanishes(start_method: str, tmp_path: Path) -> None:
    with script(PARENT_VANISHES, start_method, tmp_path) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "gone\n"
        assert_group_ends(child.pid)
        _, stderr = child.communicate(timeout=30)
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


## Scripts as people write them ##
# About 150 small everyday scripts: classes, enums, dataclasses, decorators,
# registries, globals, the project's own modules, settings made at the top,
# logging, ezq used from workers. Each runs under fork, spawn and forkserver;
# what it prints under fork is what it must print under the other two (and
# `want` says what that is). Where spawn and forkserver can't give what fork
# gives (a global that can't be copied, a change the script makes to another
# module), `by_value` says what they give instead.


@dataclass
class UserScript:
    files: dict[str, str]  # path: content; the program is main.py unless `run` says otherwise
    want: str  # what it prints under fork
    run: list[str]  # arguments of `python`
    by_value: str | None = None  # what it prints under spawn and forkserver, where that differs


SCRIPT_METHOD = (
    "import multiprocessing, os; "
    'multiprocessing.set_start_method(os.environ.get("EZQ_TEST_START_METHOD", "fork"), force=True)\n'
)


def as_script(code: str) -> str:
    """A program: its start method set first (after a `from __future__` import, which must come first)."""
    code = textwrap.dedent(code).lstrip("\n")
    if code.startswith("from __future__"):
        first, rest = code.split("\n", 1)
        return first + "\n" + SCRIPT_METHOD + rest
    return SCRIPT_METHOD + code


def as_module(code: str) -> str:
    return textwrap.dedent(code).lstrip("\n")


CORPUS: dict[str, UserScript] = {}


def add_script(
    name: str,
    main: str | None,
    want: str,
    files: dict[str, str] | None = None,
    run: list[str] | None = None,
    by_value: str | None = None,
) -> None:
    assert name not in CORPUS, name
    all_files = {} if main is None else {"main.py": as_script(main)}
    all_files.update(files or {})
    by_value = None if by_value is None else textwrap.dedent(by_value).lstrip("\n")
    CORPUS[name] = UserScript(all_files, textwrap.dedent(want).lstrip("\n"), run or ["main.py"], by_value)


# ---------------------------------------------------------------- classes

add_script(
    "super_init_in_subclass",
    r"""
import ezq

class Base:
    def __init__(self, name):
        self.name = name

    def label(self):
        return f"<{self.name}>"

class Child(Base):
    def __init__(self, name, n):
        super().__init__(name)
        self.n = n

    def label(self):
        return super().label() * self.n

def make(i):
    c = Child(f"c{i}", i)
    return c, c.label(), isinstance(c, Base)

for c, label, is_base in ezq.map(make, [1, 2], num=2):
    print(type(c).__name__, c.name, c.n, label, is_base, isinstance(c, Child), isinstance(c, Base))
print(list(ezq.map(Child.label, [Child("x", 3)], num=2)))
""",
    """
Child c1 1 <c1> True True True
Child c2 2 <c2><c2> True True True
['<x><x><x>']
""",
)

add_script(
    "subclass_chain_super",
    r"""
import ezq

class Animal:
    sound = "..."

    def describe(self):
        return [f"Animal:{self.sound}"]

class Dog(Animal):
    sound = "woof"

    def describe(self):
        return super().describe() + ["Dog"]

class Puppy(Dog):
    sound = "yip"

    def describe(self):
        return super().describe() + ["Puppy"]

def describe(obj):
    return "/".join(obj.describe())

def build(cls):
    return cls()

print(list(ezq.map(describe, [Animal(), Dog(), Puppy()], num=2)))
pets = list(ezq.map(build, [Puppy, Dog], num=2))
print([type(p).__name__ for p in pets], isinstance(pets[0], Dog), isinstance(pets[1], Puppy))
print([cls.__mro__[1].__name__ for cls in ezq.map(type, pets, num=2)])
""",
    """
['Animal:...', 'Animal:woof/Dog', 'Animal:yip/Dog/Puppy']
['Puppy', 'Dog'] True False
['Dog', 'Animal']
""",
)

add_script(
    "dataclass_method_returns_own_class",
    r"""
from dataclasses import dataclass
import ezq

@dataclass
class P:
    x: int

    def moved(self, dx=1):
        return P(self.x + dx)

def start(x):
    return P(x)

def step(p):
    return p.moved()

p = next(ezq.map(start, [1], num=2))
print(p, p.moved() == P(2), type(p) is P)
moved = list(ezq.map(step, [P(1), P(5)], num=2))
print(moved, moved == [P(2), P(6)], moved[0].moved(2) == P(4))
""",
    """
P(x=1) True True
[P(x=2), P(x=6)] True True
""",
)

add_script(
    "isinstance_in_worker_and_parent",
    r"""
import ezq

class Shape:
    def area(self):
        raise NotImplementedError

class Rect(Shape):
    def __init__(self, w, h):
        self.w, self.h = w, h

    def area(self):
        return self.w * self.h

class Square(Rect):
    def __init__(self, side):
        super().__init__(side, side)

def make(spec):
    kind, n = spec
    shape = Square(n) if kind == "square" else Rect(n, n + 1)
    return shape, isinstance(shape, Shape), isinstance(shape, Square)

def check(shape):
    return isinstance(shape, Shape), isinstance(shape, Square), type(shape).__name__, shape.area()

for shape, in_shape, in_square in ezq.map(make, [("square", 2), ("rect", 3)], num=2):
    print(type(shape).__name__, in_shape, in_square, isinstance(shape, Shape), isinstance(shape, Rect),
          isinstance(shape, Square), shape.area())
print(list(ezq.map(check, [Square(3), Rect(1, 2)], num=2)))
""",
    """
Square True True True True True 4
Rect True False True True False 12
[(True, True, 'Square', 9), (True, False, 'Rect', 2)]
""",
)

add_script(
    "frozen_dataclass",
    r"""
import dataclasses
from dataclasses import dataclass
import ezq

@dataclass(frozen=True)
class Coord:
    lat: int
    lon: int

    def flipped(self):
        return Coord(self.lon, self.lat)

def flip(c):
    try:
        c.lat = 0
        changed = True
    except dataclasses.FrozenInstanceError:
        changed = False
    return c.flipped(), changed

res = list(ezq.map(flip, [Coord(1, 2), Coord(3, 4), Coord(2, 1)], num=2))
print(res)
coords = {c for c, _ in res}
print(len(coords), Coord(1, 2) in coords, Coord(2, 1) in coords, hash(res[0][0]) == hash(Coord(2, 1)))
""",
    """
[(Coord(lat=2, lon=1), False), (Coord(lat=4, lon=3), False), (Coord(lat=1, lon=2), False)]
3 True True True
""",
)

add_script(
    "dataclass_default_factory",
    r"""
from dataclasses import dataclass, field
import ezq

@dataclass
class Basket:
    owner: str
    items: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    def add(self, item):
        self.items.append(item)
        self.counts[item] = self.counts.get(item, 0) + 1
        return self

def fill(owner):
    b = Basket(owner)
    for item in owner:
        b.add(item)
    return b

baskets = list(ezq.map(fill, ["ann", "bob"], num=2))
for b in baskets:
    print(b.owner, b.items, sorted(b.counts.items()))
print(Basket("x") == Basket("x"), Basket("x").items is not Basket("x").items)
print(baskets[0] == Basket("ann", ["a", "n", "n"], {"a": 1, "n": 2}))
""",
    """
ann ['a', 'n', 'n'] [('a', 1), ('n', 2)]
bob ['b', 'o', 'b'] [('b', 2), ('o', 1)]
True True
True
""",
)

add_script(
    "dataclasses_asdict_replace_fields",
    r"""
import dataclasses
from dataclasses import dataclass, field
import ezq

@dataclass
class User:
    name: str
    age: int
    tags: list = field(default_factory=list)

def summarize(user):
    older = dataclasses.replace(user, age=user.age + 1)
    return (dataclasses.asdict(older), [f.name for f in dataclasses.fields(User)],
            dataclasses.is_dataclass(older), type(older) is User)

for row in ezq.map(summarize, [User("ann", 30, ["a"]), User("bob", 4)], num=2):
    print(row)
""",
    """
({'name': 'ann', 'age': 31, 'tags': ['a']}, ['name', 'age', 'tags'], True, True)
({'name': 'bob', 'age': 5, 'tags': []}, ['name', 'age', 'tags'], True, True)
""",
)

add_script(
    "slots_class_and_dataclass",
    r"""
from dataclasses import dataclass
import ezq

class Vec:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __add__(self, other):
        return Vec(self.x + other.x, self.y + other.y)

@dataclass(slots=True)
class Pixel:
    x: int
    y: int

def combine(v):
    w = v + Vec(1, 1)
    return w, Pixel(w.x, w.y), hasattr(w, "__dict__")

for w, px, has_dict in ezq.map(combine, [Vec(0, 0), Vec(2, 3)], num=2):
    print(type(w).__name__, w.x, w.y, px, has_dict, hasattr(px, "__dict__"), Vec.__slots__)
""",
    """
Vec 1 1 Pixel(x=1, y=1) False False ('x', 'y')
Vec 3 4 Pixel(x=3, y=4) False False ('x', 'y')
""",
)

add_script(
    "property_classmethod_staticmethod",
    r"""
import ezq

class Temperature:
    def __init__(self, celsius):
        self._celsius = celsius

    @property
    def celsius(self):
        return self._celsius

    @celsius.setter
    def celsius(self, value):
        if value < -273.15:
            raise ValueError("too cold")
        self._celsius = value

    @property
    def fahrenheit(self):
        return self.c_to_f(self._celsius)

    @classmethod
    def from_fahrenheit(cls, f):
        return cls((f - 32) * 5 / 9)

    @staticmethod
    def c_to_f(c):
        return c * 9 / 5 + 32

def convert(f):
    t = Temperature.from_fahrenheit(f)
    t.celsius = t.celsius + 10
    return t, round(t.fahrenheit, 1)

for t, f in ezq.map(convert, [32, 212], num=2):
    print(type(t).__name__, round(t.celsius, 1), f)
print(list(ezq.map(Temperature.c_to_f, [0, 100], num=2)))
print(list(ezq.map(Temperature.from_fahrenheit, [50], num=2))[0].celsius)
""",
    """
Temperature 10.0 50.0
Temperature 110.0 230.0
[32.0, 212.0]
10.0
""",
)

add_script(
    "cached_property",
    r"""
import functools
import ezq

class Report:
    def __init__(self, numbers):
        self.numbers = numbers
        self.computed = 0

    @functools.cached_property
    def total(self):
        self.computed += 1
        return sum(self.numbers)

def run(numbers):
    r = Report(numbers)
    first = r.total
    second = r.total
    return first, second, r.computed, "total" in vars(r)

print(list(ezq.map(run, [[1, 2, 3], [10, 20]], num=2)))
warm = Report([4, 5])
warm.total
back = next(ezq.map(lambda r: r, [warm], num=2))
print(back.total, back.computed, type(back).total.attrname)
""",
    """
[(6, 6, 1, True), (30, 30, 1, True)]
9 1 total
""",
)

add_script(
    "custom_eq_hash",
    r"""
import ezq

class Tag:
    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, Tag) and self.name.lower() == other.name.lower()

    def __hash__(self):
        return hash(self.name.lower())

    def __repr__(self):
        return f"Tag({self.name!r})"

def normalize(name):
    return Tag(name.strip())

tags = list(ezq.map(normalize, [" Python", "python ", "Rust"], num=2))
print(tags)
print(tags[0] == tags[1], tags[0] == Tag("PYTHON"), tags[0] != tags[2], len(set(tags)))
counts = {}
for t in tags:
    counts[t] = counts.get(t, 0) + 1
print(sorted((t.name, n) for t, n in counts.items()))
print(Tag("RUST") in tags, list(ezq.map(lambda t: t == Tag("rust"), tags[2:], num=2)))
""",
    """
[Tag('Python'), Tag('python'), Tag('Rust')]
True True True 2
[('Python', 2), ('Rust', 1)]
True [True]
""",
)

add_script(
    "class_attribute_counter",
    r"""
import ezq

class Widget:
    created = 0

    def __init__(self):
        Widget.created += 1
        self.serial = Widget.created

def make_some(n):
    return [Widget().serial for _ in range(n)], Widget.created

Widget()
Widget()
print(list(ezq.map(make_some, [3], num=2)))
print(Widget.created)
Widget.created = 100
print(list(ezq.map(make_some, [1], num=2)))
print(Widget.created)
""",
    """
[([3, 4, 5], 5)]
2
[([101], 101)]
100
""",
)

add_script(
    "nested_classes",
    r"""
import ezq

class Outer:
    class Inner:
        def __init__(self, v):
            self.v = v

        def double(self):
            return Outer.Inner(self.v * 2)

    class Config:
        scale = 3

def build(v):
    return Outer.Inner(v * Outer.Config.scale).double()

res = list(ezq.map(build, [1, 2], num=2))
print([o.v for o in res], all(isinstance(o, Outer.Inner) for o in res), type(res[0]).__qualname__)
print(list(ezq.map(lambda i: i.double().v, [Outer.Inner(5)], num=2)))
""",
    """
[6, 12] True Outer.Inner
[10]
""",
)

add_script(
    "dataclass_order",
    r"""
from dataclasses import dataclass, field
import ezq

@dataclass(order=True)
class Task:
    priority: int
    name: str = field(compare=False)

def make(args):
    name, pri = args
    return Task(pri, name)

tasks = list(ezq.map(make, [("write", 2), ("test", 1), ("ship", 3)], num=2))
print([t.name for t in sorted(tasks)], max(tasks).name, Task(1, "x") == Task(1, "y"))
""",
    """
['test', 'write', 'ship'] ship True
""",
)

add_script(
    "dataclass_post_init",
    r"""
from dataclasses import dataclass, field
import ezq

@dataclass
class Rect:
    w: int
    h: int
    area: int = field(init=False)

    def __post_init__(self):
        self.area = self.w * self.h

def grow(r):
    return Rect(r.w + 1, r.h + 1)

print(list(ezq.map(grow, [Rect(1, 1), Rect(2, 3)], num=2)))
""",
    """
[Rect(w=2, h=2, area=4), Rect(w=3, h=4, area=12)]
""",
)

add_script(
    "dataclass_classvar",
    r"""
from dataclasses import dataclass, fields
from typing import ClassVar
import ezq

@dataclass
class Account:
    owner: str
    balance: int = 0
    bank: ClassVar[str] = "EZ Bank"
    rate: ClassVar[float] = 0.5

    def interest(self):
        return self.balance * self.rate

def task(acc):
    return acc.interest(), Account.bank, [f.name for f in fields(acc)]

Account.rate = 0.1
print(list(ezq.map(task, [Account("ann", 100)], num=2)))
""",
    """
[(10.0, 'EZ Bank', ['owner', 'balance'])]
""",
)

add_script(
    "abc_abstract_class",
    r"""
from abc import ABC, abstractmethod
import ezq

class Shape(ABC):
    @abstractmethod
    def area(self): ...

    def describe(self):
        return f"{type(self).__name__}:{self.area()}"

class Sq(Shape):
    def __init__(self, s):
        self.s = s

    def area(self):
        return self.s * self.s

def try_make(cls):
    try:
        return cls(2).describe()
    except TypeError:
        return "abstract"

print(list(ezq.map(try_make, [Sq, Shape], num=2)))
print(isinstance(next(ezq.map(Sq, [3], num=2)), Shape), issubclass(Sq, Shape))
""",
    """
['Sq:4', 'abstract']
True True
""",
)

add_script(
    "getstate_setstate",
    r"""
import ezq

class Conn:
    def __init__(self, url):
        self.url = url
        self.cache = {"big": list(range(3))}
        self.opened = 1

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["cache"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.cache = {}
        self.opened += 1

def info(c):
    return c.url, sorted(c.cache), c.opened, c

for url, keys, opened, back in ezq.map(info, [Conn("db://x")], num=2):
    print(url, keys, opened, back.opened, sorted(back.cache))
""",
    """
db://x [] 2 3 []
""",
)

add_script(
    "class_made_by_function",
    r"""
import ezq

def make_class(prefix):
    class Tagged:
        def __init__(self, v):
            self.v = v

        def __repr__(self):
            return f"{prefix}{self.v}"

    return Tagged

Tagged = make_class("#")

def build(v):
    return Tagged(v)

res = list(ezq.map(build, [1, 2], num=2))
print(res, all(isinstance(o, Tagged) for o in res), type(res[0]) is Tagged)
""",
    """
[#1, #2] True True
""",
)

add_script(
    "builtin_type_subclasses",
    r"""
import ezq

class AttrDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

class Stack(list):
    def push(self, x):
        self.append(x)
        return self

def task(d):
    s = Stack([d.a]).push(d.b)
    return AttrDict(total=sum(s)), s

for d, s in ezq.map(task, [AttrDict(a=1, b=2)], num=2):
    print(type(d).__name__, d.total, type(s).__name__, s)
""",
    """
AttrDict 3 Stack [1, 2]
""",
)

add_script(
    "repr_of_returned_instances",
    r"""
import ezq

class Money:
    def __init__(self, cents, currency="EUR"):
        self.cents = cents
        self.currency = currency

    def __repr__(self):
        return f"Money({self.cents / 100:.2f} {self.currency})"

    def __add__(self, other):
        return Money(self.cents + other.cents, self.currency)

def with_tax(m):
    return m + Money(m.cents // 5)

print(list(ezq.map(with_tax, [Money(1000), Money(250, "USD")], num=2)))
""",
    """
[Money(12.00 EUR), Money(3.00 USD)]
""",
)

add_script(
    "global_config_instance",
    r"""
from dataclasses import dataclass
import ezq

@dataclass
class Config:
    debug: bool = False
    level: int = 1

CONFIG = Config()

def task(x):
    return x * CONFIG.level, CONFIG.debug

CONFIG.debug = True
CONFIG.level = 5
print(list(ezq.map(task, [1, 2], num=2)))
""",
    """
[(5, True), (10, True)]
""",
)

add_script(
    "instance_with_lambda_attribute",
    r"""
import ezq

class Rule:
    def __init__(self, name, check):
        self.name = name
        self.check = check

RULES = [Rule("positive", lambda x: x > 0), Rule("even", lambda x: x % 2 == 0)]

def evaluate(rule):
    return rule.name, [rule.check(x) for x in (-2, 3, 4)]

print(list(ezq.map(evaluate, RULES, num=2)))
""",
    """
[('positive', [False, True, True]), ('even', [True, False, True])]
""",
)

add_script(
    "returns_script_classes",
    r"""
import ezq

class Cat:
    sound = "meow"

class Dog:
    sound = "woof"

ANIMALS = {"cat": Cat, "dog": Dog}

def pick(name):
    return ANIMALS[name]

classes = list(ezq.map(pick, ["dog", "cat"], num=2))
print([c.sound for c in classes], classes[0] is Dog, classes[1] is Cat, isinstance(classes[0](), Dog))
""",
    """
['woof', 'meow'] True True True
""",
)

add_script(
    "returns_functions",
    r"""
import ezq

def make_multiplier(n):
    return lambda x: x * n

def square(x):
    return x * x

def pick(name):
    return {"square": square, "triple": make_multiplier(3)}[name]

fs = list(ezq.map(pick, ["square", "triple"], num=2))
print([f(5) for f in fs], fs[0] is square)
""",
    """
[25, 15] True
""",
)

# ---------------------------------------------------------------- enums

add_script(
    "enum_members_in_and_out",
    r"""
from enum import Enum
import ezq

class Color(Enum):
    RED = 1
    GREEN = 2
    BLUE = 3

def next_color(c):
    members = list(Color)
    return members[(members.index(c) + 1) % len(members)]

res = list(ezq.map(next_color, [Color.RED, Color.GREEN, Color.BLUE], num=2))
print(res)
print([c.name for c in res], res[0] is Color.GREEN, res[2] is Color.RED, isinstance(res[1], Color))
print(Color(2) in res, {Color.RED: "r"}.get(res[2]))
""",
    """
[<Color.GREEN: 2>, <Color.BLUE: 3>, <Color.RED: 1>]
['GREEN', 'BLUE', 'RED'] True True True
True r
""",
)

add_script(
    "intenum",
    r"""
from enum import IntEnum
import ezq

class Priority(IntEnum):
    LOW = 1
    MEDIUM = 5
    HIGH = 10

def bump(p):
    higher = [q for q in Priority if q > p]
    return higher[0] if higher else p

res = list(ezq.map(bump, [Priority.LOW, Priority.MEDIUM, Priority.HIGH], num=2))
print([p.name for p in res], [int(p) for p in res], res[0] is Priority.MEDIUM, res[2] is Priority.HIGH)
print(sorted(ezq.map(int, [Priority.HIGH, Priority.LOW], num=2)), Priority.HIGH + 1, sum(res))
print(list(ezq.map(lambda n: Priority(n), [1, 10], num=2)) == [Priority.LOW, Priority.HIGH])
""",
    """
['MEDIUM', 'HIGH', 'HIGH'] [5, 10, 10] True True
[1, 10] 11 25
True
""",
)

add_script(
    "strenum_or_fallback",
    r"""
from enum import Enum
try:
    from enum import StrEnum
except ImportError:  # Python < 3.11
    class StrEnum(str, Enum):
        pass
import ezq

class Method(StrEnum):
    GET = "get"
    POST = "post"

def route(m):
    return f"handle_{m.value}", m == "get", m.upper(), m

for name, is_get, upper, m in ezq.map(route, [Method.GET, Method.POST], num=2):
    print(name, is_get, upper, m is Method(m.value), m.value)
""",
    """
handle_get True GET True get
handle_post False POST True post
""",
)

add_script(
    "flag_combinations",
    r"""
from enum import Flag, auto
import ezq

class Perm(Flag):
    READ = auto()
    WRITE = auto()
    EXEC = auto()

RW = Perm.READ | Perm.WRITE

def grant(p):
    combined = p | Perm.READ
    return combined, bool(combined & Perm.WRITE), [m.name for m in Perm if m in combined]

for combined, can_write, names in ezq.map(grant, [Perm.WRITE, Perm.EXEC, Perm(0)], num=2):
    print(combined.value, can_write, names, combined == RW, Perm.READ in combined)
""",
    """
3 True ['READ', 'WRITE'] True True
5 False ['READ', 'EXEC'] False True
1 False ['READ'] False True
""",
)

add_script(
    "enum_with_methods",
    r"""
from enum import Enum
import ezq

class Shape(Enum):
    SQUARE = "square"
    CIRCLE = "circle"

    def area(self, size):
        if self is Shape.SQUARE:
            return size * size
        return round(3.14159 * size * size, 2)

    @property
    def label(self):
        return self.value.title()

    @classmethod
    def parse(cls, text):
        return cls(text.strip().lower())

def measure(text):
    shape = Shape.parse(text)
    return shape, shape.label, shape.area(2)

for shape, label, area in ezq.map(measure, [" Square", "CIRCLE "], num=2):
    print(shape is Shape.parse(label), shape.name, label, area)
""",
    """
True SQUARE Square 4
True CIRCLE Circle 12.57
""",
)

add_script(
    "enum_planet_tuple_values",
    r"""
from enum import Enum
import ezq

class Planet(Enum):
    MERCURY = (3.303e23, 2.4397e6)
    VENUS = (4.869e24, 6.0518e6)
    EARTH = (5.976e24, 6.37814e6)

    def __init__(self, mass, radius):
        self.mass = mass
        self.radius = radius

    @property
    def surface_gravity(self):
        G = 6.67300e-11
        return G * self.mass / (self.radius * self.radius)

def weight(args):
    planet, kg = args
    return planet, round(kg * planet.surface_gravity, 2)

for planet, w in ezq.map(weight, [(p, 70) for p in Planet], num=2):
    print(planet.name, w, planet is Planet[planet.name], planet.mass)
""",
    """
MERCURY 259.21 True 3.303e+23
VENUS 621.0 True 4.869e+24
EARTH 686.19 True 5.976e+24
""",
)

add_script(
    "enum_auto_values",
    r"""
from enum import Enum, auto
import ezq

class Stage(Enum):
    DRAFT = auto()
    REVIEW = auto()
    DONE = auto()

ORDER = list(Stage)

def advance(stage):
    i = ORDER.index(stage)
    return ORDER[min(i + 1, len(ORDER) - 1)]

res = list(ezq.map(advance, ORDER, num=2))
same = res == [Stage.REVIEW, Stage.DONE, Stage.DONE]
print([s.value for s in res], [s.name for s in res], res[-1] is Stage.DONE, same)
""",
    """
[2, 3, 3] ['REVIEW', 'DONE', 'DONE'] True True
""",
)

add_script(
    "enum_keys_in_global_table",
    r"""
from enum import Enum
import ezq

class Size(Enum):
    S = "small"
    M = "medium"
    L = "large"

PRICE = {Size.S: 3, Size.M: 4, Size.L: 5}

def price(order):
    size, qty = order
    return PRICE[size] * qty

def default_size(_):
    return Size.M

print(list(ezq.map(price, [(Size.S, 2), (Size.L, 1), (Size.M, 3)], num=2)))
sizes = list(ezq.map(default_size, range(2), num=2))
print(PRICE[sizes[0]], sizes[1] is Size.M, sorted(s.value for s in PRICE))
""",
    """
[6, 5, 12]
4 True ['large', 'medium', 'small']
""",
)

add_script(
    "enum_default_argument",
    r"""
from enum import Enum
import ezq

class Mode(Enum):
    FAST = "fast"
    SAFE = "safe"

def run(x, mode=Mode.SAFE):
    return x * (2 if mode is Mode.FAST else 1), mode

print([(v, m.name) for v, m in ezq.map(run, [1, 2], num=2)])
print([(v, m.name, m is Mode.FAST) for v, m in ezq.map(run, [1, 2], [Mode.FAST, Mode.SAFE], num=2)])
""",
    """
[(1, 'SAFE'), (2, 'SAFE')]
[(2, 'FAST', True), (2, 'SAFE', False)]
""",
)

add_script(
    "dataclass_with_enum_field",
    r"""
from dataclasses import dataclass
from enum import Enum
import ezq

class Status(Enum):
    TODO = "todo"
    DONE = "done"

@dataclass
class Ticket:
    title: str
    status: Status = Status.TODO

def close(t):
    return Ticket(t.title, Status.DONE) if t.status is Status.TODO else t

res = list(ezq.map(close, [Ticket("a"), Ticket("b", Status.DONE)], num=2))
print(res)
same = res[0] == Ticket("a", Status.DONE)
print([t.status is Status.DONE for t in res], same, Ticket("a") in [Ticket("a")])
""",
    """
[Ticket(title='a', status=<Status.DONE: 'done'>), Ticket(title='b', status=<Status.DONE: 'done'>)]
[True, True] True True
""",
)

# ---------------------------------------------------------------- typing

add_script(
    "typing_namedtuple_with_methods",
    r"""
import math
from typing import NamedTuple
import ezq

class Point(NamedTuple):
    x: float
    y: float = 0.0

    def dist(self, other=None):
        other = other or Point(0, 0)
        return math.hypot(self.x - other.x, self.y - other.y)

    @classmethod
    def parse(cls, text):
        return cls(*map(float, text.split(",")))

def parse(text):
    p = Point.parse(text)
    return p, p.dist()

for p, d in ezq.map(parse, ["3,4", "6,8"], num=2):
    print(p, d, isinstance(p, Point), p._replace(y=0), p._fields)
print(list(ezq.map(Point, [1, 2], num=2)))
""",
    """
Point(x=3.0, y=4.0) 5.0 True Point(x=3.0, y=0) ('x', 'y')
Point(x=6.0, y=8.0) 10.0 True Point(x=6.0, y=0) ('x', 'y')
[Point(x=1, y=0.0), Point(x=2, y=0.0)]
""",
)

add_script(
    "collections_namedtuple",
    r"""
from collections import namedtuple
import ezq

Pair = namedtuple("Pair", ["key", "value"])
Row = namedtuple("Row", "id name score", defaults=[0])

def split(text):
    k, v = text.split("=")
    return Pair(k, int(v))

def to_row(args):
    i, name = args
    return Row(i, name)

pairs = list(ezq.map(split, ["a=1", "b=2"], num=2))
print(pairs, [p._asdict() for p in pairs], isinstance(pairs[0], Pair))
rows = list(ezq.map(to_row, enumerate(["x", "y"]), num=2))
print(rows, rows[1].score, type(rows[0]) is Row)
""",
    """
[Pair(key='a', value=1), Pair(key='b', value=2)] [{'key': 'a', 'value': 1}, {'key': 'b', 'value': 2}] True
[Row(id=0, name='x', score=0), Row(id=1, name='y', score=0)] 0 True
""",
)

add_script(
    "namedtuple_named_otherwise",
    r"""
from collections import namedtuple
import ezq

Point = namedtuple("P", "x y")

def make(i):
    return Point(i, i * i)

def norm1(p):
    return abs(p.x) + abs(p.y), type(p).__name__, isinstance(p, Point)

pts = list(ezq.map(make, [1, 2], num=2))
print(pts, isinstance(pts[0], Point), type(pts[1]) is Point)
print(list(ezq.map(norm1, [Point(-1, 2)], num=2)))
""",
    """
[P(x=1, y=1), P(x=2, y=4)] True True
[(3, 'P', True)]
""",
)

add_script(
    "typeddict",
    r"""
from typing import TypedDict
import ezq

class Movie(TypedDict):
    title: str
    year: int

class Rated(Movie, total=False):
    stars: int

def rate(m):
    r: Rated = {**m, "stars": len(m["title"]) % 5}
    return r, sorted(Rated.__required_keys__), sorted(Rated.__optional_keys__), isinstance(r, dict)

for row in ezq.map(rate, [Movie(title="Alien", year=1979), {"title": "Up", "year": 2009}], num=2):
    print(row)
""",
    """
({'title': 'Alien', 'year': 1979, 'stars': 0}, ['title', 'year'], ['stars'], True)
({'title': 'Up', 'year': 2009, 'stars': 2}, ['title', 'year'], ['stars'], True)
""",
)

add_script(
    "generic_box_typevar",
    r"""
from typing import Generic, TypeVar
import ezq

T = TypeVar("T")

class Box(Generic[T]):
    def __init__(self, item: T) -> None:
        self.item = item

    def map(self, f) -> "Box":
        return Box(f(self.item))

    def get(self) -> T:
        return self.item

def wrap(x: int) -> "Box[int]":
    return Box[int](x).map(lambda v: v * 10)

def raw(x: int) -> "Box[int]":
    return Box[int](x)

boxes = list(ezq.map(wrap, [1, 2], num=2))
print([b.get() for b in boxes], all(isinstance(b, Box) for b in boxes), type(boxes[0]) is Box)
r = next(ezq.map(raw, [3], num=2))
print(r.get(), r.__orig_class__ == Box[int], Box.__parameters__, Box[str].__origin__ is Box)
print(next(ezq.map(lambda b: b.map(str).get(), [Box(7)], num=2)))
""",
    """
[10, 20] True True
3 True (~T,) True
7
""",
)

add_script(
    "newtype",
    r"""
from typing import NewType
import ezq

UserId = NewType("UserId", int)
Name = NewType("Name", str)

def lookup(uid: UserId) -> tuple:
    return UserId(uid + 1000), Name(f"user{uid}"), UserId.__name__

print(list(ezq.map(lookup, [UserId(1), UserId(2)], num=2)))
print(next(ezq.map(lambda t: t, [UserId], num=2)) is UserId)
""",
    """
[(1001, 'user1', 'UserId'), (1002, 'user2', 'UserId')]
True
""",
)

add_script(
    "protocol_runtime_checkable",
    r"""
from typing import Protocol, runtime_checkable
import ezq

@runtime_checkable
class HasArea(Protocol):
    def area(self) -> float: ...

class Square:
    def __init__(self, s):
        self.s = s

    def area(self):
        return self.s ** 2

class Label:
    def __init__(self, text):
        self.text = text

def check(obj):
    return type(obj).__name__, isinstance(obj, HasArea), obj.area() if isinstance(obj, HasArea) else None

print(list(ezq.map(check, [Square(3), Label("x"), 5], num=2)))
print(isinstance(next(ezq.map(Square, [2], num=2)), HasArea))
""",
    """
[('Square', True, 9), ('Label', False, None), ('int', False, None)]
True
""",
)

add_script(
    "get_type_hints_future_annotations",
    r"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field
import ezq

@dataclass
class Tag:
    name: str

@dataclass
class Post:
    title: str
    tags: list[Tag] = field(default_factory=list)
    views: dict[str, int] = field(default_factory=dict)

def hints(cls: type) -> list[tuple[str, str]]:
    return [(k, repr(v)) for k, v in typing.get_type_hints(cls).items()]

for row in ezq.map(hints, [Tag, Post], num=2):
    print(row)
print(Post.__annotations__)
""",
    """
[('name', "<class 'str'>")]
[('title', "<class 'str'>"), ('tags', 'list[__main__.Tag]'), ('views', 'dict[str, int]')]
{'title': 'str', 'tags': 'list[Tag]', 'views': 'dict[str, int]'}
""",
)

add_script(
    "future_annotations_recursive_dataclass",
    r"""
from __future__ import annotations

from dataclasses import dataclass
import ezq

@dataclass
class Node:
    value: int
    children: list[Node]

    def total(self) -> int:
        return self.value + sum(c.total() for c in self.children)

def build(n: int) -> Node:
    return Node(n, [Node(i, []) for i in range(n)])

trees = list(ezq.map(build, [2, 3], num=2))
print([t.total() for t in trees], trees[0], Node.__annotations__["children"])
""",
    """
[3, 6] Node(value=2, children=[Node(value=0, children=[]), Node(value=1, children=[])]) list[Node]
""",
)

add_script(
    "type_hints_everywhere",
    r"""
from typing import Callable, Iterable, Optional
import ezq

Transform = Callable[[int], int]

def compose(*fs: Transform) -> Transform:
    def run(x: int) -> int:
        for f in fs:
            x = f(x)
        return x
    return run

def inc(x: int) -> int:
    return x + 1

def dbl(x: int) -> int:
    return x * 2

def first_even(xs: Iterable[int]) -> Optional[int]:
    return next((x for x in xs if x % 2 == 0), None)

pipeline: Transform = compose(inc, dbl, inc)
results: list[int] = list(ezq.map(pipeline, [1, 2, 3], num=2))
print(results, first_even(results), list(ezq.map(first_even, [[1, 3], [5, 6]], num=2)))
""",
    """
[5, 7, 9] None [None, 6]
""",
)

# ---------------------------------------------------------------- decorators

add_script(
    "decorator_functools_wraps",
    r'''
import functools
import ezq

def traced(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return f"{fn.__name__}{args} -> {fn(*args, **kwargs)}"
    return wrapper

@traced
def square(x):
    """Square a number."""
    return x * x

print(list(ezq.map(square, [2, 3], num=2)))
print(square.__name__, square.__doc__, square.__wrapped__(4))
print(list(ezq.map(lambda f: f.__name__, [square], num=2)))
''',
    """
['square(2,) -> 4', 'square(3,) -> 9']
square Square a number. 16
['square']
""",
)

add_script(
    "registry_decorator_same_name",
    r"""
import ezq

PARSERS = {}

def register(fmt):
    def deco(fn):
        PARSERS[fmt] = fn
        return fn
    return deco

@register("csv")
def _(line):
    return line.split(",")

@register("tsv")
def _(line):
    return line.split("\t")

@register("words")
def _(line):
    return line.split()

def parse(fmt, line):
    return fmt, PARSERS[fmt](line)

print(list(ezq.map(parse, ["csv", "tsv", "words"], ["a,b", "c\td", "e f g"], num=2)))
print(sorted(PARSERS))
print(list(ezq.map(PARSERS["csv"], ["x,y"], num=2)), list(ezq.map(PARSERS["tsv"], ["1\t2"], num=2)))
""",
    """
[('csv', ['a', 'b']), ('tsv', ['c', 'd']), ('words', ['e', 'f', 'g'])]
['csv', 'tsv', 'words']
[['x', 'y']] [['1', '2']]
""",
)

add_script(
    "singledispatch",
    r"""
import functools
from dataclasses import dataclass
import ezq

@dataclass
class Money:
    cents: int

@functools.singledispatch
def render(value):
    return f"?{value!r}"

@render.register
def _(value: int):
    return f"int {value}"

@render.register(list)
def _(value):
    return "[" + ", ".join(render(v) for v in value) + "]"

@render.register
def _(value: Money):
    return f"${value.cents / 100:.2f}"

print(list(ezq.map(render, [3, "s", [1, Money(250)], Money(5)], num=2)))
""",
    """
['int 3', "?'s'", '[int 1, $2.50]', '$0.05']
""",
)

add_script(
    "lru_cache_function_as_task",
    r"""
import functools
import ezq

@functools.lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

fib(10)
print(list(ezq.map(fib, [10, 30, 50], num=2)))
info = fib.cache_info()
print(info.currsize, info.misses, info.hits)
""",
    """
[55, 832040, 12586269025]
11 11 8
""",
)

add_script(
    "functools_cache_task",
    r"""
import functools
import ezq

CALLS = []

@functools.cache
def slow_square(x):
    CALLS.append(x)
    return x * x

slow_square(4)
print(list(ezq.map(slow_square, [4, 2, 4], num=1)))
print(CALLS, slow_square.cache_info().currsize)

def task(x):
    before = len(CALLS)
    slow_square(x)
    slow_square(x)
    return len(CALLS) - before, slow_square(4)

print(list(ezq.map(task, [7], num=2)))
""",
    """
[16, 4, 16]
[4] 1
[(1, 16)]
""",
)

add_script(
    "functools_partial_task",
    r"""
import functools
import ezq

def power(base, exp, mod=None):
    return pow(base, exp, mod)

class Greeter:
    def __init__(self, greeting, name):
        self.text = f"{greeting}, {name}!"

cube = functools.partial(power, exp=3)
print(list(ezq.map(cube, [1, 2, 3], num=2)))
print(list(ezq.map(functools.partial(power, 2, mod=7), [1, 2, 3], num=2)))
print([g.text for g in ezq.map(functools.partial(Greeter, "Hi"), ["ann", "bob"], num=2)])
""",
    """
[1, 8, 27]
[2, 4, 1]
['Hi, ann!', 'Hi, bob!']
""",
)

add_script(
    "class_based_decorator",
    r"""
import functools
import ezq

class CountCalls:
    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args), self.calls

@CountCalls
def double(x):
    return 2 * x

print(list(ezq.map(double, [5], num=2)))
print(double(1), double.calls, double.__name__)
print(list(ezq.map(double, [7], num=2)))
""",
    """
[(10, 1)]
(2, 1) 1 double
[(14, 2)]
""",
)

add_script(
    "decorator_with_arguments_retry",
    r"""
import functools
import ezq

def retry(times):
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(x):
            errors = []
            for attempt in range(times):
                try:
                    return fn(x, attempt), errors
                except ValueError as e:
                    errors.append(str(e))
            return None, errors
        return wrapper
    return deco

@retry(times=3)
def flaky(x, attempt):
    if attempt < x:
        raise ValueError(f"try {attempt}")
    return x * 10

print(list(ezq.map(flaky, [0, 2, 5], num=2)))
""",
    """
[(0, []), (20, ['try 0', 'try 1']), (None, ['try 0', 'try 1', 'try 2'])]
""",
)

add_script(
    "contextmanager_in_task",
    r"""
import contextlib
import ezq

PREFIX = ">"

@contextlib.contextmanager
def section(name, log):
    log.append(f"{PREFIX}{name}")
    try:
        yield len(log)
    finally:
        log.append(f"<{name}")

def task(name):
    log = []
    with section(name, log) as depth:
        with section(name + "2", log):
            pass
    return depth, log

print(list(ezq.map(task, ["a"], num=2)))
""",
    """
[(1, ['>a', '>a2', '<a2', '<a'])]
""",
)

# ---------------------------------------------------------------- registries

add_script(
    "metaclass_registry_dict",
    r"""
import ezq

class PluginMeta(type):
    registry = {}

    def __new__(mcs, name, bases, namespace):
        cls = super().__new__(mcs, name, bases, namespace)
        if bases:
            mcs.registry[name.lower()] = cls
        return cls

class Plugin(metaclass=PluginMeta):
    def run(self, text):
        raise NotImplementedError

class Upper(Plugin):
    def run(self, text):
        return text.upper()

class Reverse(Plugin):
    def run(self, text):
        return text[::-1]

def apply(name, text):
    return PluginMeta.registry[name]().run(text)

def names(_):
    return sorted(PluginMeta.registry), len(PluginMeta.registry)

print(list(ezq.map(apply, ["upper", "reverse"], ["abc", "abc"], num=2)))
print(list(ezq.map(names, [0], num=2)))
print(type(next(ezq.map(lambda n: PluginMeta.registry[n](), ["upper"], num=2))) is Upper)
""",
    """
['ABC', 'cba']
[(['reverse', 'upper'], 2)]
True
""",
)

add_script(
    "metaclass_registry_list",
    r"""
import ezq

class Registered(type):
    classes = []

    def __init__(cls, name, bases, ns):
        super().__init__(name, bases, ns)
        Registered.classes.append(cls)

class Base(metaclass=Registered):
    pass

class A(Base):
    pass

class B(Base):
    pass

def count(_):
    return [c.__name__ for c in Registered.classes], A in Registered.classes

print(list(ezq.map(count, [0], num=2)))
print(list(ezq.map(lambda x: type(x).__name__, [A(), B()], num=2)), len(Registered.classes))
print(list(ezq.map(count, [0], num=2)))
""",
    """
[(['Base', 'A', 'B'], True)]
['A', 'B'] 3
[(['Base', 'A', 'B'], True)]
""",
)

add_script(
    "init_subclass_registry",
    r"""
import ezq

class Handler:
    by_kind = {}
    order = []

    def __init_subclass__(cls, /, kind, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.kind = kind
        Handler.by_kind[kind] = cls
        Handler.order.append(kind)

    def handle(self, payload):
        return f"{self.kind}:{payload}"

class JsonHandler(Handler, kind="json"):
    def handle(self, payload):
        return super().handle(payload.strip())

class XmlHandler(Handler, kind="xml"):
    pass

def dispatch(kind, payload):
    return Handler.by_kind[kind]().handle(payload), list(Handler.order)

print(list(ezq.map(dispatch, ["json", "xml"], [" {} ", "<a/>"], num=2)))
print(Handler.order, sorted(Handler.by_kind))
h = next(ezq.map(lambda k: Handler.by_kind[k](), ["xml"], num=2))
print(type(h) is XmlHandler, h.kind, Handler.by_kind["xml"] is XmlHandler)
""",
    """
[('json:{}', ['json', 'xml']), ('xml:<a/>', ['json', 'xml'])]
['json', 'xml'] ['json', 'xml']
True xml True
""",
)

# ---------------------------------------------------------------- globals, functions

add_script(
    "global_reassigned_at_top_level",
    r"""
import ezq

THRESHOLD = 10

def above(x):
    return x > THRESHOLD

print(list(ezq.map(above, [5, 15], num=2)))
THRESHOLD = 4
print(list(ezq.map(above, [5, 15], num=2)))
""",
    """
[False, True]
[True, True]
""",
)

add_script(
    "global_set_in_main_block_guarded",
    r"""
import ezq

def scale(x):
    return x * FACTOR + OFFSET

OFFSET = 1

if __name__ == "__main__":
    FACTOR = 3
    print(list(ezq.map(scale, range(4), num=2)))
""",
    """
[1, 4, 7, 10]
""",
)

add_script(
    "main_function_guarded",
    r"""
import ezq

def word_count(line: str) -> int:
    return len(line.split())

def main() -> None:
    lines = ["a b c", "", "hello world"]
    counts = list(ezq.map(word_count, lines, num=2))
    print(counts, sum(counts))

if __name__ == "__main__":
    main()
""",
    """
[3, 0, 2] 5
""",
)

add_script(
    "guarded_local_closure_in_main",
    r"""
import ezq

def main():
    factor = 3
    names = {"a": 1, "b": 2}

    def task(key):
        return names[key] * factor

    print(list(ezq.map(task, ["a", "b"], num=2)))
    print(list(ezq.map(lambda k: k * factor, ["x"], num=2)))

if __name__ == "__main__":
    main()
""",
    """
[3, 6]
['xxx']
""",
)

add_script(
    "guarded_class_defined_in_main_block",
    r"""
from dataclasses import dataclass
import ezq

if __name__ == "__main__":
    @dataclass
    class Pt:
        x: int

    def shift(p):
        return Pt(p.x + 1)

    res = list(ezq.map(shift, [Pt(1)], num=2))
    print(res, isinstance(res[0], Pt))
""",
    """
[Pt(x=2)] True
""",
)

add_script(
    "shared_global_list_two_functions",
    r"""
import ezq

SEEN = ["parent"]

def record(x):
    SEEN.append(x)

def seen():
    return SEEN

def task(x):
    record(x)
    return seen()[0], x in seen(), seen() is SEEN

print(list(ezq.map(task, [1, 2, 3], num=2)))
print(SEEN)
""",
    """
[('parent', True, True), ('parent', True, True), ('parent', True, True)]
['parent']
""",
)

add_script(
    "shared_global_counter",
    r"""
from collections import Counter
import ezq

COUNTS = Counter(seed=1)

def add(word):
    COUNTS[word] += 1

def get(word):
    return COUNTS[word]

def task(word):
    before = get(word)
    add(word)
    add(word)
    return word, get(word) - before, get("seed")

print(list(ezq.map(task, ["a", "b", "a"], num=2)))
print(dict(COUNTS))
""",
    """
[('a', 2, 1), ('b', 2, 1), ('a', 2, 1)]
{'seed': 1}
""",
)

add_script(
    "lazy_global_init",
    r"""
import ezq

_cache = None
LOADS = 0

def get_config():
    global _cache, LOADS
    if _cache is None:
        LOADS += 1
        _cache = {"scale": 3, "name": "cfg"}
    return _cache

def task(x):
    a = get_config()
    b = get_config()
    c = get_config()
    return x * a["scale"], a is b is c, LOADS

print(list(ezq.map(task, [1], num=2)))
print(_cache is None, LOADS)
get_config()
print(list(ezq.map(task, [2], num=2)))
""",
    """
[(3, True, 1)]
True 0
[(6, True, 1)]
""",
)

add_script(
    "global_table_1000_entries",
    r"""
import ezq

TABLE = {i: i * i for i in range(1000)}
NAMES = {i: f"n{i:03d}" for i in range(1000)}

def lookup(k):
    return TABLE[k], NAMES[k], len(TABLE)

print(list(ezq.map(lookup, [0, 7, 999], num=2)))
""",
    """
[(0, 'n000', 1000), (49, 'n007', 1000), (998001, 'n999', 1000)]
""",
)

add_script(
    "global_mutated_in_worker",
    r"""
import ezq

TOTAL = 100
SETTINGS = {"mode": "parent"}

def add(x):
    global TOTAL
    TOTAL += x
    SETTINGS["mode"] = "worker"
    return TOTAL, SETTINGS["mode"]

print(list(ezq.map(add, [5], num=2)))
print(TOTAL, SETTINGS)
TOTAL = 0
print(list(ezq.map(add, [1], num=2)), TOTAL, SETTINGS)
""",
    """
[(105, 'worker')]
100 {'mode': 'parent'}
[(1, 'worker')] 0 {'mode': 'parent'}
""",
)

add_script(
    "thread_map_shares_globals",
    r"""
import threading
import ezq

RESULTS = []
LOCK = threading.Lock()

def collect(x):
    with LOCK:
        RESULTS.append(x * x)
    return x

print(list(ezq.map(collect, range(5), kind="thread", num=2)))
print(sorted(RESULTS))
RESULTS.clear()
print(list(ezq.map(collect, range(3), num=2)), RESULTS)
""",
    """
[0, 1, 2, 3, 4]
[0, 1, 4, 9, 16]
[0, 1, 2] []
""",
)

add_script(
    "lambda_task",
    r"""
import ezq

OFFSET = 100
print(list(ezq.map(lambda x: x * 2 + OFFSET, range(4), num=2)))
key = lambda s: (len(s), s)
print(list(ezq.map(key, ["bb", "a"], num=2)))
print(sorted(ezq.map(lambda w: w.title(), ["b x", "a y"], num=2)))
""",
    """
[100, 102, 104, 106]
[(2, 'bb'), (1, 'a')]
['A Y', 'B X']
""",
)

add_script(
    "closure_task",
    r"""
import ezq

def make_adder(n):
    def add(x):
        return x + n
    return add

def make_formatter(prefix, width):
    sep = ":"
    def fmt(x):
        return f"{prefix}{sep}{str(x).rjust(width, '0')}"
    return fmt

print(list(ezq.map(make_adder(10), [1, 2], num=2)))
print(list(ezq.map(make_formatter("id", 3), [7, 42], num=2)))
adders = [make_adder(i) for i in range(3)]
print(list(ezq.map(lambda f: f(100), adders, num=2)))
""",
    """
[11, 12]
['id:007', 'id:042']
[100, 101, 102]
""",
)

add_script(
    "mutual_recursion",
    r"""
import ezq

def is_even(n):
    return True if n == 0 else is_odd(n - 1)

def is_odd(n):
    return False if n == 0 else is_even(n - 1)

print(list(ezq.map(is_even, [0, 7, 10], num=2)))
print(list(ezq.map(is_odd, [0, 7, 10], num=2)))
""",
    """
[True, False, True]
[False, True, False]
""",
)

add_script(
    "recursive_factorial",
    r"""
import ezq

def factorial(n):
    return 1 if n <= 1 else n * factorial(n - 1)

def digits(n):
    return len(str(factorial(n)))

print(list(ezq.map(factorial, [0, 5, 10, 20], num=2)))
print(list(ezq.map(digits, [50, 100], num=2)))
""",
    """
[1, 120, 3628800, 2432902008176640000]
[65, 158]
""",
)

add_script(
    "nested_functions",
    r"""
import ezq

def process(x):
    def double(y):
        return y * 2

    def describe():
        kind = "even" if x % 2 == 0 else "odd"
        return f"{x}:{kind}:{double(x)}"

    def outer_helper():
        def inner():
            return describe().upper()
        return inner()

    return outer_helper()

print(list(ezq.map(process, [1, 2], num=2)))
""",
    """
['1:ODD:2', '2:EVEN:4']
""",
)

add_script(
    "generators_in_task",
    r"""
import itertools
import ezq

def evens(limit):
    n = 0
    while n < limit:
        yield n
        n += 2

def fib_gen():
    a, b = 0, 1
    while True:
        yield a
        a, b = b, a + b

def task(n):
    return sum(evens(n)), list(itertools.islice(fib_gen(), n)), sum(x * x for x in range(n))

print(list(ezq.map(task, [5, 8], num=2)))
""",
    """
[(6, [0, 1, 1, 2, 3], 30), (12, [0, 1, 1, 2, 3, 5, 8, 13], 140)]
""",
)

add_script(
    "global_compiled_regex",
    r"""
import re
import ezq

WORD = re.compile(r"[a-z']+")
DATE = re.compile(r"(?P<y>\d{4})-(?P<m>\d\d)-(?P<d>\d\d)")

def words(line):
    return WORD.findall(line.lower())

def parse_date(text):
    m = DATE.search(text)
    return m and (int(m["y"]), int(m["m"]), int(m["d"]))

print(list(ezq.map(words, ["Hello, World!", "It's 2 late"], num=2)))
print(list(ezq.map(parse_date, ["on 2024-03-05.", "never"], num=2)))
""",
    """
[['hello', 'world'], ["it's", 'late']]
[(2024, 3, 5), None]
""",
)

add_script(
    "global_lock_in_script",
    r"""
import threading
import ezq

LOCK = threading.Lock()

def task(x):
    with LOCK:
        return x * 2

print(list(ezq.map(task, [1, 2, 3], num=2)), LOCK.locked())
""",
    """
[2, 4, 6] False
""",
)

add_script(
    "global_rlock_in_script",
    r"""
import threading
import ezq

RLOCK = threading.RLock()

def task(x):
    with RLOCK:
        with RLOCK:
            return x * 2

print(list(ezq.map(task, [1, 2, 3], num=2)))
""",
    """
[2, 4, 6]
""",
)

add_script(
    "global_argparse_namespace",
    r"""
import argparse
import ezq

parser = argparse.ArgumentParser()
parser.add_argument("--scale", type=int, default=1)
parser.add_argument("--upper", action="store_true")
ARGS = parser.parse_args(["--scale", "4", "--upper"])

def task(word):
    w = word * ARGS.scale
    return w.upper() if ARGS.upper else w

print(list(ezq.map(task, ["ab", "c"], num=2)))
""",
    """
['ABABABAB', 'CCCC']
""",
)

add_script(
    "defaultdict_with_lambda_factory",
    r"""
from collections import defaultdict
import ezq

LABELS = defaultdict(lambda: "other", {"a": "vowel", "e": "vowel"})

def group(words):
    by_letter = defaultdict(list)
    for w in words:
        by_letter[w[0]].append(w)
    return {k: (LABELS[k], v) for k, v in sorted(by_letter.items())}

print(list(ezq.map(group, [["apple", "bob", "avocado"], ["egg"]], num=2)))
print(sorted(LABELS))
""",
    """
[{'a': ('vowel', ['apple', 'avocado']), 'b': ('other', ['bob'])}, {'e': ('vowel', ['egg'])}]
['a', 'e']
""",
)

add_script(
    "top_level_runs_once",
    r"""
import ezq

with open("runs.txt", "a") as f:
    f.write("run\n")

def task(x):
    return x + 1

print(list(ezq.map(task, [1, 2], num=2)))
print(list(ezq.map(task, [3], num=2)))
with open("runs.txt") as f:
    print(f.read().count("run"))
""",
    """
[2, 3]
[4]
1
""",
)

add_script(
    "bound_and_class_methods_as_tasks",
    r"""
import ezq

class Scaler:
    def __init__(self, factor):
        self.factor = factor
        self.history = []

    def apply(self, x):
        self.history.append(x)
        return x * self.factor

    @classmethod
    def default(cls, x):
        return cls(2).apply(x)

    @staticmethod
    def clamp(x):
        return max(0, min(x, 10))

s = Scaler(3)
print(list(ezq.map(s.apply, [1, 2], num=2)), s.history)
print(list(ezq.map(Scaler.default, [5], num=2)), list(ezq.map(Scaler.clamp, [-3, 50, 4], num=2)))
""",
    """
[3, 6] []
[10] [0, 10, 4]
""",
)

add_script(
    "builtin_functions_as_tasks",
    r"""
import math
import operator
import ezq

print(list(ezq.map(len, ["ab", "", "xyz"], num=2)))
print(list(ezq.map(str.upper, ["a", "b"], num=2)))
print(list(ezq.map(operator.itemgetter(1), [(1, 2), (3, 4)], num=2)))
print(list(ezq.map(math.isqrt, [16, 17], num=2)), list(ezq.map(int, ["7", " 8 "], num=2)))
""",
    """
[2, 0, 3]
['A', 'B']
[2, 4]
[4, 4] [7, 8]
""",
)

# ---------------------------------------------------------------- project modules

HELPERS = as_module(r"""
FACTOR = 3

def scale(x):
    return x * FACTOR

def describe(x):
    return f"{x} -> {scale(x)}"
""")

add_script(
    "sibling_module_import",
    r"""
import ezq
import helpers

def task(x):
    return helpers.scale(x) + 1

print(list(ezq.map(task, [1, 2, 3], num=2)))
print(list(ezq.map(helpers.describe, [4], num=2)))
""",
    """
[4, 7, 10]
['4 -> 12']
""",
    files={"helpers.py": HELPERS},
)

add_script(
    "sibling_module_from_import",
    r"""
import ezq
from helpers import scale, describe

def label(x):
    return f"v={scale(x)}"

print(list(ezq.map(scale, [1, 2], num=2)))
print(list(ezq.map(label, [3], num=2)), list(ezq.map(describe, [5], num=2)))
""",
    """
[3, 6]
['v=9'] ['5 -> 15']
""",
    files={"helpers.py": HELPERS},
)

add_script(
    "sibling_module_attribute_set_by_script",
    r"""
import ezq
import helpers
from helpers import scale

helpers.FACTOR = 10

def task(x):
    return scale(x), helpers.FACTOR

print(list(ezq.map(task, [1, 2], num=2)))
print(list(ezq.map(helpers.describe, [4], num=2)))
""",
    """
[(10, 10), (20, 10)]
['4 -> 40']
""",
    files={"helpers.py": HELPERS},
    by_value="[(3, 3), (6, 3)]\n['4 -> 12']\n",
)  # (modules: imported afresh)

add_script(
    "sibling_module_table",
    r"""
import ezq
import helpers
from helpers import UNITS

print(list(ezq.map(helpers.to_meters, [1, 250, 3], ["km", "cm", "m"], num=2)))
print(list(ezq.map(lambda u: UNITS[u], ["km"], num=2)), sorted(UNITS))
""",
    """
[1000.0, 2.5, 3.0]
[1000.0] ['cm', 'km', 'm']
""",
    files={
        "helpers.py": as_module(r"""
UNITS = {"km": 1000.0, "m": 1.0, "cm": 0.01}

def to_meters(value, unit):
    return value * UNITS[unit]
""")
    },
)

add_script(
    "sibling_module_class_returned",
    r"""
import ezq
import helpers
from helpers import Result

def task(name):
    return helpers.Result(name, len(name) / 10)

res = list(ezq.map(task, ["ann", "bartholomew"], num=2))
print(res, [r.passed() for r in res], all(isinstance(r, Result) for r in res), type(res[0]) is helpers.Result)
print(list(ezq.map(helpers.grade, ["x"], [0.9], num=2)) == [Result("x", 0.9)])
""",
    """
[Result(name='ann', score=0.3), Result(name='bartholomew', score=1.1)] [False, True] True True
True
""",
    files={
        "helpers.py": as_module(r"""
from dataclasses import dataclass

@dataclass
class Result:
    name: str
    score: float

    def passed(self):
        return self.score >= 0.5

def grade(name, score):
    return Result(name, score)
""")
    },
)

add_script(
    "sibling_module_unpicklable_struct",
    r"""
import ezq
import helpers

def roundtrip(n):
    data = helpers.pack(n, n * 1000)
    return len(data), helpers.unpack(data)

print(list(ezq.map(roundtrip, [1, 2], num=2)))
print(list(ezq.map(helpers.unpack, [helpers.pack(7, 9)], num=2)))
""",
    """
[(6, (1, 1000)), (6, (2, 2000))]
[(7, 9)]
""",
    files={
        "helpers.py": as_module(r"""
import struct

_HEADER = struct.Struct("<HI")

def pack(kind, size):
    return _HEADER.pack(kind, size)

def unpack(data):
    return _HEADER.unpack(data)
""")
    },
)

add_script(
    "sibling_module_lock_and_registry",
    r"""
import ezq
import helpers

def task(x):
    helpers.register(f"k{x}", x * x)
    return helpers.lookup(f"k{x}"), helpers.lookup("parent")

helpers.register("parent", 1)
print(list(ezq.map(task, [2, 3], num=2)))
print(helpers.lookup("k2"), helpers.lookup("parent"))
""",
    """
[(4, 1), (9, 1)]
None 1
""",
    files={
        "helpers.py": as_module(r"""
import threading

_LOCK = threading.RLock()
_REGISTRY = {}

def register(key, value):
    with _LOCK:
        _REGISTRY[key] = value
        return len(_REGISTRY)

def lookup(key):
    with _LOCK:
        return _REGISTRY.get(key)
""")
    },
    by_value="[(4, None), (9, None)]\nNone 1\n",
)  # (modules are imported afresh)

add_script(
    "sibling_module_exception",
    r"""
import ezq
import helpers
from helpers import ValidationError

try:
    list(ezq.map(helpers.validate, [{"name": "a", "age": 1}, {"name": "b"}], num=2))
except ValidationError as e:
    print(type(e).__module__, e.field, e.value, e.args)
""",
    """
helpers age None ('age', None)
""",
    files={
        "helpers.py": as_module(r"""
class ValidationError(Exception):
    def __init__(self, field, value):
        super().__init__(field, value)
        self.field = field
        self.value = value

def validate(record):
    for field in ("name", "age"):
        if field not in record:
            raise ValidationError(field, None)
    return record["name"]
""")
    },
)

APP_UTIL = as_module(r"""
from dataclasses import dataclass

GREETING = "hello"

@dataclass
class Greeting:
    text: str

def shout(name):
    return Greeting(f"{GREETING} {name}".upper())
""")

add_script(
    "package_relative_import_run_m",
    None,
    """
['HELLO ANN', 'HELLO BOB'] True
[(True, True, '1.0')] __main__
""",
    files={
        "app/__init__.py": 'VERSION = "1.0"\n',
        "app/util.py": APP_UTIL,
        "app/main.py": as_script(r"""
import ezq
from . import util
from .util import Greeting
from app import VERSION
import app.util

def greet(name):
    return util.shout(name)

def check(g):
    return isinstance(g, Greeting), app.util.shout is util.shout, VERSION

res = list(ezq.map(greet, ["ann", "bob"], num=2))
print([g.text for g in res], all(isinstance(g, Greeting) for g in res))
print(list(ezq.map(check, res[:1], num=2)), __name__)
"""),
    },
    run=["-m", "app.main"],
)

add_script(
    "package_absolute_import_run_m",
    None,
    """
['tea x2 = 6', 'cake x1 = 5'] Receipt True
[6, 5]
""",
    files={
        "app/__init__.py": "",
        "app/models.py": as_module(r"""
from dataclasses import dataclass

@dataclass
class Order:
    item: str
    qty: int
    price: int

    def total(self):
        return self.qty * self.price
"""),
        "app/main.py": as_script(r"""
import ezq
import app.models
from app.models import Order
from app import models

class Receipt:
    def __init__(self, order):
        self.line = f"{order.item} x{order.qty} = {order.total()}"

def make_receipt(order):
    return Receipt(order)

orders = [Order("tea", 2, 3), models.Order("cake", 1, 5)]
receipts = list(ezq.map(make_receipt, orders, num=2))
print([r.line for r in receipts], type(receipts[0]).__name__, isinstance(receipts[0], Receipt))
print(list(ezq.map(app.models.Order.total, orders, num=2)))
"""),
    },
    run=["-m", "app.main"],
)

add_script(
    "package_dunder_main_run_m",
    None,
    """
[1, 4, 9] [17]
""",
    files={
        "app/__init__.py": "",
        "app/core.py": "def square(x):\n    return x * x\n",
        "app/__main__.py": as_script(r"""
import ezq
from .core import square
from . import core

def task(x):
    return core.square(x) + 1

print(list(ezq.map(square, [1, 2, 3], num=2)), list(ezq.map(task, [4], num=2)))
"""),
    },
    run=["-m", "app"],
)

add_script(
    "single_module_run_m",
    None,
    """
['HI!', 'YO!'] __main__ tool
""",
    files={
        "tool.py": as_script(r"""
import ezq

def shout(word):
    return word.upper() + "!"

print(list(ezq.map(shout, ["hi", "yo"], num=2)), __name__, __spec__.name)
"""),
    },
    run=["-m", "tool"],
)

add_script(
    "script_in_subfolder_with_sibling",
    None,
    """
['hello-world', 'a-b-c']
['HELLO-WORLD']
""",
    files={
        "tools/textutil.py": as_module(r"""
def slug(s):
    return "-".join(s.lower().split())
"""),
        "tools/main.py": as_script(r"""
import ezq
import textutil

def loud_slug(s):
    return textutil.slug(s).upper()

print(list(ezq.map(textutil.slug, ["Hello World", "A B C"], num=2)))
print(list(ezq.map(loud_slug, ["hello world"], num=2)))
"""),
    },
    run=["tools/main.py"],
)

add_script(
    "sys_path_insert_path_object",
    r"""
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, HERE / "vendor")
sys.path.insert(0, str(HERE / "lib"))
import ezq
import mylib

def task(x):
    return mylib.tripled(x) + 1

print(list(ezq.map(task, [1, 2], num=2)), list(ezq.map(mylib.tripled, [5], num=2)))
print(isinstance(sys.path[1], pathlib.Path))
""",
    """
[4, 7] [15]
True
""",
    files={"lib/mylib.py": "def tripled(x):\n    return 3 * x\n"},
)

# ---------------------------------------------------------------- ezq features used from workers

add_script(
    "nested_thread_map_in_process_task",
    r"""
import ezq

def inner(y, factor):
    return y * factor

def outer(x):
    return sum(ezq.map(inner, range(4), [x] * 4, kind="thread", num=2))

print(list(ezq.map(outer, [1, 10], num=2)))
print(list(ezq.map(lambda x: list(ezq.map(lambda y: x * y, [1, 2], kind="thread")), [3], num=2)))
""",
    """
[6, 60]
[[3, 6]]
""",
)

add_script(
    "nested_process_map_in_process_task",
    r"""
import ezq

def square(y):
    return y * y

def outer(n):
    return list(ezq.map(square, range(n), num=2))

print(list(ezq.map(outer, [2, 3], num=2)))
""",
    """
[[0, 1], [0, 1, 4]]
""",
)

add_script(
    "run_thread_inside_process_worker",
    r"""
import ezq

def worker(out, n):
    box = []
    threads = [ezq.run_thread(box.append, i * n) for i in range(3)]
    for t in threads:
        t.join()
    out.put(sorted(box))

out = ezq.Q()
w = ezq.run(worker, out, 10)
w.join()
print(w.exitcode, [msg.data for msg in out.items()])
""",
    """
0 [[0, 10, 20]]
""",
)

add_script(
    "worker_puts_dataclass_on_q",
    r"""
from dataclasses import dataclass
import ezq

@dataclass
class Item:
    name: str
    qty: int

    def total(self, price):
        return self.qty * price

def producer(out, n):
    for i in range(n):
        out.put(Item(f"item{i}", i + 1), kind="item", order=i)

out = ezq.Q()
w = ezq.run(producer, out, 3)
w.join()
msgs = list(out.items(sort=True))
print([type(m.data) is Item for m in msgs], [m.kind for m in msgs])
print([m.data for m in msgs] == [Item("item0", 1), Item("item1", 2), Item("item2", 3)], msgs[2].data.total(5))
print(msgs[0])
""",
    """
[True, True, True] ['item', 'item', 'item']
True 15
Msg(data=Item(name='item0', qty=1), kind='item', order=0)
""",
)

add_script(
    "parent_puts_dataclass_on_q",
    r"""
from dataclasses import dataclass
import ezq

@dataclass
class Job:
    id: int
    text: str

@dataclass
class Done:
    job: Job
    words: int

def worker(q, out):
    for msg in q:
        job = msg.data
        out.put(Done(job, len(job.text.split())), order=msg.order)

q, out = ezq.Q(), ezq.Q()
workers = [ezq.run(worker, q, out) for _ in range(2)]
for i, text in enumerate(["a b", "c", "d e f"]):
    q.put(Job(i, text), order=i)
q.stop(workers)
for msg in out.items(sort=True):
    print(msg.order, msg.data, isinstance(msg.data.job, Job), type(msg.data) is Done)
""",
    """
0 Done(job=Job(id=0, text='a b'), words=2) True True
1 Done(job=Job(id=1, text='c'), words=1) True True
2 Done(job=Job(id=2, text='d e f'), words=3) True True
""",
)

add_script(
    "enum_messages_on_q",
    r"""
from enum import Enum
import ezq

class Cmd(Enum):
    ADD = "add"
    MUL = "mul"

class Status(Enum):
    OK = 0
    BAD = 1

def calc(q, out):
    acc = 1
    for msg in q:
        cmd, n = msg.data
        if cmd is Cmd.ADD:
            acc += n
        elif cmd is Cmd.MUL:
            acc *= n
        out.put((cmd, acc), kind=cmd.value)
    out.put(Status.OK, kind="status")

q, out = ezq.Q(), ezq.Q()
w = ezq.run(calc, q, out)
q.put((Cmd.ADD, 2)).put((Cmd.MUL, 5)).put((Cmd.ADD, 1))
q.stop(w)
msgs = list(out.items())
print([(m.kind, m.data[1]) for m in msgs[:-1]], [m.data[0] is Cmd.ADD for m in msgs[:-1]])
print(msgs[-1].kind, msgs[-1].data is Status.OK)
""",
    """
[('add', 3), ('mul', 15), ('add', 16)] [True, False, True]
status True
""",
)

add_script(
    "q_sum_two_workers",
    r"""
import ezq

def worker(q, out):
    total = 0
    for msg in q:
        total += msg.data
    out.put(total)

q, out = ezq.Q(), ezq.Q()
workers = [ezq.run(worker, q, out) for _ in range(2)]
for i in range(100):
    q.put(i)
q.stop(workers)
print(sum(msg.data for msg in out.items()))
""",
    """
4950
""",
)

add_script(
    "run_with_kwargs_and_lambda",
    r"""
import ezq

def greet(out, name, *, punct="!", times=1):
    out.put(f"hello {name}{punct}" * times)

out = ezq.Q()
ws = [ezq.run(greet, out, "ann", times=2), ezq.run(greet, out, "bob", punct="?")]
for w in ws:
    w.join()
print(sorted(m.data for m in out.items()))
w = ezq.run(lambda q, x: q.put(x * 3), out, 7)
w.join()
print([m.data for m in out.items()])
""",
    """
['hello ann!hello ann!', 'hello bob?']
[21]
""",
)

add_script(
    "q_sorted_in_worker",
    r"""
import ezq

def worker(q, out):
    out.put([msg.data for msg in q.sorted()])

q, out = ezq.Q(), ezq.Q()
w = ezq.run(worker, q, out)
for i in [2, 0, 1]:
    q.put(f"m{i}", order=i)
q.stop(w)
print([m.data for m in out.items()])
""",
    """
[['m0', 'm1', 'm2']]
""",
)

add_script(
    "thread_q_with_lock_messages",
    r"""
import threading
import ezq

def worker(q, out):
    for msg in q:
        with msg.data["lock"]:
            out.put(msg.data["n"] * 2, order=msg.order)

q, out = ezq.Q("thread"), ezq.Q("thread")
lock = threading.Lock()
ws = [ezq.run_thread(worker, q, out) for _ in range(2)]
for i in range(4):
    q.put({"lock": lock, "n": i}, order=i)
q.stop(ws)
print([m.data for m in out.items(sort=True)])
""",
    """
[0, 2, 4, 6]
""",
)

add_script(
    "map_task_closure_captures_q",
    r"""
import ezq

def make_task(out):
    def task(x):
        out.put(x * 10, order=x)
        return x
    return task

out = ezq.Q()
print(list(ezq.map(make_task(out), range(3), num=2)))
print([m.data for m in out.items(sort=True)])
""",
    """
[0, 1, 2]
[0, 10, 20]
""",
)

add_script(
    "map_infinite_generator_input",
    r"""
import itertools
import ezq

def square(x):
    return x * x

results = ezq.map(square, itertools.count(1), num=2)
print(list(itertools.islice(results, 5)))
results.close()

def gen():
    for i in range(3):
        yield f"item{i}"

print(list(ezq.map(str.upper, gen(), num=2)))
""",
    """
[1, 4, 9, 16, 25]
['ITEM0', 'ITEM1', 'ITEM2']
""",
)

add_script(
    "map_unordered_and_chunksize",
    r"""
import ezq

def cube(x):
    return x ** 3

print(sorted(ezq.map(cube, range(6), num=2, ordered=False)))
print(list(ezq.map(cube, range(7), num=2, chunksize=3)))
""",
    """
[0, 1, 8, 27, 64, 125]
[0, 1, 8, 27, 64, 125, 216]
""",
)

add_script(
    "map_zipped_iterables",
    r"""
import ezq

def area(w, h):
    return w * h

def label(name, n, unit):
    return f"{name}={n}{unit}"

print(list(ezq.map(area, [1, 2, 3], [4, 5, 6], num=2)))
print(list(ezq.map(label, ["a", "b", "c"], range(10), ["m", "s"], num=2)))
print(list(ezq.map(pow, [2, 3], [3, 2], num=2)))
""",
    """
[4, 10, 18]
['a=0m', 'b=1s']
[8, 9]
""",
)

# ---------------------------------------------------------------- exceptions

add_script(
    "custom_exception_parse_error",
    r"""
import ezq

class ParseError(ValueError):
    def __init__(self, line, reason):
        super().__init__(f"{line}: {reason}")
        self.line = line
        self.reason = reason

def parse(args):
    line, text = args
    if not text.strip():
        raise ParseError(line, "empty line")
    return int(text)

print(list(ezq.map(parse, enumerate(["1", "2"]), num=2)))
try:
    list(ezq.map(parse, enumerate(["1", " ", "3"]), num=2))
except ParseError as e:
    print(type(e).__name__, e.line, e.reason, str(e))
""",
    """
[1, 2]
ParseError 1 empty line 1: empty line
""",
)

add_script(
    "custom_exception_keyword_only_attrs",
    r"""
import ezq

class ApiError(Exception):
    def __init__(self, message, *, status, retry=False):
        super().__init__(message)
        self.status = status
        self.retry = retry

def fetch(path):
    if path.startswith("/admin"):
        raise ApiError(f"forbidden: {path}", status=403)
    return f"200 {path}"

try:
    for r in ezq.map(fetch, ["/home", "/admin/x"], num=2):
        print(r)
except ApiError as e:
    print(e, e.status, e.retry, e.args)
""",
    """
200 /home
forbidden: /admin/x 403 False ('forbidden: /admin/x',)
""",
)

add_script(
    "custom_exception_no_args_custom_str",
    r"""
import ezq

class RateLimited(Exception):
    def __init__(self, wait, host):
        super().__init__()
        self.wait = wait
        self.host = host

    def __str__(self):
        return f"{self.host}: retry in {self.wait}s"

def call(host):
    raise RateLimited(30, host)

try:
    list(ezq.map(call, ["api.example"], num=2))
except RateLimited as e:
    print(str(e), e.args, e.wait)
""",
    """
api.example: retry in 30s () 30
""",
)

add_script(
    "except_valueerror_catches_script_subclass",
    r'''
import ezq

class BadInput(ValueError):
    """Input that can't be used."""

def check(x):
    if x < 0:
        raise BadInput(f"negative: {x}")
    return x

try:
    list(ezq.map(check, [1, -2, 3], num=2))
except ValueError as e:
    print(type(e).__name__, isinstance(e, BadInput), e, type(e).__doc__)
''',
    """
BadInput True negative: -2 Input that can't be used.
""",
)

add_script(
    "results_before_exception",
    r"""
import ezq

def invert(x):
    return 10 // x

try:
    for r in ezq.map(invert, [1, 2, 0, 5], num=2):
        print(r)
except ZeroDivisionError as e:
    print(type(e).__name__, isinstance(e, ArithmeticError))
""",
    """
10
5
ZeroDivisionError True
""",
)

add_script(
    "builtin_exceptions_keyerror_oserror",
    r"""
import ezq

PRICES = {"tea": 2}

def price(item):
    return PRICES[item]

def read(name):
    with open(name) as f:
        return f.read()

try:
    list(ezq.map(price, ["tea", "cake"], num=2))
except KeyError as e:
    print("KeyError", e.args)
try:
    list(ezq.map(read, ["missing.txt"], num=2))
except OSError as e:
    print(type(e).__name__, e.errno, e.filename, isinstance(e, FileNotFoundError))
""",
    """
KeyError ('cake',)
FileNotFoundError 2 missing.txt True
""",
)

add_script(
    "worker_join_raises_custom_exception",
    r"""
import ezq

class JobFailed(Exception):
    def __init__(self, job, why):
        super().__init__(f"job {job} failed: {why}")
        self.job = job
        self.why = why

def work(job):
    raise JobFailed(job, "disk full")

w = ezq.run(work, 7)
try:
    w.join()
except JobFailed as e:
    print(type(e).__name__, e.job, e.why, str(e), isinstance(e, Exception))
print(w.exitcode != 0)
""",
    """
JobFailed 7 disk full job 7 failed: disk full True
True
""",
)

add_script(
    "q_stop_raises_worker_exception",
    r"""
import ezq

class BadRecord(ValueError):
    pass

def consume(q):
    for msg in q:
        if msg.data < 0:
            raise BadRecord(f"negative: {msg.data}")

q = ezq.Q()
w = ezq.run(consume, q)
q.put(1).put(-5)
try:
    q.stop(w)
except ValueError as e:
    print(type(e).__name__, e, isinstance(e, BadRecord))
""",
    """
BadRecord negative: -5 True
""",
)

# ---------------------------------------------------------------- settings made at the top of the script

add_script(
    "decimal_context_precision",
    r"""
import decimal
from decimal import Decimal
import ezq

decimal.getcontext().prec = 50

def seventh(n):
    return str(Decimal(n) / Decimal(7))

for text in ezq.map(seventh, [1, 3], num=2):
    print(text)
decimal.getcontext().prec = 5
decimal.getcontext().rounding = decimal.ROUND_DOWN
print(list(ezq.map(seventh, [5], num=2)), seventh(5))
""",
    """
0.14285714285714285714285714285714285714285714285714
0.42857142857142857142857142857142857142857142857143
['0.71428'] 0.71428
""",
)

add_script(
    "recursion_limit",
    r"""
import sys
import ezq

sys.setrecursionlimit(5000)

def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)

print(list(ezq.map(depth, [3000], num=2)), sys.getrecursionlimit())
print(list(ezq.map(lambda _: sys.getrecursionlimit(), [0], num=2)))
""",
    """
[3000] 5000
[5000]
""",
)

add_script(
    "int_max_str_digits",
    r"""
import sys
import ezq

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(100000)

def digits(exp):
    return len(str(10 ** exp))

print(list(ezq.map(digits, [10, 5000], num=2)))
""",
    """
[11, 5001]
""",
)

add_script(
    "warnings_simplefilter_error",
    r"""
import warnings
import ezq

warnings.simplefilter("error")

def old_api(x):
    try:
        warnings.warn("old_api is deprecated", DeprecationWarning)
    except DeprecationWarning as w:
        return f"raised: {w}"
    return "warned"

print(list(ezq.map(old_api, [1], num=2)))
""",
    """
['raised: old_api is deprecated']
""",
)

add_script(
    "warnings_filterwarnings_ignore",
    r"""
import warnings
import ezq

warnings.simplefilter("error")
warnings.filterwarnings("ignore", message="noisy")

def check(msg):
    try:
        warnings.warn(msg, UserWarning)
    except UserWarning:
        return f"{msg}: raised"
    return f"{msg}: ignored"

print(list(ezq.map(check, ["noisy thing", "loud thing"], num=2)))
""",
    """
['noisy thing: ignored', 'loud thing: raised']
""",
)

add_script(
    "logging_basicconfig_stdout",
    r"""
import logging
import sys
import ezq

logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s", stream=sys.stdout)
log = logging.getLogger(__name__)

def task(x):
    log.info("item %d", x)
    logging.getLogger(__name__).debug("hidden %d", x)
    return x * 2

results = list(ezq.map(task, range(3), num=1))
print("done", results)
""",
    """
INFO:__main__:item 0
INFO:__main__:item 1
INFO:__main__:item 2
done [0, 2, 4]
""",
)

add_script(
    "logging_named_loggers_levels",
    r"""
import logging
import sys
import ezq

logging.basicConfig(level=logging.WARNING, format="%(levelname)s:%(name)s:%(message)s", stream=sys.stdout)
logging.getLogger("app.db").setLevel(logging.DEBUG)

def query(table):
    logging.getLogger("app.db").debug("select from %s", table)
    logging.getLogger("app.web").info("not shown %s", table)
    logging.getLogger("app.web").warning("slow %s", table)
    return table.upper()

results = list(ezq.map(query, ["users", "orders"], num=1))
print("done", results)
""",
    """
DEBUG:app.db:select from users
WARNING:app.web:slow users
DEBUG:app.db:select from orders
WARNING:app.web:slow orders
done ['USERS', 'ORDERS']
""",
)

add_script(
    "logging_custom_formatter_class",
    r"""
import logging
import sys
import ezq

class Shouty(logging.Formatter):
    def format(self, record):
        return "!! " + super().format(record).upper()

handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(Shouty("%(name)s %(message)s"))
log = logging.getLogger("worker")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def task(x):
    log.info("step %d", x)
    return x

results = list(ezq.map(task, [1, 2], num=1))
print("done", results)
""",
    """
!! WORKER STEP 1
!! WORKER STEP 2
done [1, 2]
""",
)

add_script(
    "logging_filehandler",
    r"""
import logging
import ezq

handler = logging.FileHandler("run.log", mode="w")
handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
log = logging.getLogger("job")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def work(x):
    log.info("working on %d", x)
    return x + 1

log.info("start")
results = list(ezq.map(work, range(3), num=1))
log.info("end %s", results)
handler.close()
with open("run.log") as f:
    print(f.read(), end="")
""",
    """
INFO job start
INFO job working on 0
INFO job working on 1
INFO job working on 2
INFO job end [1, 2, 3]
""",
)

# ---------------------------------------------------------------- things that can't be copied

add_script(
    "global_open_file_refused",
    r"""
import ezq

log = open("out.txt", "w")
log.write("before the map\n")
log.flush()

def task(x):
    log.write(f"{x}\n")
    return x

try:
    print(list(ezq.map(task, range(3), num=2)))
except TypeError as e:
    print("TypeError", "'log'" in str(e))
log.close()
with open("out.txt") as f:
    print(f.read(), end="")
""",
    """
[0, 1, 2]
before the map
""",
    by_value="TypeError True\nbefore the map\n",
)

add_script(
    "global_socket_refused",
    r"""
import socket
import ezq

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

def task(x):
    return sock.family == socket.AF_INET and x

try:
    print(list(ezq.map(task, range(3), num=2)))
except TypeError as e:
    print("TypeError", "'sock'" in str(e))
sock.close()
""",
    """
[0, 1, 2]
""",
    by_value="TypeError True\n",
)

add_script(
    "global_sqlite_connection_refused",
    r"""
import sqlite3
import ezq

db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
db.executemany("insert into t values (?)", [(1,), (2,)])

def task(x):
    return db.execute("select count(*) from t").fetchone()[0] + x

try:
    print(list(ezq.map(task, range(3), num=2)))
except TypeError as e:
    print("TypeError", "'db'" in str(e))
print(db.execute("select sum(x) from t").fetchone()[0])
""",
    """
[2, 3, 4]
3
""",
    by_value="TypeError True\n3\n",
)

# ---------------------------------------------------------------- everyday misc

add_script(
    "pathlib_paths_as_items",
    r"""
from pathlib import Path, PurePosixPath
import ezq

def describe(p):
    return p.name, p.suffix, p.parent.as_posix(), p.with_suffix(".bak")

paths = [PurePosixPath("data/in/a.csv"), PurePosixPath("notes.txt")]
for name, suffix, parent, bak in ezq.map(describe, paths, num=2):
    print(name, suffix, parent, bak, isinstance(bak, PurePosixPath))
Path("sub").mkdir()
Path("sub/x.txt").write_text("hello")
print(list(ezq.map(lambda p: p.read_text().upper(), [Path("sub/x.txt")], num=2)))
print([p.name for p in ezq.map(Path.resolve, [Path("sub")], num=2)])
""",
    """
a.csv .csv data/in data/in/a.bak True
notes.txt .txt . notes.bak True
['HELLO']
['sub']
""",
)

add_script(
    "chdir_then_relative_files",
    r"""
import os
import ezq

def read(name):
    with open(name) as f:
        return f.read().strip()

os.makedirs("data", exist_ok=True)
with open("top.txt", "w") as f:
    f.write("top")
with open("data/inner.txt", "w") as f:
    f.write("inner")
print(list(ezq.map(read, ["top.txt"], num=2)))
os.chdir("data")
print(list(ezq.map(read, ["inner.txt"], num=2)), os.path.basename(os.getcwd()))
print(list(ezq.map(lambda _: os.path.basename(os.getcwd()), [0], num=2)))
""",
    """
['top']
['inner'] data
['data']
""",
)

add_script(
    "environment_variable_set_by_script",
    r"""
import os
import ezq

def mode(_):
    return os.environ.get("APP_MODE", "unset")

os.environ["APP_MODE"] = "test"
print(list(ezq.map(mode, [0], num=2)))
os.environ["APP_MODE"] = "prod"
print(list(ezq.map(mode, [0], num=2)))
del os.environ["APP_MODE"]
print(list(ezq.map(mode, [0], num=2)))
""",
    """
['test']
['prod']
['unset']
""",
)

add_script(
    "random_seed_in_parent",
    r"""
import random
import ezq

random.seed(0)
data = [random.randint(1, 100) for _ in range(5)]

def square(x):
    return x * x

print(data, list(ezq.map(square, data, num=2)))
rng = random.Random(42)
print(list(ezq.map(lambda r: r.randint(1, 6), [rng], num=2)), rng.randint(1, 6))
""",
    """
[50, 98, 54, 6, 34] [2500, 9604, 2916, 36, 1156]
[6] 6
""",
)

add_script(
    "json_in_task",
    r"""
import json
import ezq

def enrich(text):
    record = json.loads(text)
    record["tags"] = sorted(set(record.get("tags", [])))
    record["n"] = len(record["tags"])
    return json.dumps(record, sort_keys=True)

rows = ['{"id": 1, "tags": ["b", "a", "b"]}', '{"id": 2}']
for line in ezq.map(enrich, rows, num=2):
    print(line)
""",
    """
{"id": 1, "n": 2, "tags": ["a", "b"]}
{"id": 2, "n": 0, "tags": []}
""",
)

add_script(
    "itertools_in_task",
    r"""
import itertools
import ezq

def stats(n):
    pairs = list(itertools.combinations(range(n), 2))
    running = list(itertools.accumulate(range(1, n + 1)))
    groups = [(k, len(list(g))) for k, g in itertools.groupby(sorted("mississippi"[:n]))]
    return len(pairs), running, groups

for row in ezq.map(stats, [3, 5], num=2):
    print(row)
print(list(ezq.map(sum, [(0, 1, 2), (3, 4, 5), (6,)], num=2)))
""",
    """
(3, [1, 3, 6], [('i', 1), ('m', 1), ('s', 1)])
(10, [1, 3, 6, 10, 15], [('i', 2), ('m', 1), ('s', 2)])
[3, 12, 6]
""",
)

add_script(
    "sort_with_script_key_function",
    r"""
import ezq

def by_len_then_alpha(word):
    return (len(word), word)

def normalize(word):
    return word.strip().lower()

def top2(ws):
    return sorted(ws, key=by_len_then_alpha, reverse=True)[:2]

words = list(ezq.map(normalize, [" Pear", "fig", "Apple ", "kiwi"], num=2))
print(sorted(words, key=by_len_then_alpha))
print(list(ezq.map(top2, [words], num=2)))
""",
    """
['fig', 'kiwi', 'pear', 'apple']
[['apple', 'pear']]
""",
)

add_script(
    "datetime_items",
    r"""
import datetime as dt
import ezq

def next_monday(d):
    return d + dt.timedelta(days=(7 - d.weekday()) % 7 or 7)

days = [dt.date(2024, 1, 1), dt.date(2024, 2, 29)]
print([d.isoformat() for d in ezq.map(next_monday, days, num=2)])
print(list(ezq.map(lambda t: t.strftime("%H:%M"), [dt.datetime(2024, 5, 6, 7, 8)], num=2)))
""",
    """
['2024-01-08', '2024-03-04']
['07:08']
""",
)

add_script(
    "fractions_in_task",
    r"""
from fractions import Fraction
import ezq

def harmonic(n):
    return sum(Fraction(1, k) for k in range(1, n + 1))

res = list(ezq.map(harmonic, [1, 4, 6], num=2))
print([str(f) for f in res], sum(res) == Fraction(1) + Fraction(25, 12) + Fraction(49, 20))
""",
    """
['1', '25/12', '49/20'] True
""",
)

add_script(
    "hashlib_in_task",
    r"""
import hashlib
import ezq

def digest(data):
    return hashlib.sha256(data).hexdigest()[:12]

print(list(ezq.map(digest, [b"", b"abc"], num=2)))
""",
    """
['e3b0c44298fc', 'ba7816bf8f01']
""",
)

add_script(
    "csv_in_task",
    r"""
import csv
import io
import ezq

def parse(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    return [(r["name"], int(r["n"]) * 2) for r in rows]

docs = ["name,n\na,1\nb,2\n", 'name,n\n"c, d",3\n']
print(list(ezq.map(parse, docs, num=2)))
""",
    """
[[('a', 2), ('b', 4)], [('c, d', 6)]]
""",
)

add_script(
    "string_template_global",
    r"""
import string
import ezq

TEMPLATE = string.Template("Dear $name, you owe $$${amount}.")

def letter(args):
    name, amount = args
    return TEMPLATE.substitute(name=name, amount=amount)

print(list(ezq.map(letter, [("Ann", 5), ("Bob", 120)], num=2)))
""",
    """
['Dear Ann, you owe $5.', 'Dear Bob, you owe $120.']
""",
)

add_script(
    "functools_reduce_operator",
    r"""
import functools
import operator
import ezq

def product(xs):
    return functools.reduce(operator.mul, xs, 1)

print(list(ezq.map(product, [[1, 2, 3], [], [5, 5]], num=2)))
""",
    """
[6, 1, 25]
""",
)

# ---------------------------------------------------------------- more everyday shapes

add_script(
    "generic_subclass_parametrized",
    r"""
from dataclasses import dataclass
from typing import Generic, TypeVar
import ezq

K = TypeVar("K")
V = TypeVar("V")

class Stack(Generic[V]):
    def __init__(self):
        self.items: list[V] = []

    def push(self, item: V) -> "Stack[V]":
        self.items.append(item)
        return self

class IntStack(Stack[int]):
    def total(self) -> int:
        return sum(self.items)

@dataclass
class Pair(Generic[K, V]):
    key: K
    value: V

def fill(n):
    s = IntStack()
    for i in range(n):
        s.push(i)
    return s, Pair(f"n{n}", s.total())

for s, p in ezq.map(fill, [3, 4], num=2):
    print(type(s).__name__, s.items, s.total(), isinstance(s, Stack), p, isinstance(p, Pair))
""",
    """
IntStack [0, 1, 2] 3 True Pair(key='n3', value=3) True
IntStack [0, 1, 2, 3] 6 True Pair(key='n4', value=6) True
""",
)

add_script(
    "init_subclass_list_registry",
    r"""
import ezq

class Plugin:
    registry = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Plugin.registry.append(cls.__name__)

class Csv(Plugin):
    pass

class Json(Plugin):
    pass

def names(_):
    return list(Plugin.registry)

print(list(ezq.map(names, [0], num=2)))
print(list(ezq.map(lambda p: type(p).__name__, [Csv(), Json()], num=2)), Plugin.registry)
print(list(ezq.map(names, [0], num=2)))
""",
    """
[['Csv', 'Json']]
['Csv', 'Json'] ['Csv', 'Json']
[['Csv', 'Json']]
""",
)

add_script(
    "dataclass_inheritance_kw_only",
    r"""
from dataclasses import dataclass, field
import ezq

@dataclass
class Animal:
    name: str
    legs: int = 4

    def __post_init__(self):
        self.name = self.name.title()

@dataclass(kw_only=True)
class Pet(Animal):
    owner: str
    tags: list = field(default_factory=lambda: ["pet"])

    def __post_init__(self):
        super().__post_init__()
        self.tags = self.tags + [self.owner]

def adopt(args):
    name, owner = args
    return Pet(name, owner=owner)

pets = list(ezq.map(adopt, [("rex", "ann"), ("tom", "bob")], num=2))
for pet in pets:
    print(pet)
print(isinstance(pets[0], Animal), pets[1] == Pet("Tom", owner="bob", tags=["pet"]))
""",
    """
Pet(name='Rex', legs=4, owner='ann', tags=['pet', 'ann'])
Pet(name='Tom', legs=4, owner='bob', tags=['pet', 'bob'])
True True
""",
)

add_script(
    "total_ordering_class",
    r"""
import functools
import ezq

@functools.total_ordering
class Version:
    def __init__(self, text):
        self.parts = tuple(int(p) for p in text.split("."))

    def __eq__(self, other):
        return self.parts == other.parts

    def __lt__(self, other):
        return self.parts < other.parts

    def __repr__(self):
        return "v" + ".".join(map(str, self.parts))

versions = list(ezq.map(Version, ["1.10", "1.2", "1.2.1"], num=2))
print(sorted(versions), max(versions), versions[1] <= Version("1.2"), versions[0] >= versions[2])
print(list(ezq.map(lambda v: v > Version("1.5"), versions, num=2)))
""",
    """
[v1.2, v1.2.1, v1.10] v1.10 True True
[True, False, False]
""",
)

add_script(
    "dispatch_via_globals_lookup",
    r"""
import ezq

def op_add(a, b):
    return a + b

def op_mul(a, b):
    return a * b

def apply(name, a, b):
    return globals()[f"op_{name}"](a, b)

print(list(ezq.map(apply, ["add", "mul"], [2, 3], [5, 7], num=2)))
""",
    """
[7, 21]
""",
)

add_script(
    "worker_prints_to_stdout",
    r"""
import ezq

def worker(name):
    print(f"hello from {name}")

print("start", flush=True)
w = ezq.run(worker, "w1")
w.join()
print("parent done")
""",
    """
start
hello from w1
parent done
""",
)

add_script(
    "map_task_prints_to_stdout",
    r"""
import ezq

def task(x):
    print(f"task {x}")
    return x * x

print("start")
results = list(ezq.map(task, [1, 2, 3], num=1))
print("done", results)
""",
    """
start
task 1
task 2
task 3
done [1, 4, 9]
""",
)

add_script(
    "worker_runs_in_another_process",
    r"""
import os
import ezq

PARENT = os.getpid()

def elsewhere(_):
    return os.getpid() != PARENT

print(list(ezq.map(elsewhere, [0], num=2)), list(ezq.map(elsewhere, [0], kind="thread", num=2)))
""",
    """
[True] [False]
""",
)

add_script(
    "task_uses_dunder_file_and_name",
    r"""
from pathlib import Path
import ezq

DATA = Path(__file__).resolve().parent / "data"

def load(name):
    here = Path(__file__).resolve().parent
    return (here / "data" / name).read_text().strip(), Path(__file__).name, __name__, (DATA / name).exists()

print(list(ezq.map(load, ["a.txt", "b.txt"], num=2)))
""",
    """
[('alpha', 'main.py', '__main__', True), ('beta', 'main.py', '__main__', True)]
""",
    files={"data/a.txt": "alpha\n", "data/b.txt": "beta\n"},
)

add_script(
    "task_reads_sys_argv",
    r"""
import sys
import ezq

def task(x):
    verbose = "-v" in sys.argv
    return x, verbose, sys.argv[1:]

print(list(ezq.map(task, [1], num=2)))
""",
    """
[(1, True, ['-v', 'data'])]
""",
    run=["main.py", "-v", "data"],
)

add_script(
    "dataclass_lambda_default_factory",
    r"""
from dataclasses import dataclass, field
import ezq

@dataclass
class Settings:
    name: str
    options: dict = field(default_factory=lambda: {"retries": 3, "verbose": False})

def make(name):
    s = Settings(name)
    s.options["verbose"] = name.startswith("v")
    return s

for settings in ezq.map(make, ["quiet", "vocal"], num=2):
    print(settings)
print(Settings("x"))
""",
    """
Settings(name='quiet', options={'retries': 3, 'verbose': False})
Settings(name='vocal', options={'retries': 3, 'verbose': True})
Settings(name='x', options={'retries': 3, 'verbose': False})
""",
)

add_script(
    "enum_functional_api",
    r"""
from enum import Enum, IntEnum
import ezq

Color = Enum("Color", ["RED", "GREEN", "BLUE"])
Level = IntEnum("Level", {"LOW": 1, "HIGH": 9})

def describe(c):
    return c, c.name, c.value, Level.HIGH if c is Color.BLUE else Level.LOW

for c, name, value, level in ezq.map(describe, list(Color), num=2):
    print(c is Color[name], name, value, level is Level(int(level)), int(level))
""",
    """
True RED 1 True 1
True GREEN 2 True 1
True BLUE 3 True 9
""",
)

add_script(
    "custom_reduce_class",
    r"""
import ezq

class Celsius:
    instances = 0

    def __init__(self, degrees):
        self.degrees = round(degrees, 1)

    def __reduce__(self):
        return (Celsius, (self.degrees,))

    def __repr__(self):
        return f"{self.degrees}C"

def warm(c):
    return Celsius(c.degrees + 1.25)

print(list(ezq.map(warm, [Celsius(20), Celsius(-3.04)], num=2)))
""",
    """
[21.2C, -1.8C]
""",
)


def run_user_script(script: UserScript, method: str, folder: Path) -> tuple[str, str]:
    """Run `script` in `folder` under `method`: what it prints, and its errors (or its exit code)."""
    for path, content in script.files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(content)
    env = dict(os.environ, PYTHONPATH=str(HERE), EZQ_TEST_START_METHOD=method)
    done = subprocess.run(
        [sys.executable, *script.run], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    return done.stdout, done.stderr if done.returncode == 0 else f"exit code {done.returncode}\n{done.stderr}"


@needs_dill
@pytest.mark.parametrize("name", CORPUS)
def test_a_script_gives_what_it_gives_under_fork(name: str, tmp_path: Path) -> None:
    script = CORPUS[name]
    outputs = {}
    for method in ALL_METHODS:
        (tmp_path / method).mkdir()
        outputs[method], errors = run_user_script(script, method, tmp_path / method)
        assert "exit code" not in errors, f"{method}: {errors}"
    assert outputs["fork"] == script.want, "expected what the script says it prints under fork"
    for method in ("spawn", "forkserver"):
        want = outputs["fork"] if script.by_value is None else script.by_value
        assert outputs[method] == want, f"expected under {method} what fork gives"


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
    before = set(workers_alive())
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
        assert set(workers_alive()) <= before, "expected no worker of this map left"


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
                        distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
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
