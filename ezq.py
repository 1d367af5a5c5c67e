"""Simple wrappers for multiprocessing and threading: queues, workers and a parallel map.

>>> import ezq
>>> list(ezq.map(abs, [-1, 2, -3], kind="thread"))
[1, 2, 3]

One file, one optional dependency (`dill`, for lambdas and closures in process
workers). Copy it into your project if you like.

How a process queue works
-------------------------
A `Q()` keeps its messages in the process that created it (its "home", usually
the main process). A process worker gets one pipe up to its parent (its
"uplink", shared by all the queues it was given) and one pipe down per queue.
One thread per parent process, the hub, reads every uplink::

    worker A                        home process                     worker B
    q.put(x) --pickle--> [uplink A] --> hub --> frames of q --> [downlink B] --> for msg in q:
                                         ^     (a deque)                         (when empty, asks
    q.put(y) in the home --pickle--------+--------^                               "D n" on uplink B)

- A `put` pickles at the call (so a bad value raises there) and writes to the
  worker's uplink. The hub always drains uplinks into memory, so a worker never
  blocks on a full pipe and can always exit: the "join before drain" deadlock
  of `multiprocessing.Queue` cannot happen.
- A reader asks the home for messages only when it has none, and the home
  answers with one batch. Batches grow while the reader consumes quickly and
  shrink to one message when each message takes long, so slow work stays
  balanced between workers and fast work moves in bulk. A batch never holds
  more than one end marker, and a reader that stops early hands unread
  messages back, so every message reaches exactly one reader.
- No pipe is shared between processes, so no cross-process lock exists that a
  killed worker could leave locked.

How process workers start
-------------------------
Under fork, a worker is a fork of the caller and sees its state at the call.
Under spawn and forkserver, ezq starts (once per process, on first use) its
own fork server: a fresh interpreter that has imported ezq and dill and
nothing of the user's script, and forks each worker on request. The script
never runs again; what a task needs of it travels by value (see "Serialization").

How `map` works
---------------
`map` does not use `Q`: it sends chunks of input straight to each worker over
its own pipes (never blocking on a write, so it can't deadlock against a
worker's results), keeps a bounded window of chunks in flight, sizes chunks so
each takes about 10 ms of work on processes (1 ms on threads, 100 ms on an
executor), and feeds only as many workers as keep up with the caller. With
`executor=`, the same scheduler submits chunks to an executor.

NOTE: this module defines `map`, which shadows the builtin inside this file;
internally we use `builtins.map` where the builtin is meant.
"""

from __future__ import annotations

import _thread

# std
import abc
import atexit
import builtins
import collections
import contextlib
import enum
import functools
import heapq
import importlib
import importlib.util
import io
import itertools
import json
import marshal
import math
import mmap
import multiprocessing
import multiprocessing.process
import multiprocessing.spawn
import os
import pickle
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings
import weakref
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import Literal
from typing import NoReturn
from typing import Protocol
from typing import TypeVar
from typing import cast

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Executor
    from concurrent.futures import Future

__version__ = "4.2.3"
__all__ = (
    "END_MSG",
    "IS_MACOS",
    "NUM_CPUS",
    "NUM_THREADS",
    "Kind",
    "Msg",
    "Q",
    "Worker",
    "WorkerError",
    "__version__",
    "map",
    "run",
    "run_thread",
)

## Constants ##


def _count_cpus() -> int:
    """CPUs this process may run on (the affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


NUM_CPUS: int = _count_cpus()
"""Number of CPUs this process may use: the default number of process workers."""

NUM_THREADS: int = min(32, NUM_CPUS + 4)
"""Default number of thread workers (the same rule as `ThreadPoolExecutor`)."""

IS_MACOS: bool = sys.platform == "darwin"
"""`True` on macOS, where processes start with "spawn" by default."""

Kind = Literal["process", "thread"]
"""Kinds of workers and queues: `"process"` or `"thread"`."""

if TYPE_CHECKING:  # pragma: no cover
    # A message type defaults to Any (PEP 696), so `Q()` needs no annotation.
    # Checkers know typing_extensions; at run time ezq needs nothing of it.
    from typing_extensions import TypeVar as TypeVarWithDefault

    T = TypeVarWithDefault("T", default=Any)
else:
    T = TypeVar("T")
R = TypeVar("R")

## Messages ##


@dataclass
class Msg(Generic[T]):
    """A message on a `Q`: the data, and optionally a kind and an order.

    >>> ezq.Msg("hello")
    Msg(data='hello', kind='', order=0)
    """

    data: T = None  # type: ignore[assignment]
    """What the message carries."""

    kind: str = ""
    """Optional label, to send several kinds of work down one queue. `"END"` ends a queue."""

    order: int = 0
    """Optional position, used by `Q.sorted()` and `Q.items(sort=True)`."""


END_MSG: Msg[Any] = Msg(kind="END")
"""The message that ends a queue: iteration stops when it is read."""

_END = END_MSG.kind


class WorkerError(RuntimeError):
    """A worker failed in a way that can't be raised as its own exception.

    Raised when a worker process dies (a non-zero exit code or a signal, for
    example the OOM killer's SIGKILL), and in place of an exception that could
    not be pickled (the message then names its type, and `__cause__` holds the
    worker's traceback).
    """

    def __init__(self, message: str, name: str | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        """Name of the worker that failed, if known."""
        self.exitcode = exitcode
        """Exit code of the worker process: negative for a signal; `None` if it didn't exit."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.name, self.exitcode))


## Queues ##


class Q(Generic[T]):
    """A queue of `Msg` between workers: `Q()` for processes, `Q("thread")` for threads.

    A process queue pickles every message (with `dill` where `pickle` can't) and
    can be given to process workers as an argument of `run` (or captured by a
    `map` task). A thread queue never pickles, so it can carry locks, sockets
    or database connections between thread workers, but not to processes.

    Messages are read by iterating: `for msg in q` yields messages until one
    of kind `"END"`, which `end()` and `stop()` put. Any number of workers may
    read and write the same queue; each message goes to exactly one reader.

    >>> q = ezq.Q("thread")
    >>> q.put(1).put(2).end().qsize()
    3
    >>> [msg.data for msg in q]
    [1, 2]
    """

    def __init__(self, kind: Kind = "process") -> None:
        """Create a queue; `kind` is `"process"` (the default) or `"thread"`.

        Raises:
            ValueError: `kind` is neither `"process"` nor `"thread"`.
        """
        if kind == "process":
            self._impl: _Home | _Remote | _Local = _Home()
        elif kind == "thread":
            self._impl = _Local()
        else:
            raise ValueError(f"Q kind must be 'process' or 'thread', not {kind!r}")
        self.kind: Kind = kind
        """`"process"` or `"thread"`."""
        self._cache: list[Msg[T]] | None = None
        self._ended: weakref.WeakSet[Worker] = weakref.WeakSet()  # workers stop() put an end marker for

    def __repr__(self) -> str:
        return f"<ezq.Q {self.kind!r} qsize={self.qsize()}>"

    def put(self, data: T | Msg[T] = None, *, kind: str = "", order: int = 0) -> Q[T]:  # type: ignore[assignment]
        """Put a message on the queue; return the queue, so calls can be chained.

        `data` may be a ready-made `Msg`, which is put as it is. For a process
        queue the message is pickled here, so a value that can't be sent raises
        here and the queue stays usable.

        Raises:
            TypeError: `kind` is not a str, `order` is not an int, or (for a
                process queue) `data` cannot be pickled, even by `dill`.
        """
        if isinstance(data, Msg):
            msg = cast("Msg[T]", data)
            kind, order, data = msg.kind, msg.order, msg.data
        _check_message(kind, order)
        self._impl.put(data, kind, order)
        return self

    def end(self) -> Q[T]:
        """Put the end marker (`END_MSG`): one reader stops when it reads it."""
        return self.put(END_MSG)

    def __iter__(self) -> Iterator[Msg[T]]:
        """Yield messages as they arrive, until an end marker (which is not yielded)."""
        get = self._impl.get
        try:
            while True:
                msg = get()
                if msg.kind == _END:
                    return
                yield msg
        finally:
            self._impl.release()

    def sorted(self, start: int = 0) -> Iterator[Msg[T]]:
        """Yield messages in `order`, starting at `start`, until an end marker.

        A message that arrives early waits until the ones before it have been
        yielded. If the queue ends while some are still waiting (there was a
        gap in the numbers), they are yielded in order at the end. A message
        whose `order` was already passed (a duplicate) is yielded at once.
        If you stop early (`break`), the messages still waiting go back on
        the queue.

        >>> q = ezq.Q("thread")
        >>> for order in [1, 0, 3]:  # 2 never comes
        ...     _ = q.put(order=order)
        >>> [msg.order for msg in q.end().sorted()]
        [0, 1, 3]
        """
        expected = start
        waiting: list[tuple[int, int, Msg[T]]] = []  # a heap of (order, arrival, msg)
        arrival = itertools.count()
        try:
            for msg in self:
                if msg.order < expected:
                    yield msg
                    continue
                heapq.heappush(waiting, (msg.order, next(arrival), msg))
                while waiting and waiting[0][0] == expected:
                    yield heapq.heappop(waiting)[2]
                    expected += 1
            while waiting:
                yield heapq.heappop(waiting)[2]
        finally:  # stopped early (a break): what was held back goes back on the queue
            while waiting:
                self.put(heapq.heappop(waiting)[2])

    def items(self, cache: bool = False, sort: bool = False) -> Iterator[Msg[T]]:
        """End the queue and yield the messages that are on it.

        With `cache=True` the messages are kept, so calling `items()` again
        yields the same messages (the queue is read only once). With
        `sort=True` they come sorted by `order`.

        >>> out = ezq.Q()
        >>> _ = out.put("b", order=1).put("a", order=0)
        >>> [msg.data for msg in out.items(sort=True)]
        ['a', 'b']
        """
        if cache:
            if self._cache is None:
                self._cache = list(self.end())
            msgs: Iterable[Msg[T]] = self._cache
        else:
            msgs = self.end()
        if sort:
            return iter(builtins.sorted(msgs, key=attrgetter("order")))
        return iter(msgs)

    def stop(self, workers: Worker | Iterable[Worker], timeout: float | None = None) -> Q[T]:
        """End the queue once per worker, then wait for all the workers to finish.

        With a `timeout` (seconds), wait at most that long: if some workers
        are still running then, raise `TimeoutError` naming them and leave
        them running (`Worker.terminate()` or `kill()` stops a process
        worker). Calling `stop` again waits again, and puts no more end
        markers for the workers it has ended already.

        Raises (after every worker has finished):
            Exception: the exception a worker's function raised, with the
                worker's traceback as its `__cause__`. If several failed, the
                first, with a note saying how many.
            WorkerError: a worker process died (non-zero exit code or signal).
                This is raised as soon as it is noticed; the other process
                workers in `workers` are terminated first, as their queue may
                have lost the messages the dead worker held.
            TimeoutError: workers still ran after `timeout` seconds.
            TypeError / ValueError: `workers` is not a `Worker` or an
                iterable of them, or a bad `timeout`.
        """
        # Q and Worker work together here; the helpers are Worker's private business.
        group = Worker._group(workers)  # pyright: ignore[reportPrivateUsage]
        limit = _check_timeout(timeout)
        for worker in group:
            # stopped twice: no stale end marker
            if not worker._done and worker not in self._ended:  # pyright: ignore[reportPrivateUsage]
                self.end()
                self._ended.add(worker)
        Worker._join_all(group, limit)  # pyright: ignore[reportPrivateUsage]
        return self

    def qsize(self) -> int:
        """Approximate number of messages waiting (end markers included)."""
        return self._impl.qsize()

    def empty(self) -> bool:
        """`True` if no message is waiting (approximate, like `qsize()`)."""
        return self.qsize() == 0

    def __reduce__(self) -> tuple[Any, ...]:
        # A process queue travels only to a worker being started, which gets a
        # private pair of pipes to the home (see _Attach). Anywhere else there
        # would be no pipe to talk through.
        if self.kind == "thread":
            raise TypeError("a Q('thread') can't be sent to a process worker; use Q() (a process queue)")
        attach = _Attach.current()
        if attach is None or not isinstance(self._impl, _Home):
            raise TypeError(
                "a Q can be sent to a process worker only as an argument of ezq.run() "
                "(or captured by an ezq.map task), not inside a message"
            )
        return (_attached_q, (attach.add(self._impl),))

    @classmethod
    def _remote(cls, remote: _Remote) -> Q[Any]:
        """The worker's side of a process queue that its parent sent it."""
        q: Q[Any] = cls.__new__(cls)
        q._impl, q.kind, q._cache, q._ended = remote, "process", None, weakref.WeakSet()
        return q


## Workers ##


class Worker:
    """A function running in its own process or thread, started by `run` or `run_thread`.

    Use `Q.stop()` or `join()` to wait for it; both raise if the function
    raised (or the process died). A worker that is never waited for is
    stopped when the program exits: process workers are terminated and thread
    workers are daemon threads.
    """

    # States: running (_done False), then done (_done True, _handle closed, and
    # _error set if it failed). A process worker's report (b"" or its
    # exception) may be read before its exit code (_reported). _collect() moves
    # from one to the other, under _lock, in whichever thread calls it.

    def __init__(self, name: str) -> None:
        """Use `Worker.process` / `Worker.thread` (or `run` / `run_thread`) instead."""
        self.name = name
        """The worker's name, used in error messages."""
        self._process: _Process | None = None
        self._link: _Link | None = None  # a process worker's pipes for its queues
        self._thread: threading.Thread | None = None
        self._handle: Connection | None = None  # readable when the worker has news
        self._done = False
        self._reported = False  # a process worker's report (b"" or an exception) was read
        self._error: BaseException | None = None
        # _collect may run in several threads at once (join() in two threads,
        # stop() while another joins): it reads the report and closes the
        # handle once, under this lock.
        self._lock = threading.Lock()

    @classmethod
    def process(cls, task: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
        """Start `task(*args, **kwargs)` in a new process (a daemon) and return its `Worker`.

        The task and its arguments are pickled (with `dill` where `pickle`
        can't), so lambdas and closures work with every start method. Process
        queues (`Q()`) among the arguments connect the worker to their home.

        Raises:
            TypeError: `task` is not callable, or an argument can't be pickled.
            RuntimeError: called inside a process worker (process workers can
                start thread workers, but not process workers).
        """
        _check_callable(task)
        _check_can_start_processes()
        worker = cls(_worker_name(task))
        payload = _Payload.dump((task, args, kwargs), what="the task or its arguments")
        status_r, status_w = multiprocessing.Pipe(duplex=False)
        worker._handle = status_r
        worker._process, worker._link = payload.start(_process_worker, (status_w,), worker.name)
        return worker

    @classmethod
    def thread(cls, task: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
        """Start `task(*args, **kwargs)` in a new (daemon) thread and return its `Worker`.

        Raises:
            TypeError: `task` is not callable.
        """
        _check_callable(task)
        worker = cls(_worker_name(task))
        done_r, done_w = multiprocessing.Pipe(duplex=False)
        worker._handle = done_r
        worker._thread = threading.Thread(
            target=worker._run_in_thread, args=(task, args, kwargs, done_w), name=worker.name, daemon=True
        )
        worker._thread.start()
        return worker

    def _run_in_thread(self, task: Callable[..., Any], args: Any, kwargs: Any, done: Connection) -> None:
        try:
            task(*args, **kwargs)
        except BaseException as exc:  # reported by join() / stop()
            self._error = exc
        finally:
            done.send_bytes(b"")
            done.close()

    def __repr__(self) -> str:
        kind = "process" if self._process else "thread"
        return f"<ezq.Worker {kind} {self.name!r} alive={self.is_alive()}>"

    @property
    def pid(self) -> int | None:
        """Process id of a process worker; `None` for a thread worker."""
        return self._process.pid if self._process else None

    @property
    def exitcode(self) -> int | None:
        """Exit code of a finished process worker (negative: killed by that signal); else `None`."""
        return self._process.exitcode if self._process else None

    def is_alive(self) -> bool:
        """`True` while the worker's function is running."""
        if self._process:
            return self._process.is_alive()
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the worker finishes (or `timeout` seconds pass).

        If the wait is interrupted (Ctrl-C), a process worker is terminated
        before the exception goes on.

        Raises:
            Exception: the exception the worker's function raised, with the
                worker's traceback as its `__cause__` for a process worker.
            WorkerError: the worker process died (non-zero exit code or signal).
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        try:
            self._collect()  # it may have finished already: then even timeout=0 says how
            while not self._done:
                _check_hub()  # a worker may wait on it to take what it puts
                left = deadline - time.monotonic()
                if left <= 0:
                    return  # timed out
                if _wait_any(self._waitables(), min(left, _TICK)):
                    self._collect()
        except BaseException:  # Ctrl-C: take the worker down with us
            self._terminate()
            raise
        if self._error is not None:
            raise self._error

    def terminate(self) -> None:
        """Ask a process worker to stop (SIGTERM); `join()` then raises `WorkerError` naming the signal.

        The worker's function may handle SIGTERM and go on; `kill()` can't be handled.

        Raises:
            TypeError: for a thread worker: Python can't stop a thread from outside.
        """
        self._signal("terminate")

    def kill(self) -> None:
        """Stop a process worker now (SIGKILL); `join()` then raises `WorkerError` naming the signal.

        Raises:
            TypeError: for a thread worker: Python can't stop a thread from outside.
        """
        self._signal("kill")

    def _signal(self, how: Literal["terminate", "kill"]) -> None:
        if self._process is None:
            raise TypeError(f"worker {self.name!r} is a thread: Python can't stop a thread from outside")
        _under(self._lock, self._signal_locked, self._process, how)

    def _signal_locked(self, process: _Process, how: Literal["terminate", "kill"]) -> None:
        if not self._done:  # else its pid may be another process's by now
            getattr(process, how)()

    def _waitables(self) -> list[int]:
        """File descriptors that become readable when this worker has news."""
        return _under(self._lock, self._waitables_locked)  # not while another thread closes the handle

    def _waitables_locked(self) -> list[int]:
        if self._done or self._handle is None:
            return []
        handle = [] if self._reported else [self._handle.fileno()]
        return handle + ([self._process.sentinel] if self._process else [])

    def _collect(self) -> None:
        """Read what the worker has reported; mark it done if it has finished."""
        _under(self._lock, self._collect_locked)

    def _collect_locked(self) -> None:
        handle = self._handle
        if self._done or handle is None:
            return
        if self._thread is not None:
            if _readable(handle.fileno()):
                self._thread.join()
                self._finish()
            return
        process = self._process
        assert process is not None
        # The exit code first: once the process has exited, its report (if
        # any) is in the pipe. Read the other way round, a worker that reports
        # and exits between the two reads would look as if it died.
        code = process.exitcode
        if not self._reported and (code is not None or _readable(handle.fileno())):
            try:
                report = handle.recv_bytes()
            except (EOFError, OSError):  # it exited without a word
                report = b""
            if report:
                self._error = _unpack_exception(report, f"raised in worker {self.name} (pid {process.pid})")
            self._reported = True
        if code is None:
            return
        if self._error is None and code:
            self._error = WorkerError(
                f"worker {self.name} (pid {process.pid}) {_describe_exit(code)}", self.name, code
            )
        self._finish()

    def _finish(self) -> None:
        self._done = True
        _retire(self._link)
        if self._handle is not None:
            self._handle.close()

    def _died(self) -> bool:
        """`True` if this finished process worker died instead of returning or raising."""
        return isinstance(self._error, WorkerError) and self._error.exitcode is not None

    def _terminate(self) -> None:
        """Stop a process worker now (thread workers can't be stopped)."""
        if self._process is not None and not self._done:
            _kill([self._process])
            self._collect()

    @staticmethod
    def _group(workers: object) -> list[Worker]:
        """`workers` as a list: a `Worker`, or an iterable of them (checked: callers may be untyped)."""
        group = [workers] if isinstance(workers, Worker) else workers
        try:
            group = list(cast(Iterable[object], group))
        except TypeError:
            kind = type(workers).__name__
            raise TypeError(f"expected a Worker or an iterable of Workers, not {kind}") from None
        for worker in group:
            if not isinstance(worker, Worker):
                raise TypeError(f"expected a Worker or an iterable of Workers, got a {type(worker).__name__}")
        return cast(list[Worker], group)

    @staticmethod
    def _join_all(workers: list[Worker], timeout: float | None = None) -> None:
        """Wait for every worker (at most `timeout` seconds); raise the first failure (see `Q.stop`)."""
        pending = [w for w in workers if not w._done]
        dead: Worker | None = None
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        try:
            while pending and dead is None:
                _check_hub()
                left = deadline - time.monotonic()
                if left <= 0:
                    names = ", ".join(
                        repr(w.name) + ("" if w.pid is None else f" (pid {w.pid})") for w in pending
                    )
                    raise TimeoutError(f"{len(pending)} worker(s) still running after {timeout} s: {names}")
                _wait_any([h for w in pending for h in w._waitables()], min(left, _TICK))
                for worker in list(pending):
                    worker._collect()
                    if worker._done:
                        pending.remove(worker)
                        if dead is None and worker._died():
                            dead = worker
        except TimeoutError:
            raise  # the caller decides what becomes of the workers
        except BaseException:
            for worker in pending:  # Ctrl-C: take the workers down
                worker._terminate()
            raise
        for worker in pending:  # a worker died: take the others down
            worker._terminate()
        if dead is not None:
            error = dead._error
            assert error is not None
            if pending:
                _add_note(error, f"ezq terminated the {len(pending)} other worker(s) being stopped")
            raise error
        failed = [w._error for w in workers if w._error is not None]
        if failed:
            if len(failed) > 1:
                note = f"{len(failed)} of {len(workers)} workers failed; this is the first error"
                _add_note(failed[0], note)
            raise failed[0]


def run(task: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
    """Start `task(*args, **kwargs)` in a process worker (alias of `Worker.process`)."""
    return Worker.process(task, *args, **kwargs)


def run_thread(task: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
    """Start `task(*args, **kwargs)` in a thread worker (alias of `Worker.thread`)."""
    return Worker.thread(task, *args, **kwargs)


## map ##


def map(
    task: Callable[..., R],
    *iterables: Iterable[Any],
    num: int | None = None,
    kind: Kind = "process",
    chunksize: int | None = None,
    ordered: bool = True,
    executor: Executor | None = None,
    timeout: float | None = None,
) -> Iterator[R]:
    """Call `task` on items of `iterables` in parallel and yield the results.

    With several iterables, `task` gets one item of each (as `zip` would give
    them). Input is read lazily, with a bounded number of items in flight, so
    an endless generator is fine; the workers start when the first result is
    asked for and stop when the last one has been yielded (or the iterator is
    closed or dropped).

    Args:
        num: number of workers; default `NUM_CPUS` for processes,
            `NUM_THREADS` for threads. With an `executor`, how many chunks
            may run at once (default `NUM_CPUS`): set it to the executor's
            number of workers.
        kind: `"process"` (for CPU-bound work) or `"thread"` (for I/O).
            Inside a process worker, which can't start processes, a
            process map runs on threads of that worker, so a library that
            calls `ezq.map` works there too.
        chunksize: items sent to a worker at a time. By default it adapts so
            that each chunk takes a few milliseconds.
        ordered: if `False`, yield results as they finish instead of in input order.
        executor: run the chunks on this executor instead (anything with a
            `concurrent.futures`-style `submit(fn, *args)` that returns a
            future: a `ProcessPoolExecutor`, loky's, dask.distributed's
            `client.get_executor()`, mpi4py's `MPIPoolExecutor`...). The task
            is pickled by ezq (with dill where needed), so its workers must be
            able to import ezq. ezq never shuts the executor down; `kind` is
            ignored.
        timeout: seconds one call of `task` may take (default: no limit).
            A call that takes longer raises `TimeoutError` as any task
            error would, naming its input item and worker. In a process
            worker, the call is interrupted (`finally` blocks run; the
            worker's traceback, the `__cause__`, shows where it was stuck)
            and the worker is killed, after a second if the call doesn't
            stop. A thread can't be stopped: the call runs on in its
            daemon thread (which doesn't keep the program from exiting)
            and its result is dropped. With an `executor`, chunks hold one
            item (`chunksize` must be 1 or left out), a call's clock starts
            when it is among the `num` oldest unfinished calls, and a call
            that runs out of time is cancelled only if the executor can
            cancel a running call (`concurrent.futures` can't: it runs on).

    Raises:
        Exception: the first exception a task raised, with its original type
            (and the worker's traceback as `__cause__` for processes), after
            the results before it. The remaining work is cancelled.
        TimeoutError: a call of `task` took longer than `timeout` (after
            the results before it); the remaining work is cancelled.
        WorkerError: a worker process died (the message names its exit code or signal).
        TypeError / ValueError: bad arguments, at the call.

    >>> list(ezq.map(pow, [2, 3, 4], [1, 2, 3], kind="thread"))
    [2, 9, 64]
    """
    _check_callable(task)
    if not iterables:
        raise TypeError("map() needs at least one iterable")
    if kind not in ("process", "thread"):
        raise ValueError(f"map kind must be 'process' or 'thread', not {kind!r}")
    if _state.in_worker and executor is None:
        kind = "thread"  # a process worker can't start processes: run on its threads instead
    num = _check_count("num", num, NUM_CPUS if kind == "process" or executor else NUM_THREADS)
    fixed = None if chunksize is None else _check_count("chunksize", chunksize, 1)
    limit = _check_timeout(timeout)
    if limit is not None and executor is not None:
        if fixed not in (None, 1):
            raise ValueError(f"with an executor, timeout needs chunksize=1 (ezq times futures), not {fixed}")
        fixed = 1
    first, *others = iterables
    star = bool(others)
    items = _Input(first, others)
    # Check and pickle now, so that mistakes raise here; start workers only
    # when the first result is asked for (see _run_map).
    start: Callable[[], _Pool]
    if executor is not None:
        if not callable(getattr(executor, "submit", None)):
            raise TypeError(
                f"executor must have a submit(fn, *args) method, as in concurrent.futures: {executor!r}"
            )
        task_data = _dumps(task, what="the map task", travels=True)
        start = functools.partial(_ExecutorPool, executor, task_data, star, num, limit)
    elif kind == "process":
        start = functools.partial(_ProcessPool, _Payload.dump((task, star), what="the map task"), num, limit)
    else:
        start = functools.partial(_ThreadPool, task, star, num, limit)
    chunks: Generator[list[R], None, None] = _run_map(start, items, fixed, ordered)
    return _Results[R].of(chunks)


class _Results(itertools.chain[R]):
    """What `map` returns: the results of `chunks`, one by one.

    A `chain` hands out each result in C code, where a generator yielding
    them one by one would be resumed for each: for tiny tasks, that resume
    was a third of the main thread's time per item.
    """

    chunks: Generator[list[R], None, None]

    @classmethod
    def of(cls, chunks: Generator[list[R], None, None]) -> _Results[R]:
        results = cast(_Results[R], cls.from_iterable(chunks))
        results.chunks = chunks
        return results

    def close(self) -> None:
        """Stop the map now (dropping it does too): its workers stop, and what they were doing is lost."""
        self.chunks.close()


## Internals ##

## Process queue transport ##
#
# A worker process has one "uplink" pipe to its parent, shared by all the
# queues it was given, and one "downlink" pipe per queue. An uplink frame is
# an 11-byte head (payload length, tag, queue index) and a payload. One thread
# per parent process, the hub, reads every uplink; a downlink carries pickled
# lists of message frames ("batches"), one per request of its reader, each
# framed as on a map pipe (an 8-byte length first, see `_frame_views`).
# Batches are written without blocking; the hub writes what a pipe can't
# take at once (see `_send`).
#
# In its home, a message is kept as a "frame": the pickled (data, kind,
# order) tuple, with b"E" in front for an end marker (a pickle starts with
# b"\x80", so the two can't be confused).

_HEAD = struct.Struct("<QBH")  # payload length (64 bits: any size), tag, queue index
_PUT, _PUT_END, _DEMAND, _RETURN = range(4)  # uplink tags: a message, an end marker, "send me
# batch number b, of up to n frames" (_ASK), frames a reader hands back (a pickled list)
_ASK = struct.Struct("<QI")
_END_TAG = b"E"

_BATCH_BYTES = 1 << 20
"""A batch sent to a reader stops growing after this many bytes."""

_BATCH_MAX = 4096
"""Most frames a reader asks for at once."""

_BATCH_SECONDS = 0.002
"""Readers size their requests so that one batch takes about this long to consume."""

_Frame = bytes | bytearray
"""A message kept in its home: bytes, or a bytearray when it was read straight from a pipe."""

_Sends = list["_Channel"]
"""Channels whose readers were given a batch, to write once no lock is held (see `_send`)."""

_Writing = tuple[list[_Frame], list[memoryview] | None, list[int], int]
"""The batch a reader was given, its frame (`None` until it is pickled), the bytes each
write took, and the batch's number (see `_Remote.inbox`)."""

_Inbox = tuple[int, bytearray, bytearray | None, list[int], "collections.deque[_Frame] | None"]
"""A reader's batch: its number, its frame's length and body as they are read (the
body once the length is known), the bytes each read took, and its frames not read
yet (`None` until the batch is all there)."""


_PLAIN = frozenset({int, float, bool, type(None), str, bytes})
"""Types of message data that `pickle.dumps` takes as they are (see `_encode`)."""

_SMALL = 1 << 16
"""A str or bytes shorter than this is pickled by `pickle.dumps` faster than by the kept
pickler (see `_pickle`); from about 1 MiB on, `pickle.dumps` takes 7x longer."""


def _encode(data: Any, kind: str, order: int) -> bytes:
    # Small plain data skips `_dumps`'s checks and kept pickler, which cost
    # more than the pickling itself (a round trip to a worker pays it twice).
    plain = type(data) in _PLAIN and (type(data) not in (str, bytes) or len(data) < _SMALL)
    if plain and type(kind) is str and type(order) is int:  # (an IntEnum of the script is not plain)
        return pickle.dumps((data, kind, order), protocol=5)
    return _dumps((data, kind, order), what="the message data")


def _decode(frame: _Frame) -> Msg[Any]:
    if frame[:1] == _END_TAG:
        return Msg(*pickle.loads(memoryview(frame)[1:]))
    return Msg(*pickle.loads(frame))


class _Local:
    """The messages of a thread queue: `Msg` objects in a `queue.SimpleQueue`."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Msg[Any]] = queue.SimpleQueue()

    def put(self, data: Any, kind: str, order: int) -> None:
        self._q.put(Msg(data, kind, order))

    def get(self) -> Msg[Any]:
        return self._q.get()

    def release(self) -> None:
        pass

    def qsize(self) -> int:
        return self._q.qsize()


class _Home:
    """The messages of a process queue, kept in the process that created it.

    Invariants (under `lock`): a channel is in `hungry` only while its reader
    waits for a batch and `frames` is empty (else it would have been served);
    each reader has at most one request outstanding.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.forked = False  # set in a forked child: this copy is not the home
        # An RLock, as it knows which thread holds it: Condition.wait releases
        # and retakes it in Python code, so an exception (a signal handler's)
        # raised in a wait may leave it either way (see `get`).
        self.lock = threading.RLock()
        self.ready = threading.Condition(self.lock)  # notified when frames come
        self.frames: collections.deque[_Frame] = collections.deque()
        self.hungry: collections.deque[_Channel] = collections.deque()
        self.channels: list[_Channel] = []
        self.shared_size: _SharedInts | None = None  # kept at len(frames), for qsize() in workers
        _HOMES.add(self)

    def _check_home(self) -> None:
        if self.forked:
            raise RuntimeError(
                f"this Q belongs to process {self.pid}; to use it in a worker, "
                "pass it to ezq.run() as an argument instead of using a global"
            )

    def put(self, data: Any, kind: str, order: int) -> None:
        self._check_home()
        frame = _encode(data, kind, order)
        if kind == _END:
            # Messages that finished workers wrote must come before the end
            # marker, even if the hub has not read them yet.
            if self.channels:
                _hub().flush()
            frame = _END_TAG + frame
        try:
            _send(self.append(frame))
        except BaseException:
            # In the main thread, a signal handler's exception (Ctrl-C, a
            # SIGALRM timeout) may come between any two steps of the above:
            # whatever it interrupted, the hub finishes (see `recover`).
            if self.channels:
                _hub().recover(self)
            raise

    def append(self, frame: _Frame) -> _Sends:
        try:
            self.lock.acquire()  # (not `with`: see _acquire)
            self.frames.append(frame)
            sends = self._dispatch()
            if self.frames:
                self.ready.notify()
            self._resized()
        finally:
            try:
                self.lock.release()
            except RuntimeError:
                pass  # not held: an exception came before it was taken
        return sends

    def get(self) -> Msg[Any]:
        self._check_home()
        try:
            self.lock.acquire()
            while not self.frames:
                _check_hub()
                self.ready.wait(_TICK)
            frame = self.frames.popleft()
            self._resized()
        finally:
            # A Ctrl-C must not leave the lock held (the hub needs it), nor
            # release it twice, nor release it while the hub holds it. A
            # release by a thread that does not hold an RLock raises instead.
            # (One call: a test and a release could be split by an exception.)
            try:
                self.lock.release()
            except RuntimeError:
                pass  # not held: an exception came before it was taken, or in the wait
        return _decode(frame)

    def release(self) -> None:
        pass

    def qsize(self) -> int:
        return len(self.frames)

    def ask(self, channel: _Channel, number: int, n: int) -> _Sends:
        """`channel`'s reader wants its batch `number`, of up to `n` frames.

        A reader that an exception interrupted as it asked asks again: a
        request for a batch it was given already is dropped. With `n` 0, a
        reader that stops reading takes back its request: it gets an empty
        batch, unless it was given that batch already.
        """
        with self.lock:
            if channel.writing is not None and channel.writing[3] >= number:
                return []
            if n == 0:
                if channel in self.hungry:
                    self.hungry.remove(channel)
                channel.writing = ([], None, [], number)
                return [channel]
            channel.demand, channel.wanted = n, number
            if channel not in self.hungry:
                self.hungry.append(channel)
            return self._dispatch()

    def give_back(self, frames: list[_Frame]) -> _Sends:
        """A reader returned frames it did not read: they go first in line."""
        with self.lock:
            self.frames.extendleft(reversed(frames))
            sends = self._dispatch()
            self.ready.notify_all()
            self._resized()
        return sends

    def _dispatch(self) -> _Sends:
        """Give a batch to each waiting reader (call with the lock held).

        No exception can lose a frame here (see `recover`): the batch is
        its reader's (`channel.writing`) before the frames go in, and they
        move in one step, inside C code (list.extend calling popleft through
        itertools.starmap), where no signal handler runs. The
        reader leaves `hungry` last.
        """
        sends: _Sends = []
        frames = self.frames
        while frames and self.hungry:
            channel = self.hungry[0]
            batch: list[_Frame] = []
            channel.writing = (batch, None, [], channel.wanted)
            take = size = 0
            for frame in frames:
                take += 1
                size += len(frame)
                if take == channel.demand or size >= _BATCH_BYTES or frame[:1] == _END_TAG:
                    break  # (one end marker per batch: each reader stops at its own)
            batch.extend(itertools.starmap(frames.popleft, itertools.repeat((), take)))
            self.hungry.popleft()
            sends.append(channel)
        return sends

    def recover(self) -> _Sends:
        """Finish what an exception inside `put` interrupted; the hub calls this.

        Returns the channels whose batch is not all written (the hub writes
        the rest). A reader still in `hungry` with a batch had it: it leaves
        `hungry`, or, if the batch is still empty, waits on.
        """
        with self.lock:
            for channel in list(self.hungry):
                if channel.writing is not None and channel.writing[1] is None:  # given, not yet written
                    if channel.writing[0]:
                        self.hungry.remove(channel)
                    else:
                        channel.writing = None
            self._dispatch()
            if self.frames:
                self.ready.notify_all()
            self._resized()
            return [channel for channel in self.channels if channel.unfinished()]

    def _resized(self) -> None:
        if self.shared_size is not None:
            self.shared_size.value = len(self.frames)

    def open_channel(self) -> tuple[_Channel, tuple[Connection, _SharedInts]]:
        """A channel to a worker about to start, and the ends it gets: its downlink, our size."""
        self._check_home()
        if self.shared_size is None:
            self.shared_size = _SharedInts()
            self.shared_size.value = len(self.frames)
        down_r, down_w = multiprocessing.Pipe(duplex=False)
        channel = _Channel(self, down_w)
        _under(self.lock, self.channels.append, channel)
        return channel, (down_r, self.shared_size)

    def drop(self, channel: _Channel) -> None:
        """Forget a channel whose worker has gone."""
        _under(self.lock, self._drop, channel)

    def _drop(self, channel: _Channel) -> None:
        if channel in self.hungry:
            self.hungry.remove(channel)
        if channel in self.channels:
            self.channels.remove(channel)


def _send(sends: _Sends) -> None:
    """Write the batches given to these channels' readers, with no lock held.

    A write never waits: what a pipe can't take now, the hub thread writes,
    and so does a batch whose reader has gone (the hub gives it back).
    The state of each batch is in its channel, so the hub can also finish
    a batch whose write an exception interrupted (see `_Home.put`).
    """
    for channel in sends:
        rest = channel.send()
        if rest is None or rest:
            _hub().finish([channel])


def _acquire(lock: threading.Lock | _thread.RLock, held: list[bool]) -> None:
    """Take `lock` and note it in `held`, in one step that no exception can split.

    Not `with lock:` where an exception must not leak the lock (in the
    caller's threads, where signal handlers run): from 3.14 on, a handler may
    run just after `with` acquires, before its block is entered, and its
    exception then leaves the lock held. Here the lock is taken inside C code
    (list.extend calling acquire through itertools.starmap).
    """
    held.extend(itertools.starmap(lock.acquire, [()]))


def _under(lock: threading.Lock | _thread.RLock, call: Callable[..., R], *args: Any) -> R:
    """`call(*args)` with `lock` held, which no exception leaves held (see `_acquire`)."""
    held: list[bool] = []
    try:
        _acquire(lock, held)
        return call(*args)
    finally:
        if held:
            lock.release()


class _Channel:
    """The parent's end of one queue of one worker: the downlink to its reader."""

    def __init__(self, home: _Home, down: Connection) -> None:
        self.home = home
        self.down = down  # we write frames on its fd (see _write_frame), without blocking
        self.fd = down.fileno()
        os.set_blocking(self.fd, False)
        self.write_lock = threading.Lock()
        self.demand = 0
        self.wanted = 0  # the number of the batch its reader asked for
        # The batch being written, its frame, and how many bytes of it each
        # write took: one attribute, so that it changes in one step.
        self.writing: _Writing | None = None

    def on_frame(self, tag: int, payload: _Frame) -> _Sends:
        """Handle a frame that came up the worker's uplink for this queue."""
        if tag == _PUT:
            return self.home.append(payload)
        if tag == _PUT_END:
            return self.home.append(_END_TAG + payload)
        if tag == _DEMAND:
            return self.home.ask(self, *_ASK.unpack(payload))
        return self.home.give_back(pickle.loads(payload))

    def send(self) -> list[memoryview] | None:
        """Write the reader's batch as far as the pipe takes it now.

        Returns what is left to write (nothing: all went), or `None` if the reader is gone.
        """
        held: list[bool] = []
        try:
            _acquire(self.write_lock, held)
            return self.write(block=False)
        finally:
            if held:
                self.write_lock.release()

    def unfinished(self) -> bool:
        """`True` if the reader was given a batch that is not all written yet."""
        writing = self.writing
        return writing is not None and (writing[1] is None or bool(_skip(writing[1], sum(writing[2]))))

    def write(self, block: bool) -> list[memoryview] | None:
        """Write the rest of `writing` (call with write_lock held).

        Returns what is left (nothing: all went), or `None` if the reader is gone.
        Several threads may write the same batch (see `_send`): each writes
        only what is left.
        """
        if self.down.closed:
            return None  # and its fd number may be another file's by now
        if self.writing is None:
            return []
        batch, views, written, number = self.writing
        if views is None:
            views = _frame_views(_pickle(batch, "by name"))
            self.writing = (batch, views, written, number)
        try:
            _write_rest(self.fd, views, written, block)
        except BlockingIOError:
            return _skip(views, sum(written))
        except OSError:  # BrokenPipeError, or we already closed the pipe
            return None
        return []

    def take_back(self) -> list[_Frame]:
        """The reader's batch if it never had it all, taken from the channel (call with write_lock held)."""
        batch = self.writing[0] if self.writing is not None and self.unfinished() else []
        self.writing = None
        return batch

    def close(self) -> list[_Frame]:
        """Close the downlink; return the reader's batch if it never had it all."""
        return _under(self.write_lock, self._close)

    def _close(self) -> list[_Frame]:
        self.down.close()
        return self.take_back()


class _Link:
    """The parent's end of a worker's uplink, which carries the frames of all its queues.

    Only the hub thread reads it: there no signal handler runs, whose
    exception between a read and its parse would lose part of the stream.
    """

    def __init__(self, process: _Process, up: Connection, channels: list[_Channel]) -> None:
        self.process = process  # keeps process.sentinel open while the hub polls it
        self.up = up
        self.fd = up.fileno()
        os.set_blocking(self.fd, False)
        self.channels = channels
        self.buffer = bytearray()  # small frames, and the head of the next one
        # A large frame is read straight into a buffer of its size: no copies,
        # and no growing and shrinking of big blocks, which would keep the
        # allocator from giving memory back once the messages are read.
        self.large: tuple[int, int, bytearray, int] | None = None  # tag, index, payload, bytes read

    def read_available(self, sends: _Sends) -> bool:
        """Handle every frame that has arrived; `True` once the worker closed its end.

        A read that leaves room in its buffer has emptied the pipe: we stop
        there rather than read again to be told so. That read would give up
        the GIL, often to the reader we just handed a message, and wait to
        get it back, for a round trip of every message a worker sends.
        """
        while True:
            try:
                if self.large is not None:
                    tag, index, payload, got = self.large
                    view = memoryview(payload)[got:]
                    count = os.readv(self.fd, [view])
                    if count:
                        got += count
                        self.large = None if got == len(payload) else (tag, index, payload, got)
                        if self.large is None:
                            sends += self.channels[index].on_frame(tag, payload)
                        elif count < len(view):
                            return False
                        continue
                else:
                    count = os.readv(self.fd, [_SCRATCH])
                    if count:
                        self.buffer += _SCRATCH[:count]
                        self._parse(sends)
                        if count < len(_SCRATCH):
                            return False
                        continue
            except BlockingIOError:
                return False
            except OSError:
                return True
            return True  # end of file: the worker closed its end

    def _parse(self, sends: _Sends) -> None:
        """Handle the complete frames in `buffer`; start reading a large one."""
        frames: list[tuple[int, int, _Frame]] = []
        start = 0
        with memoryview(self.buffer) as view:
            while len(view) - start >= _HEAD.size:
                size, tag, index = _HEAD.unpack_from(view, start)
                body = start + _HEAD.size
                if size >= _LARGE_FRAME:
                    payload = bytearray(size)
                    got = min(size, len(view) - body)
                    payload[:got] = view[body : body + got]
                    start = body + got
                    if got < size:
                        self.large = (tag, index, payload, got)
                        break
                    frames.append((tag, index, payload))
                    continue
                if len(view) < body + size:
                    break
                frames.append((tag, index, bytes(view[body : body + size])))
                start = body + size
        del self.buffer[:start]
        for tag, index, frame in frames:
            sends += self.channels[index].on_frame(tag, frame)

    def close(self, sends: _Sends) -> None:
        """Close its pipes; batches its reader never had all go back in line."""
        for channel in self.channels:
            channel.home.drop(channel)
            if batch := channel.close():
                sends += channel.home.give_back(batch)
        self.up.close()


_SCRATCH = bytearray(1 << 16)  # the hub reads uplinks through this (under its lock): a pipe's worth
_LARGE_FRAME = 1 << 16
"""Frames this big or bigger are read straight into a buffer of their own (see `_Link`).
Below it, copying through `buffer` costs less than allocating; above it, a copy of
the whole message would cost more than the read."""


class _Hub:
    """The thread that reads every worker's uplink, so that no worker ever waits on a full pipe.

    Lock order: `_Hub.lock`, then `_Home.lock`, then `_Channel.write_lock`,
    never the other way round. A batch is written to its reader (write_lock)
    with no other lock held (see `_send`); only closing a channel takes
    write_lock under the hub's lock.

    There is one per process that started workers with queues. Uplinks are
    non-blocking, and batches for readers are written once `lock` is released,
    so neither a slow worker nor a slow reader holds up the others. Other
    threads ask it to read (`flush`, `retire`) and to finish writes they
    could not (`finish`, `recover`): no signal handler runs here.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while reading uplinks
        self.links: dict[int, _Link] = {}  # by uplink fd
        self.dying: dict[int, _Link] = {}  # by process sentinel
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.changed = True  # the set of pipes to poll changed
        self.failed: BaseException | None = None  # what ended the thread, if anything did
        # Channels whose batch (or what is left of it) the hub thread writes: see _send.
        self.outbox: collections.deque[_Channel] = collections.deque()
        self.interrupted: collections.deque[_Home] = collections.deque()  # see _Home.put
        self.asked: collections.deque[tuple[_Link | None, threading.Lock]] = collections.deque()  # see _ask
        # A bare thread: threading.Thread.start() waits on an Event, whose wait
        # an exception (Ctrl-C) can leave with its lock released twice.
        _thread.start_new_thread(self._run, ())

    def add(self, link: _Link) -> None:
        _under(self.lock, self._add, link)
        self._wake()  # poll the new uplink too

    def _add(self, link: _Link) -> None:
        self.links[link.fd] = link
        self.dying[link.process.sentinel] = link
        self.changed = True

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # else a wake-up is pending already
            os.write(self.wake_w, b"!")

    def finish(self, sends: _Sends) -> None:
        """Have the hub thread write what is left of these channels' batches."""
        self.outbox.extend(sends)
        self._wake()

    def recover(self, home: _Home) -> None:
        """Have the hub thread finish what an exception inside `home.put` interrupted."""
        self.interrupted.append(home)
        self._wake()

    def _write_outbox(self) -> None:
        """Write what other threads left for us (see `_send`), waiting for the readers to take it."""
        while self.interrupted:
            self.outbox.extend(self.interrupted.popleft().recover())
        while self.outbox:
            channel = self.outbox.popleft()
            with channel.write_lock:
                if channel.write(block=True) is not None:
                    continue  # all written (by us, or by the thread that gave it to us)
                batch = channel.take_back()
            if batch:  # its reader has gone: the batch goes back in line
                channel.home.drop(channel)
                _send(channel.home.give_back(batch))

    def flush(self) -> None:
        """Wait until the hub has read what every worker has written so far."""
        self._ask(None)

    def retire(self, link: _Link) -> None:
        """Wait until the hub has read the last frames of a worker that has exited, and closed its pipes."""
        self._ask(link)

    def _ask(self, link: _Link | None) -> None:
        # Only the hub reads uplinks: in another thread, an exception (Ctrl-C)
        # between a read and its parse would lose bytes of the stream for good.
        # The hub releases `done` when it has answered. A lock, not an Event:
        # its wait is one call into C, while Event.wait releases and retakes
        # a lock in Python code, where a Ctrl-C may have it released twice.
        done = threading.Lock()
        done.acquire()
        self.asked.append((link, done))
        self._wake()
        while not done.acquire(timeout=_TICK):
            _check_hub()

    def _answer(self, sends: _Sends) -> list[threading.Lock]:
        """Do the reading that `flush` and `retire` asked for (call with the lock held)."""
        answered: list[threading.Lock] = []
        while self.asked:
            asked, done = self.asked.popleft()
            for link in list(self.links.values()) if asked is None else [asked]:
                if self.links.get(link.fd) is link and (link.read_available(sends) or asked is link):
                    self._remove(link, sends)
            answered.append(done)
        return answered

    def _run(self) -> None:
        _block_ctrl_c()
        try:
            self._read_uplinks()
        except BaseException as exc:  # a MemoryError for a huge frame, say: callers must hear of it
            self.failed = exc
            for home in list(_HOMES):
                with home.lock:
                    home.ready.notify_all()

    def _read_uplinks(self) -> None:
        poller = select.poll()
        while True:
            with self.lock:
                if self.changed:
                    poller = select.poll()
                    for fd in [self.wake_r, *self.links, *self.dying]:
                        poller.register(fd, select.POLLIN)
                    self.changed = False
            events = poller.poll()
            if any(fd == self.wake_r for fd, _ in events):
                # Before looking at what was asked: a request made after this
                # read leaves its wake-up for the next poll. Read after, it
                # could take that wake-up with it, and the request would wait
                # for some worker to wake us.
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
            sends: _Sends = []
            with self.lock:
                answered = self._answer(sends)
                # If workers came or went while we polled, an fd number in
                # `events` may now belong to another worker's pipe: skip them.
                # Poll is level-triggered: what was ready will be ready again.
                for fd, _ in events:
                    if self.changed:
                        break
                    if fd in self.links:
                        link = self.links[fd]
                        if link.read_available(sends):
                            self._remove(link, sends)
                    elif fd in self.dying:  # the worker exited: what it wrote is all there
                        link = self.dying[fd]
                        link.read_available(sends)
                        self._remove(link, sends)
            _send(sends)
            for done in answered:
                done.release()
            self._write_outbox()

    def _remove(self, link: _Link, sends: _Sends) -> None:
        """Forget a worker that has gone (call with the lock held)."""
        self.links.pop(link.fd, None)
        self.dying.pop(link.process.sentinel, None)
        self.changed = True
        link.close(sends)


_HUB_LOCK = threading.Lock()


def _check_hub() -> None:
    """Raise if the hub thread has failed: the messages it was reading are lost."""
    hub = _state.hub
    if hub is not None and hub.failed is not None:
        raise RuntimeError(
            f"ezq's hub thread, which reads what process workers send, failed: {hub.failed!r}"
        ) from hub.failed


def _retire(link: _Link | None) -> None:
    """Release the pipes of a worker that has exited (see `_Hub.retire`)."""
    if link is not None and _state.hub is not None:
        _state.hub.retire(link)


def _hub() -> _Hub:
    hub = _state.hub
    return _under(_HUB_LOCK, _start_hub) if hub is None else hub


def _start_hub() -> _Hub:
    if _state.hub is None:  # (another thread may have started it as we waited)
        _state.hub = _Hub()
    return _state.hub


class _Uplink:
    """A worker's pipe to its parent, shared by its queues and its threads."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.lock = threading.Lock()
        self.pid = os.getpid()
        # The frame being written, and the bytes each write took (see `_write_rest`).
        self.writing: tuple[list[memoryview], list[int]] = ([], [])

    def check_owner(self) -> None:
        """Refuse a process forked from the worker: its frames would interleave with the worker's."""
        if _state.pid != self.pid:
            raise RuntimeError(
                f"this Q was given to worker process {self.pid}; a process forked from it can't "
                "use it (pass the Q to ezq.run() to give it to another worker)"
            )

    def send(self, tag: int, index: int, payload: bytes) -> None:
        self.check_owner()
        frame = [memoryview(_HEAD.pack(len(payload), tag, index)), memoryview(payload)]
        held: list[bool] = []
        try:
            _acquire(self.lock, held)
            _write_rest(self.fd, *self.writing)  # a frame that an exception interrupted goes whole first
            self.writing = (frame, [])
            _write_rest(self.fd, *self.writing)
        except OSError as exc:
            raise _home_gone() from exc
        finally:
            if held:
                self.lock.release()

    def flush(self) -> None:
        """Write the rest of a frame that an exception interrupted, if any (the worker is ending)."""
        with contextlib.suppress(OSError):
            _under(self.lock, self._finish_frame)

    def _finish_frame(self) -> None:
        _write_rest(self.fd, *self.writing)


class _Remote:
    """A worker's end of a process queue: requests to its home go up, batches come down."""

    def __init__(self, uplink: _Uplink, index: int, down: Connection, shared_size: _SharedInts) -> None:
        self.uplink = uplink
        self.index = index
        self.down = down
        self.shared_size = shared_size
        self.read_lock = threading.Lock()
        # One attribute, so that it changes in one step: an exception (a signal
        # handler's) that interrupts a read leaves what it read where the next
        # get goes on from. Batch 0 is the one we never asked for.
        self.inbox: _Inbox = (0, bytearray(), None, [], collections.deque())
        self.batch = 1  # frames to ask for next time
        self.received = 0.0  # when the last batch arrived

    def put(self, data: Any, kind: str, order: int) -> None:
        self.uplink.send(_PUT_END if kind == _END else _PUT, self.index, _encode(data, kind, order))

    def get(self) -> Msg[Any]:
        self.uplink.check_owner()
        held: list[bool] = []
        try:
            _acquire(self.read_lock, held)
            frames = self.inbox[4]
            while not frames:
                frames = self._frames()
            frame = frames.popleft()
        finally:
            if held:
                self.read_lock.release()
        return _decode(frame)

    def _frames(self, ask: bool = True) -> collections.deque[_Frame]:
        """The next batch's frames, once this one's are all read (call with read_lock held).

        With `ask` false, the batch being read was asked for already.
        """
        number, head, body, counts, frames = self.inbox
        if frames is not None:  # all read: the next one
            number, head, body, counts = number + 1, bytearray(_HEADER), None, []
            self.inbox = (number, head, body, counts, None)
        if ask and not counts:  # ask (again, if an exception stopped us: the home drops what it answered)
            self.uplink.send(_DEMAND, self.index, _ASK.pack(number, self._batch_size()))
        fd = self.down.fileno()
        try:
            _read_rest(fd, head, counts)
            if body is None:
                body = bytearray(int.from_bytes(head, "little"))
                self.inbox = (number, head, body, counts, None)
            _read_rest(fd, body, counts, len(head))
        except (EOFError, OSError) as exc:
            raise _home_gone() from exc
        frames = collections.deque(pickle.loads(body))
        self.inbox = (number, head, body, counts, frames)
        self.received = time.perf_counter()
        return frames

    def _batch_size(self) -> int:
        # Ask for more while a batch is consumed quickly, for fewer round
        # trips; ask for one at a time when each message takes long, so
        # that other readers get a fair share of slow work.
        took = time.perf_counter() - self.received
        if took < _BATCH_SECONDS:
            self.batch = min(_BATCH_MAX, self.batch * 2)
        else:
            self.batch = max(1, int(self.batch * _BATCH_SECONDS / took))
        return self.batch

    def release(self) -> None:
        """Hand frames we fetched but nobody read back to the home."""
        # A thread that holds the lock is blocked waiting for a batch, with
        # nothing in the buffer: don't wait for it (the worker could never
        # exit); the home takes that batch back when it finds us gone.
        if not self.read_lock.acquire(blocking=False):
            return
        try:
            if self.inbox[4] is None:  # a get that an exception stopped may have asked for a batch
                with contextlib.suppress(RuntimeError):  # the home is gone
                    self.uplink.send(_DEMAND, self.index, _ASK.pack(self.inbox[0], 0))  # "none after all"
                    self._frames(ask=False)  # that batch, or an empty one: the home answers each request once
            if left := self.inbox[4]:
                frames = list(left)
                left.clear()
                try:
                    self.uplink.send(_RETURN, self.index, pickle.dumps(frames, protocol=5))
                except RuntimeError:  # the home is gone: nobody left to give them to
                    pass
        finally:
            self.read_lock.release()

    def qsize(self) -> int:
        return self.shared_size.value + len(self.inbox[4] or ())

    def close(self) -> None:
        self.release()
        self.uplink.flush()
        self.down.close()


def _home_gone() -> RuntimeError:
    return RuntimeError("the process that created this Q has exited")


## Serialization ##
#
# Everything a process worker gets is pickled here, by `pickle`'s C pickler
# with ezq's reducers (`_Reducers.reducer_override`), or by dill with the same
# reducers for the few objects that the C pickler refuses and dill can copy
# (a lock, say).
#
# Functions and classes of the user's script travel by value wherever a
# worker may not have the script: under spawn and forkserver (workers come
# from ezq's fork server, which never imports the script) and to executors.
# Under fork, only those travel by value that pickle can't find by name (a
# lambda, a closure, a class made by a function, a namedtuple named otherwise
# than its variable). Each travels with a token that stands for it (not its
# name: two functions may share one), so that a process keeps one copy of
# each however many messages bring it, and sends it back under the same
# token: a class that comes back from a worker is the parent's own class.
# A function of the script runs in the script's namespace, the receiving
# process's `__main__`, as under fork: functions share their globals there,
# and a global that a worker has already keeps its value (globals come with
# the values they have at the call). A class travels as a pickle of its own,
# made once per call and read once per process, so that a message of a
# script's class costs little more than under fork. Every module travels by
# reference and is imported where it arrives.
#
# Where dill is not installed, nothing travels by value: workers under spawn
# and forkserver import the script as multiprocessing's spawn does
# (`_Server.script`), and a lambda raises a TypeError that asks for dill.

_Scripts = Literal["by name", "where needed", "by value"]
"""How functions and classes of the script travel: by name only (no dill), by value where
pickle can't find them by name (fork), or always by value (where workers lack the script)."""

_TOKENS: dict[int, tuple[weakref.ref[Any], str]] = {}
"""By id: the token of each function and class this process has sent or received by value."""

_BY_TOKEN: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
"""The functions and classes this process knows by token: its own, and the copies it was sent."""

_UNFINISHED: weakref.WeakSet[Any] = weakref.WeakSet()
"""Functions and classes made here whose state (set once they exist, for cycles) has not come yet."""

_BLOBS: dict[tuple[int, str], tuple[weakref.ref[type], int, bytes]] = {}
"""A class's own pickle (see `_blob`), by its id and mode, with the call it was made for."""

_minted = itertools.count()


def _token(obj: Any) -> str:
    """The token that stands for `obj` (a function or class sent by value), made on first use."""
    entry = _TOKENS.get(id(obj))
    if entry is not None and entry[0]() is obj:
        return entry[1]
    token = f"{_state.mint}.{next(_minted)}"
    _remember(obj, token)
    return token


def _remember(obj: Any, token: str) -> None:
    key = id(obj)

    def forget(ref: weakref.ref[Any]) -> None:
        if _TOKENS.get(key, (None, ""))[0] is ref:
            _TOKENS.pop(key, None)

    _TOKENS[key] = (weakref.ref(obj, forget), token)
    _BY_TOKEN[token] = obj


def _tokenize_script() -> None:
    """Give a token to each function and class of the script that pickle can't find by name.

    Under fork, a worker sends these by value under the token it inherited:
    so an instance of a class made by a function, or of a namedtuple named
    otherwise than its variable, comes back as an instance of our class.
    """
    main = sys.modules.get("__main__")
    for value in list(getattr(main, "__dict__", {}).values()):
        if (
            isinstance(value, (type, types.FunctionType))
            and value.__module__ == "__main__"
            and not _found(value)
        ):
            _token(value)


class _Space:
    """Pickles as the namespace a function runs in, as the receiving process has it."""

    def __init__(self, kind: Literal["script", "module"], name: str) -> None:
        self.kind = kind
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_namespace, (self.kind, self.name))


def _namespace(kind: str, name: str) -> dict[str, Any]:
    """The globals of a function sent by value: its module's, or the script's (see `_State.script`)."""
    if kind == "module":
        return importlib.import_module(name).__dict__
    if name == _state.script:
        module = sys.modules["__main__"]
    else:  # on an executor's worker: the script's globals, apart from that process's own __main__
        module = sys.modules.setdefault(f"ezq-script-{name}", types.ModuleType("__main__"))
    module.__dict__.setdefault("__builtins__", builtins)
    return module.__dict__


def _import(name: str) -> types.ModuleType:
    """A module, imported here: every module travels by reference."""
    return sys.modules["__main__"] if name == "__main__" else importlib.import_module(name)


class _EmptyCell:
    """Stands for the contents of an empty closure cell."""

    def __reduce__(self) -> str:
        return "_EMPTY_CELL"


_EMPTY_CELL = _EmptyCell()

_FunctionState = tuple[dict[str, Any], list[Any], dict[str, Any], list[types.ModuleType]]
"""A function's globals, closure contents, attributes, and the submodules its code reaches."""


def _script_function(
    token: str, code: types.CodeType, space: dict[str, Any], name: str, cells: int | None
) -> types.FunctionType:
    """A function sent by value: the copy this process has, or a new one (its state comes next)."""
    known = _BY_TOKEN.get(token)
    if known is not None:
        return cast(types.FunctionType, known)
    closure = None if cells is None else tuple(types.CellType() for _ in range(cells))
    func = types.FunctionType(code, space, name, None, closure)
    _remember(func, token)
    _UNFINISHED.add(func)
    return func


def _finish_function(func: types.FunctionType, state: _FunctionState) -> None:
    """Set the state of a function that `_script_function` made (not of one this process had)."""
    if func not in _UNFINISHED:
        return
    _UNFINISHED.discard(func)
    globals_, contents, attributes, _ = state
    for name, value in globals_.items():  # a global this process has keeps its value, as under fork
        func.__globals__.setdefault(name, value)
    for cell, value in zip(func.__closure__ or (), contents, strict=True):
        if value is not _EMPTY_CELL:
            cell.cell_contents = value
    for name, value in attributes.items():
        if name == "__dict__":
            func.__dict__.update(value)
        else:
            setattr(func, name, value)


def _script_class(
    token: str,
    meta: type,
    name: str,
    bases: tuple[type, ...],
    namespace: dict[str, Any],
    members: list[tuple[str, Any]] | None,
    install: tuple[dict[str, Any], str] | None,
) -> type:
    """A class sent by value: the copy this process has, or a new one (the rest of its dict comes next).

    The class is made as `type` makes one, without its metaclass's own
    `__new__` and `__init__`: what they did is in the dict, which comes as
    it is. Only an enum is made by its metaclass, which makes its `members`.
    """
    known = _BY_TOKEN.get(token)
    if known is not None:
        return cast(type, known)
    cls: type
    if members is not None:
        prepared = meta.__prepare__(name, bases)
        for key, value in [*namespace.items(), *members]:
            prepared[key] = value
        cls = meta(name, bases, prepared)
    else:
        try:
            cls = cast(type, type.__new__(meta, name, bases, dict(namespace)))
        except TypeError:  # a metaclass in C that type.__new__ can't make (ctypes')
            cls = meta(name, bases, dict(namespace))
    _remember(cls, token)
    _UNFINISHED.add(cls)
    if install is not None:  # under its name in the script's namespace, as under fork (for get_type_hints)
        space, variable = install
        space.setdefault(variable, cls)
    return cls


def _finish_class(cls: type, state: dict[str, Any]) -> None:
    """Set the rest of the dict of a class that `_script_class` made (what making it made stays)."""
    if cls not in _UNFINISHED:
        return
    _UNFINISHED.discard(cls)
    for name, value in state.items():
        if name not in cls.__dict__:
            type.__setattr__(cls, name, value)
    if isinstance(cls, abc.ABCMeta):  # what ABCMeta.__new__ does, now that the dict is all there
        cast(Callable[[type], None], getattr(abc, "_abc_init"))(cls)  # noqa: B009 (private)


def _script_class_blob(token: str, blob: bytes) -> type:
    """A class sent as a pickle of its own (see `_blob`), read only where it is new."""
    known = _BY_TOKEN.get(token)
    if known is not None:
        return cast(type, known)
    return cast(type, pickle.loads(blob))


def _blob(cls: type, mode: _Scripts) -> bytes:
    """A pickle of `cls` alone, made once per call that starts workers (`_calls`) and kept.

    A message that carries an instance carries these bytes, which a process
    reads only the first time (after that, the token says it has the class),
    instead of the class's whole state, which is slow to make and to read.
    """
    key = (id(cls), mode)
    entry = _BLOBS.get(key)
    if entry is not None and entry[0]() is cls and entry[1] == _calls[0]:
        return entry[2]
    blob = _serialize(cls, mode, whole=True)

    def forget(ref: weakref.ref[type]) -> None:
        if _BLOBS.get(key, (None,))[0] is ref:
            _BLOBS.pop(key, None)

    _BLOBS[key] = (weakref.ref(cls, forget), _calls[0], blob)
    return blob


_calls = [0]
"""Counts the calls that start workers: a class's pickle is made again for each, with the
values of its methods' globals at that call."""


def _rebuild_exception(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any] | None) -> Any:
    """An exception as it was raised, made without its `__init__` (which may take other arguments)."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    if state:
        exc.__dict__.update(state)
    return exc


def _std_stream(name: str) -> Any:
    return getattr(sys, name)


def _mappingproxy(items: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(items)


def _make_typevar(token: str, kind: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A TypeVar, ParamSpec, TypeVarTuple or NewType of the script: one per process."""
    known = _BY_TOKEN.get(token)
    if known is None:
        known = kind(*args, **kwargs)
        with contextlib.suppress(AttributeError, TypeError):
            known.__module__ = "__main__"
        _remember(known, token)
    return known


def _make_cached(token: str, wrapped: Callable[..., Any], maxsize: int | None, typed: bool) -> Any:
    """A function of the script cached by `functools.lru_cache`, one per process; its cache starts empty."""
    known = _BY_TOKEN.get(token)
    if known is None:
        known = functools.lru_cache(maxsize, typed)(wrapped)
        _remember(known, token)
    return known


class _CantSend(TypeError):
    """An object that can't be copied to another process (an open file, a socket): dill is not tried."""


_PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})
_DESCRIPTORS = (staticmethod, classmethod, property, functools.cached_property)


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names that `code` (and the code nested in it) reads or writes."""
    dis = importlib.import_module("dis")  # only where functions travel by value
    ops = {dis.opmap[name] for name in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME")}
    names = dict.fromkeys(op.argval for op in dis.get_instructions(code) if op.opcode in ops)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_global_names(const)))
    return tuple(names)


def _plain(value: object) -> bool:
    """`True` for data that can't refer to a function or class (so it may go where they can't)."""
    if type(value) in _PLAIN_TYPES:
        return True
    if type(value) in (tuple, frozenset):
        return all(_plain(item) for item in cast(Iterable[object], value))
    return False


def _found(obj: Any, name: str | None = None) -> bool:
    """`True` if pickle finds `obj` by its module and name (its `__qualname__` by default)."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    try:
        return functools.reduce(getattr, (name or obj.__qualname__).split("."), module) is obj
    except AttributeError:
        return False


def _annotations(obj: Any) -> dict[str, Any]:
    """`obj.__annotations__`, as strings where a name in them is not defined (3.14+ evaluates lazily)."""
    try:
        return dict(obj.__annotations__)
    except Exception:
        annotationlib = importlib.import_module("annotationlib")
        return dict(annotationlib.get_annotations(obj, format=annotationlib.Format.STRING))


def _made_by_type(cls: type, name: str, value: object) -> bool:
    """`True` for what making the class makes again: `__dict__`, slots, ABC caches, 3.14's annotations."""
    if isinstance(value, (types.GetSetDescriptorType, types.MemberDescriptorType)):
        return cast(Any, value).__objclass__ is cls
    return name in ("_abc_impl", "__annotate_func__", "__annotations_cache__")


def _cell_contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # empty
        return _EMPTY_CELL


def _submodules(values: Iterable[Any], code: types.CodeType) -> list[types.ModuleType]:
    """Submodules that `code` reaches as attributes of the modules in `values` (`xml.etree`)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(const.co_names)
    found: list[types.ModuleType] = []
    for value in values:
        if type(value) is types.ModuleType:
            prefix = value.__name__ + "."
            for name, module in list(sys.modules.items()):
                if name.startswith(prefix):
                    if names.issuperset(name[len(prefix) :].split(".")):
                        found.append(module)
    return found


class _Reducers:
    """ezq's reducers, for `_Pickler` and for the dill pickler (see "Serialization" above).

    `mode`: how the script's functions and classes travel (`_Scripts`).
    `whole`: a class travels whole, not as a pickle of its own (see `_blob`).
    """

    mode: _Scripts
    whole: bool
    spaces: dict[int, dict[str, Any]]  # dicts made for globals of no module, this dump (see _space)

    def reducer_override(self, obj: Any) -> Any:
        kind = cast(Any, type(obj))
        if kind is types.FunctionType:
            return self._function(obj)
        if isinstance(obj, type):
            return self._class(obj)
        if kind is types.ModuleType:
            return (_import, (obj.__name__,))
        if kind is types.CodeType:  # by marshal, not dill: dill 0.4.1 can't pickle code on 3.15
            return (marshal.loads, (marshal.dumps(obj),))
        if kind is types.MappingProxyType:
            return (_mappingproxy, (dict(obj),))
        if kind in _DESCRIPTORS:
            if isinstance(obj, property):
                return (kind, (obj.fget, obj.fset, obj.fdel, obj.__doc__))
            return (kind, (obj.func if isinstance(obj, functools.cached_property) else obj.__func__,))
        if isinstance(obj, BaseException):
            if kind.__module__ == "builtins" or kind.__reduce__ is not BaseException.__reduce__:
                return NotImplemented  # as pickle does
            return (_rebuild_exception, (kind, obj.args, obj.__dict__ or None))
        reduce = _SPECIAL.get(kind.__module__)
        return NotImplemented if reduce is None else reduce(self, obj)

    def _by_value(self, obj: Any, name: str | None = None) -> bool:
        """`True` if the function or class `obj` travels by value."""
        if self.mode == "by name":
            return False
        if self.mode == "by value" and obj.__module__ == "__main__":
            return True
        return not _found(obj, name)

    def _function(self, func: types.FunctionType) -> Any:
        if not self._by_value(func):
            return NotImplemented
        code = func.__code__
        globals_ = func.__globals__
        values = {name: globals_[name] for name in _global_names(code) if name in globals_}
        closure = func.__closure__
        attributes: dict[str, Any] = {
            "__defaults__": func.__defaults__,
            "__kwdefaults__": func.__kwdefaults__,
            "__qualname__": func.__qualname__,
            "__module__": func.__module__,
            "__doc__": func.__doc__,
            "__annotations__": _annotations(func),
        }
        if func.__dict__:
            attributes["__dict__"] = dict(func.__dict__)
        if getattr(func, "__type_params__", ()):
            attributes["__type_params__"] = getattr(func, "__type_params__")  # noqa: B009 (3.12+)
        contents = [_cell_contents(cell) for cell in closure or ()]
        state: _FunctionState = (values, contents, attributes, _submodules(values.values(), code))
        cells = None if closure is None else len(closure)
        args = (_token(func), code, self._space(globals_), func.__name__, cells)
        return (_script_function, args, state, None, None, _finish_function)

    def _space(self, globals_: dict[str, Any]) -> Any:
        """What stands for `globals_` in the pickle: the script's, a module's, or a dict of our own."""
        name = globals_.get("__name__")
        module = sys.modules.get(name) if isinstance(name, str) else None
        if module is not None and module.__dict__ is globals_:
            return (
                _Space("script", _state.script) if name == "__main__" else _Space("module", module.__name__)
            )
        space = self.spaces.get(id(globals_))
        if space is None:  # globals of no module (a namedtuple's methods): one dict for them all
            space = self.spaces[id(globals_)] = {"__name__": name, "__builtins__": builtins}
        return space

    def _class(self, cls: type) -> Any:
        if cls.__module__ == "builtins" or not self._by_value(cls):
            return NotImplemented
        if not self.whole:
            return (_script_class_blob, (_token(cls), _blob(cls, self.mode)))
        items = dict(cls.__dict__)
        members = None
        if isinstance(cls, enum.EnumMeta):
            enum_members: dict[str, Any] = dict(cls.__members__)
            members = [(name, member._value_) for name, member in enum_members.items()]
            for name, _ in members:
                del items[name]
            # Its metaclass makes the rest, but for the methods: a custom __new__ is kept apart
            new = items.pop("_new_member_", items.pop("__new_member__", None))
            items.pop("__new__", None)
            if type(new) is types.FunctionType and new.__module__ != "enum":
                items["__new__"] = staticmethod(new)
        namespace: dict[str, Any] = {}
        state: dict[str, Any] = {}
        for name, value in items.items():
            if _made_by_type(cls, name, value):
                continue
            if type(value) is types.FunctionType or type(value) in _DESCRIPTORS:
                namespace[name] = value  # at hand as the class is made (for __init_subclass__, say)
            elif _plain(value) and (members is None or name in ("__module__", "__qualname__", "__doc__")):
                namespace[name] = value
            else:
                state[name] = value
        if sys.version_info >= (3, 14):
            state["__annotations__"] = _annotations(cls)
        install = None
        if cls.__module__ == "__main__" and getattr(sys.modules["__main__"], cls.__name__, None) is cls:
            install = (_Space("script", _state.script), cls.__name__)
        args = (_token(cls), type(cls), cls.__name__, cls.__bases__, namespace, members, install)
        return (_script_class, args, state, None, None, _finish_class)


def _reduce_io(reducers: _Reducers, obj: Any) -> Any:
    """Standard streams travel by name; an open file can't travel (dill would reopen it, and truncate it)."""
    for name in ("stdin", "stdout", "stderr", "__stdin__", "__stdout__", "__stderr__"):
        if obj is getattr(sys, name):
            return (_std_stream, (name,))
    if isinstance(obj, (io.StringIO, io.BytesIO)):
        return NotImplemented
    if isinstance(obj, io.IOBase):
        raise _CantSend(f"an open file ({obj!r}) can't be sent to another process")
    return NotImplemented


def _reduce_typing(reducers: _Reducers, obj: Any) -> Any:
    """A TypeVar, ParamSpec, TypeVarTuple or NewType of the script: by name where found, else by value."""
    typing = sys.modules["typing"]
    kind = cast(Any, type(obj))
    if kind not in (typing.TypeVar, typing.ParamSpec, typing.NewType, getattr(typing, "TypeVarTuple", None)):
        return NotImplemented
    if not reducers._by_value(obj, obj.__name__):  # pyright: ignore[reportPrivateUsage]
        return (getattr, (sys.modules[obj.__module__], obj.__name__))
    kwargs: dict[str, Any] = {}
    if kind is typing.NewType:
        args: tuple[Any, ...] = (obj.__name__, obj.__supertype__)
    else:
        args = (obj.__name__, *getattr(obj, "__constraints__", ()))
        for name in ("bound", "covariant", "contravariant", "infer_variance"):
            if hasattr(obj, f"__{name}__") and (name != "bound" or kind is not typing.TypeVarTuple):
                kwargs[name] = getattr(obj, f"__{name}__")
        if getattr(obj, "has_default", lambda: False)():
            kwargs["default"] = obj.__default__
    return (_make_typevar, (_token(obj), kind, args, kwargs))


def _reduce_functools(reducers: _Reducers, obj: Any) -> Any:
    """A function of the script cached with `functools.lru_cache` or `cache` travels as one."""
    if type(obj).__name__ != "_lru_cache_wrapper" or not reducers._by_value(obj):  # pyright: ignore[reportPrivateUsage]
        return NotImplemented
    parameters = obj.cache_parameters()
    return (_make_cached, (_token(obj), obj.__wrapped__, parameters["maxsize"], parameters["typed"]))


def _reduce_dataclasses(reducers: _Reducers, obj: Any) -> Any:
    """dataclasses' markers (`MISSING`, a field's kind) travel by name, as it compares them with `is`."""
    dataclasses = sys.modules["dataclasses"]
    for name in ("MISSING", "KW_ONLY", "_FIELD", "_FIELD_CLASSVAR", "_FIELD_INITVAR", "_HAS_DEFAULT_FACTORY"):
        if obj is getattr(dataclasses, name, None):
            return (getattr, (dataclasses, name))
    return NotImplemented


def _reduce_weakref(reducers: _Reducers, obj: Any) -> Any:
    if isinstance(obj, (weakref.WeakKeyDictionary, weakref.WeakValueDictionary)):
        return (type(cast(Any, obj)), (list(cast(Any, obj).items()),))
    if isinstance(obj, weakref.WeakSet):
        return (type(cast(Any, obj)), (list(cast(Any, obj)),))
    return NotImplemented


_SPECIAL: dict[str, Callable[[_Reducers, Any], Any]] = {
    "_io": _reduce_io,
    "typing": _reduce_typing,
    "functools": _reduce_functools,
    "dataclasses": _reduce_dataclasses,
    "weakref": _reduce_weakref,
    "_weakrefset": _reduce_weakref,
}
"""Reducers for objects of types of these modules (by the module of the object's type)."""


class _Pickler(_Reducers, pickle.Pickler):
    """`pickle`'s C pickler, with ezq's reducers."""

    def __init__(self, file: io.BytesIO, mode: _Scripts, whole: bool = False) -> None:
        super().__init__(file, protocol=5)
        self.mode, self.whole, self.spaces = mode, whole, {}

    def dump(self, obj: Any) -> None:
        try:
            super().dump(obj)
        finally:
            self.spaces.clear()


_PICKLERS = threading.local()  # per thread: a pickler and its buffer, by mode (see _pickle)


def _pickle(obj: Any, mode: _Scripts, whole: bool = False) -> bytes:
    """Pickle `obj` with the C pickler and ezq's reducers (protocol 5).

    A pickler kept per thread writing into one buffer costs less than
    `pickle.dumps`, which makes both anew on every call, and it writes a
    large bytes object straight into the buffer (1 MiB: 35 µs, not 0.8 ms).
    """
    kept: dict[tuple[str, bool], tuple[io.BytesIO, _Pickler]] | None = getattr(_PICKLERS, "kept", None)
    if kept is None:
        kept = _PICKLERS.kept = {}
    entry = kept.pop((mode, whole), None)  # taken out while in use, in case of a nested call
    if entry is None:
        buffer = io.BytesIO()
        entry = buffer, _Pickler(buffer, mode, whole)
    buffer, pickler = entry
    pickler.dump(obj)  # on an exception, the entry is dropped
    data = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    pickler.clear_memo()
    kept[(mode, whole)] = entry
    return data


_CANT_PICKLE = (pickle.PicklingError, TypeError, AttributeError)
"""What a pickler raises for an object it can't pickle (AttributeError: a local
function before 3.14). Any other exception (from an object's own `__reduce__`,
or from a signal handler that ran while we pickled) is not ours to retry or to
rename: it reaches the caller as it is."""


def _serialize(obj: Any, mode: _Scripts, whole: bool = False) -> bytes:
    """Pickle `obj` with the C pickler, or with dill where it refuses and dill is installed."""
    try:
        return _pickle(obj, mode, whole)
    except _CantSend:
        raise
    except _CANT_PICKLE:
        pickler = _dill_pickler()
        if pickler is None:
            raise
    buffer = io.BytesIO()
    pickler(buffer, mode, whole).dump(obj)
    return buffer.getvalue()


def _dumps(obj: Any, what: str, travels: bool | None = None) -> bytes:
    """Pickle `obj` for another process: the script's objects by value where it may lack the script.

    `travels`: whether the reader may lack the script (default: where
    workers come from ezq's fork server, or we are one of them); `True` for
    an executor's workers, `False` for what goes back to the parent.

    Raises:
        TypeError: it can't be pickled; the message names `what` and why
            (and the global that can't travel, if that is why).
    """
    if travels is None:
        travels = _main_travels()
    mode: _Scripts = "by name" if not _have_dill() else ("by value" if travels else "where needed")
    try:
        data = _serialize(obj, mode)
    except _CANT_PICKLE as exc:
        raise _cannot_pickle(obj, what, exc, mode) from exc
    if travels and mode == "by name" and not _main_importable() and b"__main__" in data:
        raise TypeError(
            f"cannot pickle {what} ({type(obj).__name__}): it uses functions or classes of a script "
            "that workers can't import (python -c, stdin, a notebook); install dill (pip install dill) "
            "to send them by value, or move them into a module"
        )
    return data


def _cannot_pickle(obj: Any, what: str, why: Exception, mode: _Scripts) -> TypeError:
    """The error for `obj` that can't be pickled: it names the global that can't travel, if one can't."""
    found = _global_that_fails(obj, mode)
    if found is not None:
        name, func, error = found
        return TypeError(
            f"cannot pickle {what}: {func.__qualname__}() uses the global {name!r}, which can't be sent to "
            f"a process worker ({error}); create it inside the task instead"
        )
    if mode == "by name" and not isinstance(why, _CantSend):
        return TypeError(
            f"cannot pickle {what} ({type(obj).__name__}): {why}; "
            "install dill (pip install dill) to send lambdas, closures and the like to process workers"
        )
    return TypeError(f"cannot pickle {what} ({type(obj).__name__}): {why}")


def _global_that_fails(obj: Any, mode: _Scripts) -> tuple[str, types.FunctionType, Exception] | None:
    """A global of a function in `obj` (sent by value) that can't be pickled: its name, function, error."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) in (tuple, list):
            todo.extend(cast(Iterable[Any], item))
        elif type(item) is dict:
            todo.extend(cast(Any, item).values())
        elif type(item) is types.FunctionType and item.__module__ == "__main__":
            for name in _global_names(item.__code__):
                value = item.__globals__.get(name)
                if type(value) is types.FunctionType:
                    todo.append(value)
                elif name in item.__globals__ and type(value) is not types.ModuleType:
                    try:
                        _serialize(value, mode)
                    except Exception as exc:
                        return name, item, exc
    return None


@functools.cache
def _have_dill() -> bool:
    return importlib.util.find_spec("dill") is not None


@functools.cache
def _dill_pickler() -> Any:
    """dill's pickler with ezq's reducers (imported on first need); `None` without dill."""
    if not _have_dill():
        return None
    dill = importlib.import_module("dill")  # untyped

    class DillPickler(_Reducers, dill.Pickler):  # type: ignore[misc,name-defined]
        def __init__(self, file: io.BytesIO, mode: _Scripts, whole: bool) -> None:
            dill.Pickler.__init__(self, file, protocol=5)
            self.mode, self.whole, self.spaces = mode, whole, {}

    return DillPickler


def _main_travels() -> bool:
    """`True` if what we pickle may be read in a process without the user's `__main__`."""
    return _state.served or _start_method() != "fork"


def _main_importable() -> bool:
    """`True` if workers can import the user's script, as spawn does (see `_Server.script`)."""
    main = sys.modules.get("__main__")
    return os.path.isfile(getattr(main, "__file__", None) or "") or bool(getattr(main, "__spec__", None))


class _Attach:
    """Collects the process queues found while pickling what a worker gets.

    Each such queue is given a private channel per worker, passed to the
    worker as a `Process` argument so that `multiprocessing` hands over the
    pipes under every start method. Use as `with _Attach() as attach:`.
    """

    _local = threading.local()

    def __init__(self) -> None:
        self.homes: list[_Home] = []

    @classmethod
    def current(cls) -> _Attach | None:
        """The collector of the pickling going on in this thread, if any."""
        return cast("_Attach | None", getattr(cls._local, "attach", None))

    def __enter__(self) -> _Attach:
        _Attach._local.attach = self
        return self

    def __exit__(self, *exc: object) -> None:
        _Attach._local.attach = None

    def add(self, home: _Home) -> int:
        for index, known in enumerate(self.homes):
            if known is home:
                return index
        self.homes.append(home)
        return len(self.homes) - 1


_ATTACHED: list[Q[Any]] = []  # in a worker: its queues, while its payload is unpickled


def _attached_q(index: int) -> Q[Any]:
    """Rebuild a pickled `Q` in a worker (see `Q.__reduce__`)."""
    return _ATTACHED[index]


@dataclass
class _Settings:
    """The process-wide settings that a fork carries to a worker, taken at the call.

    Under spawn and forkserver, a worker starts from a fresh interpreter:
    what the script set at its top has to come along. (Under fork too, for
    the decimal context, which is the calling thread's.)
    """

    recursion_limit: int
    int_max_str_digits: int | None  # 3.11+
    decimal_context: Any  # the calling thread's, where decimal is in use
    warnings_filters: list[Any]

    @classmethod
    def now(cls) -> _Settings:
        decimal = sys.modules.get("decimal")
        return cls(
            sys.getrecursionlimit(),
            getattr(sys, "get_int_max_str_digits", lambda: None)(),
            None if decimal is None else decimal.getcontext(),
            list(warnings.filters),
        )

    def apply(self) -> None:
        sys.setrecursionlimit(self.recursion_limit)
        if self.int_max_str_digits is not None:
            sys.set_int_max_str_digits(self.int_max_str_digits)
        if self.decimal_context is not None:
            importlib.import_module("decimal").setcontext(self.decimal_context)
        cast(list[Any], warnings.filters)[:] = self.warnings_filters
        cast(Callable[[], None], getattr(warnings, "_filters_mutated"))()  # noqa: B009 (as filterwarnings does)


class _Payload:
    """What a new process worker needs: pickled bytes and the queues they mention."""

    def __init__(self, data: bytes, homes: list[_Home]) -> None:
        self.data = data
        self.homes = homes

    @classmethod
    def dump(cls, obj: Any, what: str) -> _Payload:
        _calls[0] += 1  # a new call: a class's pickle carries its globals' values now (see _blob)
        with _Attach() as attach:
            data = _dumps((_Settings.now(), obj), what)
        return cls(data, attach.homes)

    def start(
        self, target: Callable[..., None], args: tuple[Any, ...], name: str
    ) -> tuple[_Process, _Link | None]:
        """Start a daemon process running `target(payload, queue_ends, lifeline, *args)`.

        Returns the process and, if it was given queues, its link (for `_retire`).
        """
        channels: list[_Channel] = []
        downs: list[tuple[Connection, Any]] = []
        up_r = up_w = None
        held: list[bool] = []
        try:
            _acquire(_START_LOCK, held)  # so no other worker inherits this one's pipe ends under fork
            if self.homes:
                up_r, up_w = multiprocessing.Pipe(duplex=False)
                for home in self.homes:  # a queue's index on the uplink is its place here
                    channel, down = home.open_channel()
                    channels.append(channel)
                    downs.append(down)
            process = _start_process(target, (self.data, (up_w, downs), _lifeline(), *args), name)
        except BaseException:
            for channel in channels:
                channel.home.drop(channel)
                channel.close()
            if up_r is not None:
                up_r.close()
            raise
        finally:
            try:  # the child has its copies of these now
                for conn in [up_w, *(down for down, _ in downs), *args]:
                    if isinstance(conn, Connection):
                        conn.close()
            finally:
                if held:
                    _START_LOCK.release()
        link = None
        if up_r is not None:
            link = _Link(process, up_r, channels)
            _hub().add(link)
        return process, link

    @staticmethod
    def load(data: bytes, ends: _Ends) -> tuple[Any, list[_Remote]]:
        """In a worker: unpickle the payload, connecting its queues to their homes."""
        up, downs = ends
        remotes = []
        if up is not None:
            uplink = _Uplink(up)
            remotes = [_Remote(uplink, index, down, size) for index, (down, size) in enumerate(downs)]
        _ATTACHED[:] = [Q._remote(remote) for remote in remotes]  # pyright: ignore[reportPrivateUsage]
        try:
            settings, obj = pickle.loads(data)
        finally:
            _ATTACHED.clear()
        settings.apply()
        return obj, remotes


_Ends = tuple["Connection | None", list[tuple[Connection, "_SharedInts"]]]
"""What a worker gets for its queues: the uplink's write end, and each queue's downlink and size."""


## Remote exceptions ##


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (its `__cause__`)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def _pack_exception(exc: BaseException) -> bytes:
    """Pickle an exception raised in a worker, with its traceback as text.

    The traceback starts below the ezq function that caught it, so it shows
    the user's code, not ours.
    """
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        return _dumps((exc, text), "an exception", travels=False)
    except Exception:  # an exception that won't pickle travels as text
        return pickle.dumps((None, (type(exc).__qualname__, str(exc)), text), protocol=5)


def _unpack_exception(data: bytes, where: str) -> BaseException:
    """Rebuild an exception packed by `_pack_exception`.

    Like `concurrent.futures`, the worker's traceback becomes the `__cause__`,
    so that a printed traceback shows where in the worker it failed, and
    `except OriginalType:` still works in the caller.
    """
    try:
        packed = pickle.loads(data)
    except Exception as exc:  # e.g. its class can't be imported here
        return WorkerError(f"an exception {where} can't be unpickled here: {exc!r}")
    text = packed[-1]
    error: BaseException
    if packed[0] is not None:
        error = packed[0]
    else:
        type_name, message = packed[1]
        error = WorkerError(f"{type_name}: {message}")
    error.__cause__ = _RemoteTraceback(f'{where}\n"""\n{text}"""')
    return error


## Process workers ##

_TICK = 0.25
"""Longest a blocking wait in ezq lasts before it returns to Python for a moment
(every wait in the caller's threads: `_wait_any` with a slice, `_join`, `wait(_TICK)`).

A Ctrl-C's SIGINT may be delivered to any thread of the process; Python runs
the handler (raising KeyboardInterrupt) in the main thread, but only once that
thread runs Python code again, and a blocked wait is not interrupted when
another thread took the signal. So waits are cut into slices of this length.
"""


def _block_ctrl_c() -> None:
    """In one of ezq's own threads: leave SIGINT to other threads (the main one, ideally)."""
    if hasattr(signal, "pthread_sigmask"):  # pragma: no branch
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


_START_LOCK = threading.Lock()


class _State:
    """What ezq knows about the process it runs in."""

    in_worker = False  # inside a process worker
    served = False  # inside a process worker that ezq's fork server started
    die_with = 0  # in a new worker: the pid whose exit should kill it (see _die_with_parent)
    server: _Server | None = None  # this process's fork server, once it has started one
    hub: _Hub | None = None  # reads this process's workers' uplinks (see _hub)
    lifeline: tuple[Connection, Connection] | None = None  # see _lifeline
    pid = os.getpid()  # kept up to date at a fork: os.getpid() is a system call
    script = os.urandom(6).hex()  # stands for the user's script (see _namespace); workers get the parent's
    mint = os.urandom(6).hex()  # this process's prefix for new tokens (see _token); a fork takes another


_state = _State()
_LIVE: set[_Process] = set()  # the process workers we started that may still run (see _stop_workers_at_exit)
_HOMES: weakref.WeakSet[_Home] = weakref.WeakSet()
_worker_count = itertools.count(1)


def _lifeline() -> Connection:
    """A pipe whose write end only this process holds: workers exit when it closes."""
    if _state.lifeline is None:
        _state.lifeline = multiprocessing.Pipe(duplex=False)
    return _state.lifeline[0]


def _after_fork_in_child() -> None:
    # A forked child gets copies of this process's queues and pipes. Its
    # copies of our queues are not their home, so using them is an error
    # (_Home._check_home). It must not hold the lifeline's write end, or it
    # would never see its parent die. (We close nothing else: the hub thread
    # may be half-way through closing a pipe at the moment of the fork, and
    # its fd number may already belong to one of the child's own pipes.
    # The lifeline is never closed, so its number is safe.)
    _state.pid = os.getpid()
    _state.mint = os.urandom(6).hex()
    _state.hub = None  # its thread did not come along
    if _state.server is not None:  # the server must see EOF when its parent exits
        _state.server.sock.close()
        _state.server = None
    for home in list(_HOMES):
        home.forked = True
    if _state.lifeline is not None:
        _state.lifeline[1].close()
        _state.lifeline = None
    # The parent's workers are not ours: multiprocessing's exit handler would
    # terminate them when we exit (it keeps its children in a set that a plain
    # os.fork() copies), and so would ours.
    children: set[object] = getattr(multiprocessing.process, "_children", set[object]())
    for process in _LIVE:
        children.discard(process)
    _LIVE.clear()


def _stop_workers_at_exit() -> None:
    """At exit, terminate (then kill) the process workers still running.

    multiprocessing's exit handler, which runs after this one, terminates its
    daemonic children too, but then waits for each without a time limit: a
    forgotten worker that handles SIGTERM would keep the program from exiting.
    """
    _kill(list(_LIVE))


atexit.register(_stop_workers_at_exit)


def _raise_ctrl_c_again(previous: Callable[[Any], object], unraisable: Any) -> None:
    """`sys.unraisablehook`: a Ctrl-C that CPython would print and drop is raised again.

    An exception can't leave a finalizer (a `__del__` method, a weakref
    callback): CPython prints "Exception ignored" and goes on. A Ctrl-C whose
    handler ran while one ran in the main thread (ezq drops pipes, processes
    and queues that have them, when a worker starts, say) would be lost, and
    the program would wait on as if it had not been pressed. So a thread
    signals the main thread again, as a second press would, once the
    finalizer has returned. (Not from here: the handler would run at once,
    inside this hook, and its exception would be dropped again; should the
    signal still come too early, this hook sends another.) Anything else
    goes to the hook that was there.
    """
    in_main = threading.current_thread() is threading.main_thread()
    handled = callable(signal.getsignal(signal.SIGINT))  # else SIGINT would end the program
    if in_main and handled and issubclass(unraisable.exc_type, KeyboardInterrupt):
        with contextlib.suppress(RuntimeError):  # no new thread at interpreter shutdown: nothing waits then
            _thread.start_new_thread(signal.pthread_kill, (threading.get_ident(), signal.SIGINT))
            return
    previous(unraisable)


sys.unraisablehook = functools.partial(_raise_ctrl_c_again, sys.unraisablehook)


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _watch_parent(lifeline: Connection) -> None:
    """Exit this worker when its parent has gone (even if it was SIGKILLed)."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)


def _worker_setup(lifeline: Connection) -> None:
    """First steps of every worker process."""
    _state.in_worker = True
    if _state.die_with:
        _die_with_parent(_state.die_with)
    # Ctrl-C in a terminal signals the whole process group; the parent decides
    # what happens, and workers don't print a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A bare thread: threading.Thread.start() waits for the thread to run,
    # which costs more than half a millisecond on every worker's start.
    _thread.start_new_thread(_watch_parent, (lifeline,))


def _process_worker(data: bytes, ends: _Ends, lifeline: Connection, status: Connection) -> None:
    """Body of a `Worker.process`: run the task, then report how it ended."""
    _worker_setup(lifeline)
    remotes: list[_Remote] = []
    report = b""
    try:
        (task, args, kwargs), remotes = _Payload.load(data, ends)
        task(*args, **kwargs)
    except SystemExit:
        raise
    except BaseException as exc:
        report = _pack_exception(exc)
    finally:
        for remote in remotes:
            remote.close()
    status.send_bytes(report)
    if report:
        sys.exit(1)


def _die_with_parent(parent: int) -> None:
    """In a new worker (Linux): have the kernel kill it when `parent` exits.

    The lifeline thread (`_watch_parent`) ends a worker whose parent has gone,
    but not while a long C call holds the GIL; PR_SET_PDEATHSIG does. It fires
    when the *thread* that forked the worker ends, so it is used only where
    that thread lives as long as the process: the fork server's only thread,
    or the main thread of the user's process (see `_start_process_now`).
    """
    if sys.platform == "linux":
        import ctypes  # the fork server has imported it already

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it exited before we asked
            os._exit(1)


def _check_can_start_processes() -> None:
    if _state.in_worker:
        raise RuntimeError(
            "a process worker can't start process workers (they are daemonic processes); "
            "start thread workers instead: ezq.run_thread() or ezq.map(..., kind='thread')"
        )


def _worker_name(task: Callable[..., Any]) -> str:
    return f"{getattr(task, '__name__', type(task).__name__)}-{next(_worker_count)}"


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _kill(processes: Iterable[_Process]) -> None:
    """Terminate processes and wait for them to go."""
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.terminate()
    for process in alive:
        _join(process, 1.0)
        if process.is_alive():
            process.kill()
            _join(process)


def _join(process: _Process, timeout: float | None = None) -> None:
    """`process.join(timeout)`, in `_TICK` slices, so that a Ctrl-C is never kept waiting."""
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if _wait_any([process.sentinel], min(left, _TICK)):
            # It is exiting (its sentinel closes a moment before it can be reaped): reap it.
            process.join()
            return


def _add_note(error: BaseException, note: str) -> None:
    """`error.add_note(note)` where Python has it (3.11+)."""
    if hasattr(error, "add_note"):
        error.add_note(note)


## Starting worker processes ##
#
# Under "fork", a worker is a fork of the caller (multiprocessing's fork
# context) and sees the caller's state at the call. Under "spawn" and
# "forkserver", multiprocessing would import the user's script again in
# every worker (spawn), or once in a server that forks workers (CPython
# 3.14's forkserver preloads `__main__`): either way the script's top level
# runs again, and without an `if __name__ == "__main__":` guard it starts
# workers of its own. So ezq keeps its own fork server instead: a fresh
# interpreter, started once per parent process on first use, that has
# imported ezq (and dill) and nothing of the user's, and forks a worker on
# each request. What a task needs from the script travels with it (see
# "Serialization"); where dill is missing, workers import the script as spawn
# does (`_Server.script`).
#
# Parent and server talk over a socket pair: the parent sends one byte and
# the worker's file descriptors (SCM_RIGHTS) and gets the worker's pid back;
# then it writes the worker's call into the worker's boot pipe itself, so
# that no user data passes through the server. When a worker exits, the
# server writes its exit code into the worker's status pipe, whose other end
# is the parent's sentinel (readable once the worker is gone). The server
# exits when the parent closes its end of the socket (it exits or dies).


class _Process(Protocol):
    """What ezq uses of a worker process: a multiprocessing `Process`, or a `_ServedProcess`."""

    @property
    def name(self) -> str: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def exitcode(self) -> int | None: ...
    @property
    def sentinel(self) -> int: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


def _start_method() -> str:
    return multiprocessing.get_start_method()


def _start_process(target: Callable[..., None], args: tuple[Any, ...], name: str) -> _Process:
    """Start `target(*args)` in a new worker process (call with `_START_LOCK` held)."""
    _LIVE.difference_update([p for p in _LIVE if not p.is_alive()])
    process = _start_process_now(target, args, name)
    _LIVE.add(process)
    return process


def _start_process_now(target: Callable[..., None], args: tuple[Any, ...], name: str) -> _Process:
    if _start_method() == "fork":
        _tokenize_script()
        context = multiprocessing.get_context("fork")
        process = context.Process(target=target, args=args, name=name, daemon=True)
        if threading.current_thread() is threading.main_thread() and sys.platform == "linux":
            _state.die_with = os.getpid()  # the child's copy says: die with us (see _die_with_parent)
            importlib.import_module("ctypes")  # here once, not in every child
        try:
            process.start()
        finally:
            _state.die_with = 0
        return process
    if _state.server is not None:
        try:
            return _state.server.start(target, args, name)
        except (OSError, EOFError):  # it died (killed by hand?): start another
            _state.server.close()
    _state.server = _Server()
    return _state.server.start(target, args, name)


class _ServedProcess:
    """The parent's handle on a worker that ezq's fork server started."""

    def __init__(self, name: str, pid: int, status: int) -> None:
        self.name = name
        self.pid = pid
        self.sentinel = status  # readable once the worker has exited
        self._exitcode: int | None = None
        # Closed once this is garbage (the fd outlives polls on it), not at exit,
        # where _stop_workers_at_exit still needs it.
        weakref.finalize(self, os.close, status).atexit = False

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None and _readable(self.sentinel):
            code = os.read(self.sentinel, 4)
            # Nothing to read means the server died before it could tell.
            self._exitcode = int.from_bytes(code, "little", signed=True) if code else -signal.SIGKILL
        return self._exitcode

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        poller = select.poll()
        poller.register(self.sentinel, select.POLLIN)
        poller.poll(None if timeout is None else timeout * 1000)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.exitcode is None:  # not reaped yet, so the pid is still the worker's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


_SERVER_CODE = """\
import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)
import importlib.util, json, sys
name, path, sys.path[:], fd = json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location(name, path)
ezq = importlib.util.module_from_spec(spec)
sys.modules[name] = ezq
spec.loader.exec_module(ezq)
ezq._serve(fd)
"""
"""The fork server's main script: load this very file as the parent knows it, and serve."""


class _Server:
    """The parent's end of its fork server (see "Starting worker processes")."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        module = sys.modules[__name__]
        path = [
            os.fsdecode(cast(Any, entry))
            for entry in cast(list[object], sys.path)
            if isinstance(entry, (str, os.PathLike))
        ]
        config = json.dumps([__name__, module.__file__, path, theirs.fileno()])
        flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
        executable = multiprocessing.spawn.get_executable() or sys.executable
        command = [os.fsdecode(executable), *flags, "-c", _SERVER_CODE, "ezq-forkserver", config]
        # Workers get the parent's stdout and stderr as they are at each start;
        # the server keeps no copy of stdout, so a pipe there sees its end
        # when the parent's program ends.
        devnull = subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                command, pass_fds=[theirs.fileno()], stdin=devnull, stdout=devnull
            )
        finally:
            theirs.close()
        self.sock = ours
        # Each request carries a number that its reply repeats: a start that an
        # exception interrupted after its request leaves the reply unread, and
        # the next start must not take that pid for its own worker's.
        self.requests = itertools.count(1)
        self.environ = dict(os.environ)  # what the server has; workers get changes made since
        self.script: dict[str, str] = {}  # how workers import the script (only without dill)
        if not _have_dill() and _main_importable():
            data = multiprocessing.spawn.get_preparation_data("ezq")
            self.script = {k: v for k, v in data.items() if k.startswith("init_main_from_")}

    def start(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> _ServedProcess:
        fds: list[int] = []
        call = io.BytesIO()
        _FdPickler(call, fds).dump((target, args))
        environ = None if os.environ == self.environ else dict(os.environ)
        boot = (os.getcwd(), sys.path, sys.argv, environ, self.script, _state.script, call.getvalue())
        stdio = [1, 2] if all(_is_open(fd) for fd in (1, 2)) else []
        boot_r, boot_w = os.pipe()
        status_r, status_w = os.pipe()
        number = (next(self.requests) % 2**32).to_bytes(4, "little")  # (wraps after 4 billion starts)
        try:
            socket.send_fds(self.sock, [bytes([len(stdio)]) + number], [boot_r, status_w, *stdio, *fds])
            while (reply := _recv_exactly(self.sock, 8))[:4] != number:
                pass  # the reply to an interrupted start: its worker ends when it finds no boot frame
            pid = int.from_bytes(reply[4:], "little")
        except BaseException:
            os.close(status_r)
            os.close(boot_w)
            raise
        finally:
            os.close(boot_r)
            os.close(status_w)
        process = _ServedProcess(name, pid, status_r)
        try:
            _write_frame(boot_w, pickle.dumps(boot, protocol=5))
        except BrokenPipeError:
            pass  # it died at once; its exit code will say how
        finally:
            os.close(boot_w)
        return process

    def close(self) -> None:
        self.sock.close()
        self.process.kill()
        self.process.wait()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise EOFError("the fork server has gone")
        data += more
    return data


class _FdPickler(pickle.Pickler):
    """Pickles a worker's call; its pipes and shared memory go as file descriptors beside it."""

    def __init__(self, file: io.BytesIO, fds: list[int]) -> None:
        super().__init__(file, protocol=5)
        self.fds = fds

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, (Connection, _SharedInts)):
            self.fds.append(obj.fileno())
            return (isinstance(obj, Connection), len(self.fds) - 1)
        return None


class _FdUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, fds: list[int]) -> None:
        super().__init__(file)
        self.fds = fds

    def persistent_load(self, pid: Any) -> Any:
        is_connection, index = cast("tuple[bool, int]", pid)
        return Connection(self.fds[index]) if is_connection else _SharedInts(fd=self.fds[index])


def _serve(sock_fd: int) -> None:  # pyright: ignore[reportUnusedFunction] (see _SERVER_CODE)
    """Main loop of the fork server: fork a worker per request, report each one's exit."""
    sock = socket.socket(fileno=sock_fd)
    if sys.platform == "linux":
        importlib.import_module("ctypes")  # for _die_with_parent in every worker: import it once
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so that it wakes the poll
    statuses: dict[int, int] = {}  # pid -> write end of its status pipe
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        ready = [fd for fd, _ in poller.poll()]
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(statuses)
        if sock_fd in ready:
            request, fds, _, _ = socket.recv_fds(sock, 5, 256)
            if not request:
                return  # the parent has gone; its workers see that on their own
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for fd in [sock_fd, wake_r, wake_w, *statuses.values()]:
                    os.close(fd)
                _served_child(request[0], fds)
            statuses[pid] = fds[1]
            for fd in fds[:1] + fds[2:]:
                os.close(fd)
            sock.sendall(request[1:] + pid.to_bytes(4, "little"))


def _reap(statuses: dict[int, int]) -> None:
    """In the fork server: tell the parent the exit code of every worker that has exited."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = statuses.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):  # the parent no longer listens
                os.write(fd, os.waitstatus_to_exitcode(status).to_bytes(4, "little", signed=True))
            os.close(fd)


def _served_child(stdio: int, fds: list[int]) -> NoReturn:
    """In a worker just forked by the server: become the parent's worker, run its call, exit."""
    boot, status, *fds = fds
    os.close(status)  # the server's, to report our exit
    for target, fd in zip((1, 2), fds[:stdio], strict=False):
        os.dup2(fd, target)  # the parent's stdout and stderr as they are now
        os.close(fd)
    del fds[:stdio]
    _state.served = True
    _state.die_with = os.getppid()  # the server
    sys.modules["__main__"] = types.ModuleType("__main__")  # not the server's script
    code = 1
    try:
        try:
            frame = _read_frame(boot)
        except EOFError:  # the parent's start was interrupted: no one waits for us
            os._exit(1)
        cwd, path, argv, environ, script, _state.script, call = pickle.loads(frame)
        os.close(boot)
        os.chdir(cwd)
        sys.path[:], sys.argv[:] = path, argv
        if environ is not None:
            os.environ.clear()
            os.environ.update(environ)
        _state.in_worker = True  # a script imported below must not start workers
        multiprocessing.spawn.prepare(script)
        target, args = _FdUnpickler(io.BytesIO(call), fds).load()
        target(*args)
        code = 0
    except SystemExit as exc:  # as multiprocessing reports it
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for thread in threading.enumerate():  # as a normal exit would, wait for non-daemon threads
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


class _SharedInts:
    """64-bit ints in memory shared with workers: a process queue's length (for
    `qsize()` there), or what a map worker runs now (for timeouts, see `_Clock`)."""

    def __init__(self, count: int = 1, fd: int | None = None) -> None:
        if fd is None:
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("ezq-shared")
            else:  # macOS
                with tempfile.TemporaryFile() as file:
                    fd = os.dup(file.fileno())
            os.ftruncate(fd, 8 * count)
        self.fd = fd  # kept open to hand to workers started later
        self.view = memoryview(mmap.mmap(fd, 0)).cast("q")  # 0: the whole file
        weakref.finalize(self, os.close, fd).atexit = False

    def fileno(self) -> int:
        return self.fd

    @property
    def value(self) -> int:
        return int(self.view[0])

    @value.setter
    def value(self, value: int) -> None:
        self.view[0] = value


## map internals ##

_DEPTH = 2
"""Chunks a worker holds at once: one it works on and one waiting, so it never idles.

With 1, a worker idles for a round trip between chunks; with more, more items
wait behind a slow chunk, and the last chunks of a map spread less evenly.
"""

_WINDOW = 4
"""In input order, at most this many chunks per worker are in flight or waiting to be yielded.

It bounds memory (invariant: bounded memory, whatever the input's size). Smaller,
and one slow chunk soon stalls every worker behind it (their results wait to be
yielded in order); larger, and more input and results are held at once.
"""

_CHUNK_BYTES = 1 << 20
"""A chunk stops growing at about this many pickled bytes."""

_CHUNK_MAX = 1 << 14
"""Most items in one chunk.

Larger chunks save little per item, and their lists (of items, of results)
outgrow the memory Python's allocator keeps between chunks: each chunk then
maps fresh pages, and the page faults cost more than what is saved. Making and
unpickling 2**16 ints cost 37 and 48 ns each; 2**14 cost 25 and 31 (3.11).
"""

_ADAPT_AFTER = 16
"""Items to see before deciding how many workers to feed (see `_Chunker.workers_needed`)."""

_PROBE = 0.02
"""If the first chunk of a map takes longer than this (seconds), all its workers start.

Shorter, and tiny maps start workers they don't need (each costs a few ms);
longer, and a map of slow tasks runs on one worker that long before the others start.
"""

_WORTH_A_WORKER = 20e-6
"""Seconds per item from which a task is sure to gain from every worker: far more than
what passing an item to a worker and back costs (about 1 µs in a chunk). Lower, and
tasks whose transport costs as much as their work start every worker; higher, and
slow tasks wait for `_Chunker.workers_needed` to measure before they spread."""

_HEADROOM = 1.25
"""`_Chunker.workers_needed` feeds this many times the workers that would just keep
up with the caller: timings are noisy. More, and idle workers take CPU from the
caller's loop; less, and the caller waits on the workers."""


class _Chunker:
    """Decides how many items go into the next chunk, and how many workers to feed.

    Chunks start at one item and grow (at most 32x per step) until a chunk
    takes about `seconds` of work, so that tiny tasks are batched while slow
    tasks are sent one by one and stay balanced between workers.
    """

    def __init__(self, fixed: int | None, seconds: float) -> None:
        self.fixed = fixed
        self.seconds = seconds
        self.size = fixed or 1
        self.item_bytes = 0.0
        self.work_items = 0  # items the workers have run so far,
        self.work_seconds = 0.0  # and how long they took

    def record(self, items: int, seconds: float) -> None:
        if items == 0:
            return
        self.work_items += items
        self.work_seconds += seconds
        if self.fixed:
            return
        per_item = max(seconds / items, 1e-7)
        want = self.seconds / per_item
        if self.item_bytes:
            want = min(want, _CHUNK_BYTES / self.item_bytes)
        self.size = max(1, min(int(want), self.size * 32, _CHUNK_MAX))

    def sent(self, items: int, nbytes: int) -> None:
        if not self.fixed and items and nbytes:
            self.item_bytes = nbytes / items
            self.size = max(1, min(self.size, int(_CHUNK_BYTES / self.item_bytes)))

    def workers_needed(self, main_per_item: float) -> int:
        """How many workers keep up with a main thread that spends `main_per_item` per item.

        When the caller's own loop is the bottleneck (tiny tasks), more
        workers only take CPU from it.
        """
        per_item = self.work_seconds / max(self.work_items, 1)
        return math.ceil(_HEADROOM * per_item / main_per_item)


_GRACE = 1.0
"""Seconds a map worker gets to stop a call that ran out of time (see `map`'s
`timeout`) before it is killed. Shorter, and a task's `finally` blocks are cut
short (and the results before it in its chunk go with the worker); longer, and
a task stuck in C code, which no signal interrupts, delays the `TimeoutError`."""

_INTERRUPT = signal.SIGUSR2
"""The signal that interrupts a process worker's call that ran out of time (see `_on_interrupt`)."""


class _Done:
    """A finished chunk: its results, and the exception that stopped it (if any)."""

    __slots__ = ("error", "job", "results", "seconds")

    def __init__(self, job: int, results: list[Any], error: BaseException | None, seconds: float) -> None:
        self.job = job
        self.results = results
        self.error = error
        self.seconds = seconds


class _Clock(Protocol):
    """What a map worker runs now, for timeouts: a list (threads) or shared memory (processes).

    [0]: the input item running + 1 (0: none); [1]: since when (`time.monotonic_ns()`);
    [2]: the item + 1 that the parent asks to interrupt (see `_on_interrupt`).
    """

    def __getitem__(self, index: int, /) -> int: ...
    def __setitem__(self, index: int, value: int, /) -> None: ...


def _running(clock: _Clock) -> tuple[int, float] | None:
    """The input item that `clock` says runs now, and since when (monotonic seconds).

    The worker writes the start, then the item (see `_call_each`): if the item
    read before and after the start is the same, the start is that item's.
    `None` when the worker is idle or just moving on to another item.
    """
    item = clock[0]
    since = clock[1]
    if item == 0 or clock[0] != item:
        return None
    return item - 1, since / 1e9


class _TimedOut(BaseException):
    """Raised in a process worker's call that ran out of time (a `BaseException`, so
    that the task's `except Exception:` doesn't swallow it)."""


def _on_interrupt(clock: _Clock, signum: int, frame: object) -> None:
    """In a map process worker: the parent's signal to stop the call that ran out of time.

    Only that call is interrupted: if the worker has moved on (the call
    returned as the signal came), the signal is ignored.
    """
    if clock[2] and clock[2] == clock[0]:
        clock[2] = 0
        raise _TimedOut("the call ran out of time here (see map's timeout)")


def _timeout_error(limit: float, item: int, where: str) -> TimeoutError:
    return TimeoutError(f"task took longer than {limit} s on input item {item} {where}")


def _chunk_error(error: tuple[int, bytes], first: int, where: str, limit: float | None) -> BaseException:
    """The exception that stopped a chunk that starts at input item `first`, from its worker's report.

    `error` is the index in the chunk of the call that raised, and the
    exception as `_pack_exception` packed it.
    """
    index, packed = error
    exc = _unpack_exception(packed, f"raised {where} by input item {first + index}")
    if isinstance(exc, _TimedOut) and limit is not None:
        timeout = _timeout_error(limit, first + index, where)
        timeout.__cause__ = exc.__cause__  # the worker's traceback: where the call was stuck
        return timeout
    return exc


def _drain(source: queue.SimpleQueue[T], timeout: float) -> list[T]:
    """Wait at most `timeout` seconds for an item of `source`; return it and the others there now."""
    try:
        items = [source.get(timeout=max(timeout, 0.0))]
    except queue.Empty:
        return []
    with contextlib.suppress(queue.Empty):
        while True:
            items.append(source.get_nowait())
    return items


_Chunk = Sequence[Any]
"""Items of a map's input sent to a worker at once (a range's come as a range: see `_Input`)."""


class _Input:
    """A map's input, read a chunk at a time, lazily.

    A range is cut into ranges: the parent creates no item and pickles a few
    bytes per chunk, where a list of ints costs it more time than the
    caller's own loop over the results.
    """

    def __init__(self, first: Iterable[Any], others: list[Iterable[Any]]) -> None:
        self.range = first if isinstance(first, range) and not others else None
        self.items: Iterator[Any] = zip(first, *others, strict=False) if others else iter(first)
        self.taken = 0  # items of `range` taken

    def take(self, count: int) -> _Chunk:
        """The next `count` items (fewer at the end; none once all are taken)."""
        if self.range is None:
            return list(itertools.islice(self.items, count))
        chunk = self.range[self.taken : self.taken + count]
        self.taken += len(chunk)
        return chunk


class _Pool:
    """Workers that run chunks of a map: the scheduler's view of them.

    With a time limit per call (`limit`), the pool watches its workers'
    clocks in `wait` and reports a call that ran out of time as its chunk's
    error (a `TimeoutError`).
    """

    seconds_per_chunk = 0.01
    num = 1

    def free(self) -> bool:
        """`True` if another chunk can be submitted now."""
        raise NotImplementedError

    def submit(self, job: int, first: int, chunk: _Chunk) -> int:
        """Send a chunk (input items `first`...) to a worker; return its size in bytes (0 if not pickled)."""
        raise NotImplementedError

    def wait(self, timeout: float) -> list[_Done]:
        """Wait at most `timeout` seconds for chunks to finish; return those that did (maybe none)."""
        raise NotImplementedError

    def close(self, abort: bool) -> None:
        """Stop the workers: let them finish, or (abort) stop them now."""
        raise NotImplementedError

    def use(self, workers: int) -> None:
        """Feed only this many workers from now on (a hint; see `_Chunker.workers_needed`)."""

    def no_more_input(self) -> None:
        """All chunks have been submitted: workers left with nothing to do may stop now."""


_Key = TypeVar("_Key")


def _overdue(started: Iterable[tuple[_Key, float]], limit: float) -> tuple[list[tuple[_Key, float]], float]:
    """Of calls started at these times (monotonic seconds), those that ran longer than
    `limit`, each with its start; and the seconds until the next deadline, at most."""
    now = time.monotonic()
    late: list[tuple[_Key, float]] = []
    next_check = _check_every(limit)
    for key, since in started:
        if now < since + limit:
            next_check = min(next_check, since + limit - now)
        else:
            late.append((key, since))
    return late, next_check


def _check_every(limit: float | None) -> float:
    """How often a pool with this time limit per call looks at its workers' clocks, at least.

    A call is seen running within this time of its start, so its deadline is
    known before it passes.
    """
    return _TICK if limit is None else min(_TICK, limit / 2)


def _run_map(
    start_pool: Callable[[], _Pool], items: _Input, chunksize: int | None, ordered: bool
) -> Generator[list[Any], None, None]:
    """Start a pool, feed it chunks of `items` and yield the results, a chunk's at a time (the body of `map`).

    Being a generator, it starts nothing before the first `next()`, and once
    started, closing it (or dropping it: the garbage collector closes it)
    stops the pool.
    """
    pool = start_pool()
    chunker = _Chunker(chunksize, pool.seconds_per_chunk)
    done: dict[int, _Done] = {}
    sizes: dict[int, int] = {}  # job -> items, for the jobs in flight
    next_job = 0
    next_out = 0  # the next job whose results are yielded (in order)
    items_sent = 0
    exhausted = False
    failed = False
    window = _WINDOW * pool.num
    finished = False
    # The main thread's own time per item (ours, and the caller's loop between
    # our yields) from the first result on: the time not spent waiting.
    clock = 0.0
    waited = 0.0
    yielded = 0
    try:
        while True:
            while not exhausted and not failed and pool.free() and next_job - next_out < window:
                chunk = items.take(chunker.size)
                if not chunk:
                    exhausted = True
                    pool.no_more_input()
                    break
                chunker.sent(len(chunk), pool.submit(next_job, items_sent, chunk))
                sizes[next_job] = len(chunk)
                items_sent += len(chunk)
                next_job += 1
            if exhausted and next_out == next_job:
                finished = True
                return
            start = time.perf_counter()
            results = pool.wait(_TICK)
            waited += time.perf_counter() - start
            if not results:
                continue
            if not clock:
                clock, waited = time.perf_counter(), 0.0
            for result in results:
                chunker.record(sizes.pop(result.job), result.seconds)
            if yielded >= _ADAPT_AFTER and not failed:
                busy = time.perf_counter() - clock - waited
                pool.use(chunker.workers_needed(max(busy, 1e-9) / yielded))
            for result in results:
                if result.error is not None:
                    failed = True
                if ordered:
                    done[result.job] = result
                else:
                    next_out += 1
                    yield result.results
                    yielded += len(result.results)
                    if result.error is not None:
                        raise result.error
            while next_out in done:
                result = done.pop(next_out)
                next_out += 1
                yield result.results
                yielded += len(result.results)
                if result.error is not None:
                    raise result.error
    finally:
        pool.close(abort=not finished)


class _ThreadPool(_Pool):
    """Thread workers pulling chunks from one shared queue.

    A thread whose call runs out of time can't be stopped: its chunk is
    reported as timed out (with the results before that call), and the
    thread is left to run on; it is a daemon, so it doesn't keep the program
    from exiting, and what it returns is dropped.
    """

    seconds_per_chunk = 0.001

    def __init__(self, task: Callable[..., Any], star: bool, num: int, limit: float | None) -> None:
        self.num = num
        self.task = task
        self.star = star
        self.limit = limit
        self.jobs: queue.SimpleQueue[tuple[int, int, _Chunk] | None] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self.in_flight = 0
        self.cancelled = False
        self.clocks = [[0, 0, 0] for _ in range(num)]
        self.running: list[tuple[int, int, list[Any]]] = [(0, 0, [])] * num  # per thread: job, first, results
        self.lost: set[int] = set()  # threads whose call ran out of time
        self.abandoned: set[int] = set()  # and their jobs, already reported
        self.threads = [
            threading.Thread(target=self._work, args=(i,), name=f"ezq-map-{i}", daemon=True)
            for i in range(num)
        ]
        for thread in self.threads:
            thread.start()

    def _work(self, me: int) -> None:
        task, star = self.task, self.star
        clock = self.clocks[me] if self.limit else None
        while (job := self.jobs.get()) is not None:
            if self.cancelled:
                continue
            job_id, first, chunk = job
            results: list[Any] = []
            self.running[me] = (job_id, first, results)
            self.results.put(_Done(job_id, *_call_each(task, star, chunk, first, clock, results)))

    def free(self) -> bool:
        return self.in_flight < _DEPTH * self.num

    def submit(self, job: int, first: int, chunk: _Chunk) -> int:
        self.jobs.put((job, first, chunk))
        self.in_flight += 1
        return 0

    def wait(self, timeout: float) -> list[_Done]:
        finished, next_check = self._timed_out()
        more = _drain(self.results, 0 if finished else min(timeout, next_check))
        finished += [done for done in more if done.job not in self.abandoned]
        self.in_flight -= len(finished)
        return finished

    def _timed_out(self) -> tuple[list[_Done], float]:
        """Chunks whose thread ran out of time, and the seconds until the next deadline."""
        limit = self.limit
        if limit is None:
            return [], _TICK
        calls = ((me, _running(clock)) for me, clock in enumerate(self.clocks) if me not in self.lost)
        late, next_check = _overdue((((me, run[0]), run[1]) for me, run in calls if run), limit)
        finished: list[_Done] = []
        for (me, item), since in late:
            job, first, results = self.running[me]
            self.lost.add(me)
            self.abandoned.add(job)
            error = _timeout_error(limit, item, f"in map thread {self.threads[me].name}")
            _add_note(error, "a thread can't be stopped: it runs on as a daemon, and its result is dropped")
            finished.append(_Done(job, results[: item - first], error, time.monotonic() - since))
        return finished, next_check

    def close(self, abort: bool) -> None:
        self.cancelled = abort
        for _ in self.threads:
            self.jobs.put(None)
        if not abort:
            for thread in self.threads:
                thread.join()


class _ExecutorPool(_Pool):
    """Chunks run on an executor someone else owns (see `map`'s `executor`).

    It relies only on `submit` and the futures' `add_done_callback`,
    `result` and `cancel`: engines differ in the rest (whether a running task
    can be cancelled, for one). Closing cancels the chunks that have not
    started and leaves the executor alone.

    With a time limit, chunks hold one item (see `map`), and a call's clock
    starts when it is among the `num` oldest unfinished ones: when it starts,
    if the executor runs `num` calls at once, in order.
    """

    seconds_per_chunk = 0.1  # engines that spread work over machines take milliseconds per task

    def __init__(self, executor: Executor, task: bytes, star: bool, num: int, limit: float | None) -> None:
        self.num = num
        self.executor = executor
        self.task = task
        self.star = star
        self.limit = limit
        self.futures: dict[int, tuple[Future[Any], int]] = {}  # job -> its future, its first item
        self.queued: collections.deque[int] = collections.deque()  # jobs not started yet (with a limit)
        self.since: dict[int, float] = {}  # job -> when it started (with a limit)
        self.finished: queue.SimpleQueue[int] = queue.SimpleQueue()  # jobs whose future is done

    def free(self) -> bool:
        return len(self.futures) < _DEPTH * self.num

    def submit(self, job: int, first: int, chunk: _Chunk) -> int:
        future = self.executor.submit(_run_chunk, self.task, self.star, chunk)
        self.futures[job] = (future, first)
        if self.limit is not None:
            self.queued.append(job)
            self._start_queued()
        future.add_done_callback(functools.partial(self._finished, job))
        try:  # the executor pickles the chunk; one item tells about how big it is
            return len(pickle.dumps(chunk[0], protocol=5)) * len(chunk)
        except Exception:
            return 0

    def _finished(self, job: int, future: Future[Any]) -> None:
        self.finished.put(job)  # called by the executor, in any thread

    def _start_queued(self) -> None:
        while self.queued and len(self.since) < self.num:
            self.since[self.queued.popleft()] = time.monotonic()

    def wait(self, timeout: float) -> list[_Done]:
        finished, next_check = self._timed_out()
        done: list[_Done] = []
        for job in _drain(self.finished, 0 if finished else min(timeout, next_check)):
            if job not in self.futures:
                continue  # reported as timed out already
            future, first = self.futures.pop(job)
            if self.since.pop(job, None) is None and self.limit is not None:
                self.queued.remove(job)  # it ran before we counted it as started
            # An engine's own failure (a lost worker, say) raises here.
            results, error, seconds = cast("tuple[list[Any], Any, float]", future.result())
            exc = None if error is None else _chunk_error(error, first, "on the executor", self.limit)
            done.append(_Done(job, results, exc, seconds))
        self._start_queued()
        return finished + done

    def _timed_out(self) -> tuple[list[_Done], float]:
        """Calls that ran out of time (cancelled if the executor can), and seconds to the next deadline."""
        limit = self.limit
        if limit is None:
            return [], _TICK
        late, next_check = _overdue(list(self.since.items()), limit)
        finished: list[_Done] = []
        for job, since in late:
            future, first = self.futures.pop(job)
            del self.since[job]
            future.cancel()
            error = _timeout_error(limit, first, "on the executor")
            _add_note(
                error, "a call that runs on an executor runs on unless the executor's cancel() stops it"
            )
            finished.append(_Done(job, [], error, time.monotonic() - since))
        return finished, next_check

    def close(self, abort: bool) -> None:
        for future, _ in self.futures.values():
            future.cancel()  # only what has not started; nobody waits for the rest
        self.futures.clear()


def _run_chunk(task: bytes, star: bool, chunk: _Chunk) -> tuple[list[Any], Any, float]:
    """Run one chunk of a map on an executor's worker (see `_ExecutorPool`)."""
    results, failure, seconds = _call_each(_load_task(task), star, chunk)
    return results, None if failure is None else (len(results), _pack_exception(failure)), seconds


_TASKS: dict[bytes, Callable[..., Any]] = {}  # on an executor's worker: tasks already unpickled


def _load_task(task: bytes) -> Callable[..., Any]:
    func = _TASKS.get(task)
    if func is None:
        if len(_TASKS) > 16:
            _TASKS.clear()
        func = _TASKS[task] = pickle.loads(task)
    return func


class _MapWorker:
    """The parent's end of one process worker of a map.

    Jobs are written without blocking: what the pipe can't take now waits in
    `unsent` until the pipe is writable. So the parent never waits on a
    worker's pipe while that worker waits on the parent to read its results.
    """

    def __init__(
        self,
        process: _Process,
        link: _Link | None,
        jobs: Connection,
        results: Connection,
        clock: _SharedInts | None,
    ) -> None:
        self.process = process
        self.link = link  # its pipes for queues the task captured, if any
        self.jobs = jobs  # we write raw frames on their fds (see _write_frame)
        self.results = results
        self.jobs_fd = jobs.fileno()
        self.results_fd = results.fileno()
        os.set_blocking(self.jobs_fd, False)
        self.unsent: list[memoryview] = []
        self.in_flight: dict[int, tuple[int, int]] = {}  # job -> (first item, items), for errors
        self.clock = clock  # what it runs now, with a time limit (see _Clock)
        self.interrupted = 0.0  # when we interrupted its call that ran out of time
        self.stopped = False  # told that there are no more jobs (see `_ProcessPool.no_more_input`)
        self.late_item = 0  # and that call's input item

    def send(self, data: bytes) -> None:
        self.unsent += _frame_views(data)
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now."""
        try:
            while self.unsent:
                self.unsent = _writev(self.jobs_fd, self.unsent)
        except BlockingIOError:
            pass  # the pipe is full: the rest goes when it is writable
        except OSError:
            self.unsent = []  # the worker is gone: its sentinel will say how

    def who(self) -> str:
        return f"map worker {self.process.name} (pid {self.process.pid})"

    def items(self, job: int | None = None) -> str:
        """The input items of `job` (default: the one running now), for error messages."""
        if job is None:
            job = min(self.in_flight)  # a worker runs its jobs in order
        first, count = self.in_flight[job]
        return f"input item {first}" if count == 1 else f"input items {first}-{first + count - 1}"

    def release(self) -> None:
        """Let go of its pipes (once its process has ended)."""
        _retire(self.link)
        self.jobs.close()
        self.results.close()


class _ProcessPool(_Pool):
    """Process workers, each with its own pipes; chunks go to the least busy one.

    Workers start as they are needed. The first chunk is a probe: if its
    answer takes longer than `_PROBE` seconds (slow tasks, or a slow start
    under spawn), all the workers start; if it comes quickly, the scheduler
    decides from what it measures (see `_Chunker.workers_needed`). A tiny
    task on a small machine then runs in one worker and leaves the other
    CPUs to the caller's loop.

    With a time limit, a call that runs out of time is interrupted (the
    worker raises `_TimedOut` in it and reports its chunk as usual), and its
    worker killed; one that doesn't stop within `_GRACE` seconds is killed
    with its worker.
    """

    def __init__(self, payload: _Payload, num: int, limit: float | None) -> None:
        self.num = num
        self.payload = payload
        self.limit = limit
        self.workers: list[_MapWorker] = []
        self.active = 1  # the first `active` workers get new chunks
        self.probe_sent = 0.0  # when the probe went; 0 when there is no probe (any more)
        self.poller = select.poll()
        self.by_fd: dict[int, _MapWorker] = {}
        self.writing: set[_MapWorker] = set()  # workers whose jobs fd we poll for POLLOUT
        self.input_done = False
        self._start_worker()

    def _start_worker(self) -> None:
        jobs_r, jobs_w = multiprocessing.Pipe(duplex=False)
        results_r, results_w = multiprocessing.Pipe(duplex=False)
        _grow_pipe(jobs_w)
        _grow_pipe(results_w)
        clock = None if self.limit is None else _SharedInts(3)
        name = f"map-{next(_worker_count)}"
        try:
            process, link = self.payload.start(_map_worker, (jobs_r, results_w, clock), name)
        except BaseException:
            jobs_w.close()
            results_r.close()
            self.close(abort=True)
            raise
        worker = _MapWorker(process, link, jobs_w, results_r, clock)
        self.workers.append(worker)
        for fd in (worker.results_fd, worker.process.sentinel):
            self.poller.register(fd, select.POLLIN)
            self.by_fd[fd] = worker
        self.by_fd[worker.jobs_fd] = worker

    def use(self, workers: int) -> None:
        self.active = max(1, min(workers, self.num))
        while len(self.workers) < self.active and not self.input_done:
            self._start_worker()

    def no_more_input(self) -> None:
        self.input_done = True
        self._stop_idle()

    def _stop_idle(self) -> None:
        """Tell the workers that have no chunk left that there are no more, so that they
        exit while the caller reads the last results, not when it is done with them."""
        for worker in self.workers:
            if not worker.in_flight and not worker.stopped:
                worker.send(b"")  # an empty frame: "no more jobs", and the worker exits
                worker.stopped = True
                for fd in (worker.results_fd, worker.process.sentinel):  # its exit is no news
                    self.by_fd.pop(fd, None)
                    with contextlib.suppress(KeyError):  # (a results pipe that saw EOF is out already)
                        self.poller.unregister(fd)

    def free(self) -> bool:
        depth = 1 if self.probe_sent else _DEPTH  # a probe waits alone: it may be slow
        return any(len(w.in_flight) < depth for w in self.workers[: self.active])

    def submit(self, job: int, first: int, chunk: _Chunk) -> int:
        worker = min(self.workers[: self.active], key=lambda w: len(w.in_flight))
        data = _dumps_chunk(job, chunk, first)
        worker.send(data)
        worker.in_flight[job] = (first, len(chunk))
        if first == 0:
            self.probe_sent = time.monotonic()
        return len(data)

    def wait(self, timeout: float) -> list[_Done]:
        for worker in self.workers:
            if worker.unsent and worker not in self.writing:
                self.poller.register(worker.jobs_fd, select.POLLOUT)
                self.writing.add(worker)
        finished, next_check = self._timed_out()
        timeout = 0 if finished else min(timeout, next_check)
        if self.probe_sent:
            timeout = min(timeout, max(0.0, self.probe_sent + _PROBE - time.monotonic()))
        dead = None
        for fd, _ in self.poller.poll(timeout * 1000):
            if fd not in self.by_fd:
                continue  # killed above, for a call that ran out of time
            worker = self.by_fd[fd]
            if fd == worker.jobs_fd:
                worker.flush()
                if not worker.unsent:
                    self.poller.unregister(fd)
                    self.writing.discard(worker)
            elif fd == worker.results_fd:
                try:
                    done = self._read(worker)
                except EOFError:  # it died; its sentinel says how
                    self.poller.unregister(fd)
                    continue
                finished.append(done)
                if worker.interrupted and done.error is not None:
                    self._drop(worker)  # it stopped the call that ran out of time; it goes too
            elif worker.interrupted:  # dead, having been interrupted: the timeout says why
                finished += self._abandon(worker)
            else:
                dead = worker
        if dead is not None:
            self._died(dead)
        if self.probe_sent and (finished or time.monotonic() >= self.probe_sent + _PROBE):
            probe = finished[0] if finished else None
            if probe is None or probe.seconds / max(len(probe.results), 1) >= _WORTH_A_WORKER:
                self.use(self.num)  # slow tasks, or slow to start: use every worker
            self.probe_sent = 0.0
        if self.input_done and finished:
            self._stop_idle()
        return finished

    def _timed_out(self) -> tuple[list[_Done], float]:
        """Interrupt calls that ran out of time, and kill the workers that don't stop them in
        time (returning their chunks); also return the seconds until the next deadline."""
        limit = self.limit
        if limit is None:
            return [], _TICK
        calls: list[tuple[tuple[_MapWorker, int], float]] = []  # (worker, item), since
        interrupted: list[tuple[_MapWorker, float]] = []  # worker, since when
        for worker in self.workers:
            assert worker.clock is not None
            running = _running(worker.clock.view)
            if not worker.interrupted:
                if running is not None:
                    calls.append(((worker, running[0]), running[1]))
            elif running is None or running[0] != worker.late_item:
                worker.interrupted = 0.0  # it returned as it was interrupted; it goes on
            else:
                interrupted.append((worker, worker.interrupted))
        late, next_check = _overdue(calls, limit)
        stubborn, next_grace = _overdue(interrupted, _GRACE)
        finished: list[_Done] = []
        for worker, _ in stubborn:
            finished += self._abandon(worker)
        for (worker, item), _ in late:
            assert worker.clock is not None
            worker.clock.view[2] = item + 1
            worker.interrupted, worker.late_item = time.monotonic(), item
            with contextlib.suppress(ProcessLookupError):
                os.kill(cast(int, worker.process.pid), _INTERRUPT)
            next_grace = min(next_grace, _GRACE)
        return finished, min(next_check, next_grace)

    def _abandon(self, worker: _MapWorker) -> list[_Done]:
        """Kill a worker whose call ran out of time and didn't stop (or died); report its chunk."""
        finished: list[_Done] = []
        with contextlib.suppress(EOFError):
            while worker.in_flight and _readable(worker.results_fd):
                finished.append(self._read(worker))  # what it sent before
                if finished[-1].error is not None:  # it did stop the call, as it died
                    self._drop(worker)
                    return finished
        job = min(worker.in_flight)  # the one it runs: it runs its jobs in order
        first, _ = worker.in_flight[job]
        item = worker.late_item
        self._drop(worker)
        assert self.limit is not None
        error = _timeout_error(self.limit, item, f"in {worker.who()}")
        lost = f"; the results of input items {first}-{item - 1} went with it" if item > first else ""
        _add_note(
            error, f"the call did not stop within {_GRACE} s of an interrupt: ezq killed the worker{lost}"
        )
        return [*finished, _Done(job, [], error, 0.0)]

    def _drop(self, worker: _MapWorker) -> None:
        """Kill a worker and forget it, in the middle of a map."""
        _kill([worker.process])
        for fd in (worker.results_fd, worker.process.sentinel, worker.jobs_fd):
            self.by_fd.pop(fd, None)
            with contextlib.suppress(KeyError):
                self.poller.unregister(fd)
        self.writing.discard(worker)
        self.workers.remove(worker)
        worker.release()

    def _read(self, worker: _MapWorker) -> _Done:
        job, results, error, seconds = pickle.loads(_read_frame(worker.results_fd))
        if job == -1:  # the worker could not even load the task
            raise _unpack_exception(error[1], f"raised in {worker.who()} while loading the task")
        if job == -2:  # nor the chunk it was sent
            raise _unpack_exception(error[1], f"raised in {worker.who()} while unpickling {worker.items()}")
        exc = None
        if error is not None:
            exc = _chunk_error(error, worker.in_flight[job][0], f"in {worker.who()}", self.limit)
        del worker.in_flight[job]
        return _Done(job, results, exc, seconds)

    def _died(self, worker: _MapWorker) -> None:
        """Raise for a worker that exited in the middle of a map."""
        try:
            while worker.in_flight and _readable(worker.results_fd):
                self._read(worker)  # what it finished before it died
        except EOFError:
            pass
        _join(worker.process)
        code = worker.process.exitcode or 0
        running = f" while running {worker.items()}" if worker.in_flight else ""
        raise WorkerError(f"{worker.who()} {_describe_exit(code)}{running}", worker.process.name, code)

    def close(self, abort: bool) -> None:
        if abort:
            _kill([w.process for w in self.workers])
        for worker in self.workers:
            if not abort and not worker.stopped:
                worker.send(b"")  # an empty frame: "no more jobs", and the worker exits
            _join(worker.process)
            worker.release()


_HEADER = 8
"""Bytes of the length that starts a frame on a map pipe or a downlink (little-endian)."""


def _write_rest(fd: int, views: list[memoryview], written: list[int], wait: bool = False) -> None:
    """Write what is left of `views` after `written`, the bytes each earlier write took.

    Each write's count goes into `written` inside C code (list.extend
    calling os.writev through builtins.map), where no signal handler can run:
    in the main thread, a handler runs just after a call returns, and an
    exception it raises there would otherwise lose the count, and with it
    where the frame stands in the pipe. With `wait`, wait until a
    non-blocking `fd` takes more.
    """
    while rest := _skip(views, sum(written)):
        if wait:
            _wait_writable(fd)
        written.extend(builtins.map(os.writev, (fd,), (rest,)))


def _read_rest(fd: int, buffer: bytearray, counts: list[int], before: int = 0) -> None:
    """Fill what is left of `buffer`, from a blocking `fd`.

    `counts` holds the bytes each earlier read took, `before` of them into
    earlier buffers; each read's count goes into it inside C code (see `_write_rest`).
    """
    view = memoryview(buffer)
    while (got := sum(counts) - before) < len(buffer):
        counts.extend(builtins.map(os.readv, (fd,), ([view[got:]],)))
        if not counts[-1]:
            raise EOFError("the other end closed the pipe")


def _writev(fd: int, views: list[memoryview]) -> list[memoryview]:
    """Write as much of `views` as `fd` takes in one call; return what is left."""
    return _skip(views, os.writev(fd, views))


def _skip(views: list[memoryview], count: int) -> list[memoryview]:
    """`views` without their first `count` bytes (a new list: `views` is left as it is)."""
    index = 0
    while index < len(views) and count >= len(views[index]):
        count -= len(views[index])
        index += 1
    rest = views[index:]
    if rest and count:
        rest[0] = rest[0][count:]
    return rest


def _frame_views(data: bytes) -> list[memoryview]:
    """A frame of a map pipe or a downlink, to write: its length, then `data`."""
    return [memoryview(len(data).to_bytes(_HEADER, "little")), memoryview(data)]


def _write_frame(fd: int, data: bytes) -> None:
    """Write one frame to a blocking `fd`."""
    views = _frame_views(data)
    while views:
        views = _writev(fd, views)


def _read_frame(fd: int) -> bytearray:
    """Read one length-prefixed frame from a blocking `fd`."""
    return _read_exactly(fd, int.from_bytes(_read_exactly(fd, _HEADER), "little"))


def _read_exactly(fd: int, size: int) -> bytearray:
    data = bytearray(size)
    _read_rest(fd, data, [])
    return data


def _wait_writable(fd: int) -> None:
    """Wait until a pipe can take more (or its reader has gone)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll()


def _readable(fd: int) -> bool:
    """`True` if `fd` has data (or an end of file) to read now."""
    return _wait_any([fd], 0)  # poll, not select: select() can't take fds >= 1024


def _wait_any(handles: list[Any], timeout: float) -> bool:
    """Wait until one of `handles` (fds, or objects with `fileno()`) is readable; `False` on timeout.

    Like `multiprocessing.connection.wait`, without building a selector each time.
    """
    poller = select.poll()
    for handle in handles:
        poller.register(handle, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _grow_pipe(conn: Connection) -> None:
    """Give a map pipe a 1 MiB buffer (Linux): fewer wake-ups for large items."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ"), _CHUNK_BYTES)  # noqa: B009 (Linux only)
    except (ImportError, AttributeError, OSError):
        pass


def _dumps_chunk(job: int, chunk: _Chunk, first: int) -> bytes:
    """Pickle a chunk of map input, or raise naming the item that can't go."""
    try:
        return _dumps((job, first, chunk), what="a chunk of map input")
    except Exception:
        for index, item in enumerate(chunk):
            _dumps(item, what=f"map input item {first + index}")
        raise


def _map_worker(
    data: bytes,
    ends: _Ends,
    lifeline: Connection,
    jobs: Connection,
    results: Connection,
    clock: _SharedInts | None,
) -> None:
    """Body of a map process worker: run chunks until an empty frame says stop.

    With a time limit, it keeps `clock` (see `_Clock`) and stops a call when
    the parent signals that it ran out of time.
    """
    _worker_setup(lifeline)
    jobs_fd, results_fd = jobs.fileno(), results.fileno()
    try:
        (task, star), remotes = _Payload.load(data, ends)
    except BaseException as exc:  # e.g. the task's module can't be imported here
        _write_frame(results_fd, pickle.dumps((-1, [], (0, _pack_exception(exc)), 0.0), protocol=5))
        return
    view = None if clock is None else clock.view
    if view is not None:
        signal.signal(_INTERRUPT, functools.partial(_on_interrupt, view))
    try:
        while frame := _read_frame(jobs_fd):
            try:
                job, first, chunk = pickle.loads(frame)
            except BaseException as exc:  # e.g. an item's class can't be imported here
                _write_frame(results_fd, pickle.dumps((-2, [], (0, _pack_exception(exc)), 0.0), protocol=5))
                break
            out, failure, seconds = _call_each(task, star, chunk, first, view)
            error = None if failure is None else (len(out), _pack_exception(failure))
            try:
                reply = _dumps((job, out, error, seconds), "map results", travels=False)
            except Exception:  # (the SIGUSR2 handler raises a BaseException, never this)
                reply = _dumps_results(job, out, error, seconds)
            _write_frame(results_fd, reply)
    except EOFError:
        pass  # the parent is gone (the lifeline thread ends us anyway)
    for remote in remotes:
        remote.close()


def _dumps_results(job: int, out: list[Any], error: Any, seconds: float) -> bytes:
    """Report the first result of a chunk that can't be pickled, as its error."""
    for index, result in enumerate(out):
        try:
            _dumps(result, what=f"the result of map item {index} of its chunk", travels=False)
        except Exception as exc:
            return pickle.dumps((job, out[:index], (index, _pack_exception(exc)), seconds), protocol=5)
    raise TypeError("cannot pickle the results of a chunk")  # (each alone can: not seen so far)


def _call_each(
    task: Callable[..., Any],
    star: bool,
    chunk: _Chunk,
    first: int = 0,
    clock: _Clock | None = None,
    results: list[Any] | None = None,
) -> tuple[list[Any], BaseException | None, float]:
    """Run a chunk of a map: its results, the exception that stopped it (if any), and how long it took.

    On an exception, the results of the items before it are kept, so that
    they can be yielded before the exception is raised. With a `clock`
    (for a time limit), it says which input item (`first` + index) runs
    since when; `results` may be given, to be seen while the chunk runs.
    """
    if results is None:
        results = []
    append = results.append
    start = time.perf_counter()
    try:
        if clock is not None:
            for item, arg in enumerate(chunk, first + 1):
                clock[1] = time.monotonic_ns()  # the start first: see _running
                clock[0] = item
                append(task(*arg) if star else task(arg))
            clock[0] = 0
        elif star:
            for args in chunk:
                append(task(*args))
        else:
            for arg in chunk:
                append(task(arg))
    except BaseException as exc:
        if clock is not None and clock[0]:
            del results[clock[0] - 1 - first :]  # an interrupt may land just after the call returned
            clock[0] = 0
        error = exc
        if isinstance(exc, SystemExit):  # raised in the caller, it would end the program without a word
            error = WorkerError(f"the task called sys.exit({exc.code!r})").with_traceback(exc.__traceback__)
            error.__cause__ = exc
        return results, error, time.perf_counter() - start
    return results, None, time.perf_counter() - start


def _check_message(kind: object, order: object) -> None:
    """Check what callers without type checking may pass to `Q.put`."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a str, not {type(kind).__name__}: {kind!r}")
    if not isinstance(order, int) or isinstance(order, bool):
        raise TypeError(f"order must be an int, not {type(order).__name__}: {order!r}")


def _check_callable(task: object) -> None:
    if not callable(task):
        raise TypeError(f"task must be callable, not {type(task).__name__}: {task!r}")


def _check_timeout(value: object) -> float | None:
    """A time limit in seconds (`None` or infinity: none), checked."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"timeout must be a number of seconds > 0 or None, not {type(value).__name__}")
    if not value > 0:  # also NaN
        raise ValueError(f"timeout must be a number of seconds > 0 or None, not {value!r}")
    return None if math.isinf(value) else float(value)


def _check_count(name: str, value: object, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= 1, not {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value!r}")
    return value
