"""Simple wrappers for multiprocessing and threading: queues, workers and a parallel map.

>>> import ezq
>>> list(ezq.map(abs, [-1, 2, -3], kind="thread"))
[1, 2, 3]

One file, one dependency (`dill`, for lambdas and closures in process workers).
Copy it into your project if you like. POSIX only (Linux, macOS).

How it works
------------
In the process that starts workers, one thread, the hub, owns every pipe to
a worker, every worker process and every timer. Your threads hand it work
in one atomic step each (a message appended to a queue's deque, a request
appended to the hub's inbox) and take answers the same way, so a Ctrl-C in
one of them lands before or after a hand-off, never inside shared state::

    your threads                     the hub (a thread)                  a worker process
    q.put(x) --pickle--> [Q's frames] --a batch--> [down pipe] --> pump --> for msg in q:
    for msg in q: <----- [Q's frames] <----------- [up pipe]   <-- pump <-- q.put(y)
    run(), map() -----> [inbox] --> fork, or ask the fork server --> a new worker
    map(): chunks -----> [inbox] --> [down pipe] ...       results <-- [up pipe]
    join(), stop() <---- its end (up pipe closed, exit code known)

- A worker has two pipes: down (its task, map chunks, batches of its queues'
  messages) and up (what it puts, requests for batches, map results, its
  report, its log records). Every pipe, and the fork server's socket, carries
  frames of one format, through one type (`_Wire`).
- The hub never blocks on a pipe: it reads what a worker writes as soon as
  it is written and writes what a pipe can't take now once it can. So a
  worker never waits on a full pipe and can always exit (the "join before
  drain" deadlock of `multiprocessing.Queue` can't happen), and a stopped or
  slow worker holds up only its own pipes.
- A queue keeps its messages in the process that made it (its home). A
  reader in a worker asks for a batch when it has none; batches grow while
  the reader keeps up and shrink to one message when each takes long, so
  slow work stays balanced and fast work moves in bulk.
- In a worker, one thread (the pump) alone reads and writes its pipes: the
  task's own signal handlers, which run in its main thread, can't cut a read
  or a write in two.
- The hub notices every worker's end (its up pipe closes) and takes its exit
  code, so `join()`, `stop()` and `map` know at once that a worker died.

Where to look: `_Hub` (its `_turn` is one round of its loop); a frame goes
out through `_Hub.send` (from your thread) to `_Wire.send` and `_Wire.flush`
(in the hub), and comes in through `_Wire.receive` to `_Hub._receive`; a
worker's end, however it is noticed, reaches `_Hub._gone`; a worker starts
in `_Hub._start` and runs `_worker_main` (its pump: `_Pump`); a map chunk
leaves in `_ProcessPool.submit`.

How process workers start
-------------------------
Under fork, the caller forks the worker (from the main thread; from another
thread, the hub does), which sees the caller's state at the call. Under
spawn and forkserver, ezq starts (once per process, on first
use) its own fork server: a fresh interpreter that has imported ezq and
nothing of the user's script, and forks each worker on request (`_serve`,
then `_served_child` in the worker). The script
never runs again; what a task needs of it travels by value (see
"Serialization").

How `map` works
---------------
`map` sends chunks of input straight to each worker's down pipe, keeps a
bounded window of chunks in flight, sizes chunks so each takes about 10 ms
of work on processes (1 ms on threads, 100 ms on an executor), and feeds only
as many workers as keep up with the caller. With `executor=`, the same
scheduler submits chunks to an executor.

NOTE: this module defines `map`, which shadows the builtin inside this file;
internally we use `builtins.map` where the builtin is meant.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (no stub: see _sigmask)
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
import multiprocessing.spawn
import os
import pickle
import queue
import re
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
from dataclasses import field
from operator import attrgetter
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import Literal
from typing import NoReturn
from typing import TypeVar
from typing import cast

if os.name != "posix":  # pragma: no cover
    raise ImportError("ezq runs on POSIX systems only (Linux, macOS): it needs fork, pipes and poll")

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Executor
    from concurrent.futures import Future

__version__ = "5.0.0"
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
            self._impl: _Home | _Away | _Local = _Home()
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
        impl = self._impl
        reader = impl.reader()  # (before the try: cut short here, it stays counted: a late give-back)
        try:
            while (msg := impl.get(reader)).kind != _END:
                yield msg
        except BaseException:  # (at the end marker, `get` has let go of the reader before taking it)
            impl.release(reader)
            raise

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
        ended = done = False
        try:
            for msg in self:
                if msg.order < expected:
                    yield msg
                    continue
                heapq.heappush(waiting, (msg.order, next(arrival), msg))
                while waiting and waiting[0][0] == expected:
                    yield heapq.heappop(waiting)[2]
                    expected += 1
            ended = True
            while waiting:
                yield heapq.heappop(waiting)[2]
            done = True
        finally:  # stopped early (a break): what was held back goes back on the queue
            while waiting:
                self.put(heapq.heappop(waiting)[2])
            if ended and not done:  # and so does the end marker it had read
                self.end()

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
        group = _workers(workers)
        limit = _check_timeout(timeout)
        # (Which ones first: a thread worker may read an end marker and finish before its turn.)
        running = [
            w for w in group if w.is_alive() and w not in self._ended
        ]  # stopped twice: no stale marker
        if running:  # (one step: the markers follow what workers wrote before, together)
            self._impl.put(None, _END, 0, len(running))
            self._ended.update(running)
        Worker._join_all(group, limit)  # pyright: ignore[reportPrivateUsage] (Q and Worker work together)
        return self

    def qsize(self) -> int:
        """Approximate number of messages waiting (end markers included)."""
        return self._impl.qsize()

    def empty(self) -> bool:
        """`True` if no message is waiting (approximate, like `qsize()`)."""
        return self.qsize() == 0

    def __reduce__(self) -> tuple[Any, ...]:
        # A process queue travels only to a worker being started, whose pipes
        # then carry its messages (see _Attach). Anywhere else there would be
        # no pipe to talk through.
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
    def _away(cls, away: _Away) -> Q[Any]:
        """The worker's side of a process queue that its parent sent it."""
        q: Q[Any] = cls.__new__(cls)
        q._impl, q.kind, q._cache, q._ended = away, "process", None, weakref.WeakSet()
        return q


## Workers ##


class Worker:
    """A function running in its own process or thread, started by `run` or `run_thread`.

    Use `Q.stop()` or `join()` to wait for it; both raise if the function
    raised (or the process died). A worker that is never waited for is
    stopped when the program exits: process workers are terminated and thread
    workers are daemon threads.
    """

    def __init__(self, name: str) -> None:
        """Use `Worker.process` / `Worker.thread` (or `run` / `run_thread`) instead."""
        self.name = name
        """The worker's name, used in error messages."""
        self._child: _Child | None = None  # a process worker, as the hub keeps it
        self._thread: _ThreadRun | None = None  # a thread worker
        self._errors: dict[str, BaseException] = {}  # the error it ended with, made once (see _error)

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
            OSError: the system can't start a process now (too many processes
                or open files): that start fails, and nothing else.
        """
        _check_callable(task)
        _check_can_start_processes()
        worker = cls(_worker_name(task))
        payload = _Payload.dump((task, args, kwargs), what="the task or its arguments")
        worker._child = _hub().start(payload, worker.name)
        return worker

    @classmethod
    def thread(cls, task: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
        """Start `task(*args, **kwargs)` in a new (daemon) thread and return its `Worker`.

        Raises:
            TypeError: `task` is not callable.
        """
        _check_callable(task)
        worker = cls(_worker_name(task))
        worker._thread = _ThreadRun(task, args, kwargs, worker.name)
        return worker

    def __repr__(self) -> str:
        kind = "process" if self._child else "thread"
        return f"<ezq.Worker {kind} {self.name!r} alive={self.is_alive()}>"

    @property
    def pid(self) -> int | None:
        """Process id of a process worker; `None` for a thread worker."""
        return self._child.pid if self._child else None

    @property
    def exitcode(self) -> int | None:
        """Exit code of a finished process worker (negative: killed by that signal); else `None`."""
        return self._child.exitcode if self._child and self._child.ended else None

    def is_alive(self) -> bool:
        """`True` while the worker's function is running."""
        return not self._finished()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the worker finishes (or `timeout` seconds pass).

        If the wait is interrupted (Ctrl-C), a process worker is terminated
        before the exception goes on.

        Raises:
            Exception: the exception the worker's function raised, with the
                worker's traceback as its `__cause__` for a process worker.
            WorkerError: the worker process died (non-zero exit code or signal).
        """
        try:
            if not _wait(self._finished, [self._changed()], timeout):
                return  # (timed out)
        except BaseException:  # Ctrl-C: take the worker down with us
            self._terminate()
            raise
        error = self._error()
        if error is not None:
            raise error

    def terminate(self) -> None:
        """Ask a process worker to stop (SIGTERM); `join()` then raises `WorkerError` naming the signal.

        The worker's function may handle SIGTERM and go on; `kill()` can't be handled.

        Raises:
            TypeError: for a thread worker: Python can't stop a thread from outside.
        """
        _hub().signal(self._process(), signal.SIGTERM)

    def kill(self) -> None:
        """Stop a process worker now (SIGKILL); `join()` then raises `WorkerError` naming the signal.

        Raises:
            TypeError: for a thread worker: Python can't stop a thread from outside.
        """
        _hub().signal(self._process(), signal.SIGKILL)

    def _process(self) -> _Child:
        if self._child is None:
            raise TypeError(f"worker {self.name!r} is a thread: Python can't stop a thread from outside")
        return self._child

    def _finished(self) -> bool:
        if self._child is not None:
            return self._child.ended
        return self._thread is None or self._thread.done

    def _changed(self) -> _Event:
        return self._child.changed if self._child is not None else cast(_ThreadRun, self._thread).changed

    def _error(self) -> BaseException | None:
        """What the finished worker ended with: its function's exception, or a `WorkerError` if it died.

        Made once, so that every `join()` raises the same exception object.
        """
        if not self._errors:
            error = self._child.error() if self._child is not None else cast(_ThreadRun, self._thread).error
            if error is None:
                return None
            self._errors.setdefault("error", error)  # (one step: another thread may be here too)
        return self._errors["error"]

    def _died(self) -> bool:
        """`True` if this finished process worker died instead of returning or raising."""
        error = self._error()
        return isinstance(error, WorkerError) and error.exitcode is not None

    def _terminate(self) -> None:
        """Stop a process worker now, and wait (a little) for it to go; a thread worker can't be stopped."""
        if self._child is not None and not self._child.ended:
            _hub().end_child(self._child)
            _wait(self._finished, [self._changed()], _GRACE + 1)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a Worker can't be sent to another process: join it where it was started")

    @staticmethod
    def _join_all(workers: list[Worker], timeout: float | None = None) -> None:
        """Wait for every worker (at most `timeout` seconds); raise the first failure (see `Q.stop`)."""

        def settled() -> bool:  # all done, or one died
            return all(w._finished() for w in workers) or any(w._finished() and w._died() for w in workers)

        try:
            if not _wait(settled, [w._changed() for w in workers], timeout):
                pending = [w for w in workers if not w._finished()]
                names = ", ".join(
                    repr(w.name) + ("" if w.pid is None else f" (pid {w.pid})") for w in pending
                )
                raise TimeoutError(f"{len(pending)} worker(s) still running after {timeout} s: {names}")
        except TimeoutError:
            raise  # the caller decides what becomes of the workers
        except BaseException:  # Ctrl-C: take the workers down
            for worker in workers:
                worker._terminate()
            raise
        dead = next((w for w in workers if w._finished() and w._died()), None)
        if dead is not None:  # a worker died: take the others down, as their queue may have lost messages
            pending = [w for w in workers if not w._finished()]
            for worker in pending:
                worker._terminate()
            error = cast(BaseException, dead._error())
            if pending:
                _add_note(error, f"ezq terminated the {len(pending)} other worker(s) being stopped")
            raise error
        failed = [error for error in (w._error() for w in workers) if error is not None]
        if failed:
            if len(failed) > 1:
                _add_note(
                    failed[0], f"{len(failed)} of {len(workers)} workers failed; this is the first error"
                )
            raise failed[0]


def run(task: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
    """Start `task(*args, **kwargs)` in a process worker (alias of `Worker.process`)."""
    return Worker.process(task, *args, **kwargs)


def run_thread(task: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
    """Start `task(*args, **kwargs)` in a thread worker (alias of `Worker.thread`)."""
    return Worker.thread(task, *args, **kwargs)


def _workers(workers: object) -> list[Worker]:
    """`workers` as a list: a `Worker`, or an iterable of them (checked: callers may be untyped)."""
    group = [workers] if isinstance(workers, Worker) else workers
    try:
        group = list(cast(Iterable[object], group))
    except TypeError:
        raise TypeError(
            f"expected a Worker or an iterable of Workers, not {type(workers).__name__}"
        ) from None
    for worker in group:
        if not isinstance(worker, Worker):
            raise TypeError(f"expected a Worker or an iterable of Workers, got a {type(worker).__name__}")
    return cast(list[Worker], group)


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
            stop (even a bare `except:` that swallows the interrupt doesn't
            keep the call from timing out). A thread can't be stopped: the
            call runs on in its daemon thread (which doesn't keep the program
            from exiting) and its result is dropped. With an `executor`,
            chunks hold one item (`chunksize` must be 1 or left out), a
            call's clock starts when it is among the `num` oldest unfinished
            calls, and a call that runs out of time is cancelled only if the
            executor can cancel a running call (`concurrent.futures` can't:
            it runs on).

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

## Waiting ##

_TICK = 0.25
"""Longest that ezq's threads sleep before they look around again.

A wait in your threads returns to Python at least this often: a Ctrl-C's
SIGINT may be delivered to any thread, and Python runs its handler in the
main thread only once that thread runs Python code again. And the hub wakes
at least this often: a hand-off that an exception cut between its step and
its wake-up call (see `_Hub.poke`) is still taken within this time.
"""

_SIGNALS = signal.valid_signals()
"""Every signal: ezq's own threads block them all, so that handlers run in your threads."""

_sigmask = cast(Callable[[int, Iterable[int]], object], _signal.pthread_sigmask)  # pyright: ignore[reportUnknownMemberType]
"""`signal.pthread_sigmask` itself, in C: the `signal` module's is Python code, where a signal
handler can run (and raise) before it blocks (see `_ignore_task_signals`)."""


class _Event:
    """Something your threads wait for (see `_wait`); `notify` wakes those that wait.

    Not a `threading.Condition`: its `wait` releases and retakes a lock in
    Python code, where a Ctrl-C can leave the lock held or released twice.
    Here a waiter is a lock of its own that `notify` releases: an exception
    anywhere leaves at most a stale waiter, which the next `notify` drops.
    """

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: collections.deque[_thread.LockType] = collections.deque()

    def notify(self) -> None:
        waiters = self.waiters
        while waiters:
            try:
                waiter = waiters.popleft()
            except IndexError:  # another thread took the last one
                return
            with contextlib.suppress(RuntimeError):  # released already (it waited on another event too)
                waiter.release()


def _wait(ready: Callable[[], object], events: Iterable[_Event], timeout: float | None = None) -> bool:
    """Wait until `ready()` is true (`True`) or `timeout` seconds have passed (`False`).

    The one way ezq waits in your threads: woken by `notify` of one of
    `events`, and at least every `_TICK`. Raises if ezq's hub has failed.
    """
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    waiter = _thread.allocate_lock()
    waiter.acquire()
    armed = False
    while True:
        _check_hub()
        if ready():
            return True
        if not armed:  # (then look again: a change between the look and the arming would go unseen)
            for event in events:
                event.waiters.append(waiter)
            armed = True
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if waiter.acquire(True, min(left, _TICK)):
            armed = False  # a notify took it off its list and released it: it is ours again


class _Future(Generic[R]):
    """The answer to a request to the hub: `set` there, taken by `result` in the asking thread."""

    __slots__ = ("changed", "done", "error", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: R | None = None
        self.error: BaseException | None = None
        self.changed = _Event()

    def set(self, value: R | None = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.done = value, error, True
        self.changed.notify()

    def result(self, timeout: float | None = None) -> R:
        """Wait for the answer; raise what the hub raised answering, or `TimeoutError`."""
        if not _wait(lambda: self.done, [self.changed], timeout):
            raise TimeoutError(f"no answer from ezq's hub within {timeout} s")
        if self.error is not None:
            raise self.error
        return cast(R, self.value)


## The wire ##
#
# Every pipe between processes, and the fork server's socket, carries frames:
# a head (payload length, tag, index) and a payload. The index is a queue's
# place among a worker's queues, or a request's number. A `_Wire` is one end
# of such a pipe; it never blocks (what a pipe can't take now waits in the
# wire until it can), and only one thread uses it (the hub, a worker's pump,
# or the fork server): another thread hands frames to that thread.

_HEAD = struct.Struct("<QBI")  # payload length (64 bits: any size), tag, index

# Down a worker's pipe (from the hub):
_TASK = 1  # what it runs: its queues' sizes, then the settings and the task, pickled (see _Payload)
_JOB = 2  # a chunk of map input
_BATCH = 3  # messages of the queue `index` for a reader that asked (see _Home.dispatch)
_STOP = 4  # a map has no more chunks for it
# Up a worker's pipe (to the hub):
_PUT = 5  # a message for the queue `index` (a frame, see _encode; an end marker starts with _END_TAG)
_ASK = 6  # a reader wants up to `index` messages of the queue... (payload: the queue's place, 4 bytes)
_GIVE_BACK = 7  # messages of the queue `index` that a reader fetched and will not read
_RESULT = 8  # the results of a map chunk
_DONE = 9  # its task has returned (payload: b"") or raised (payload: the exception, packed);
# index: how many threads its task left running (the worker waits for them before it exits)
_LOG = 10  # a log record, for the parent's handlers (see _forward_logs)
_HELLO = 15  # its first frame: it runs (payload: its pid), and has its ends of its pipes
# On the fork server's socket:
_START = 11  # to the server: start a worker (`index`: the request's number; file descriptors beside it)
_STARTED = 12  # from the server: the worker of request `index` runs (payload: its pid)
_FAILED = 13  # from the server: request `index` failed (payload: why)
_EXITED = 14  # from the server: a worker has exited (payload: its pid and exit code)

_PID = struct.Struct("<ii")  # a pid, and an exit code (in _STARTED and _EXITED)
_QUEUE = struct.Struct("<I")  # a queue's place among a worker's queues (in _ASK)

_LARGE_FRAME = 1 << 16
"""Frames this big or bigger are read straight into a buffer of their own. Below
it, copying through the wire's buffer costs less than allocating; above it, a
copy of the whole message would cost more than the read."""

_COALESCE = 256
"""Most frames one write takes: many small frames go in one system call."""

_Frame = tuple[int, int, bytes | bytearray]
"""A frame as read: tag, index, payload."""

_Frames = collections.deque[bytes | bytearray]
"""A queue's messages, encoded: at home, or fetched by a worker."""


class _Wire:
    """One end of a pipe (or a socket) that carries frames; it never blocks.

    `send` may be called from any thread: it appends the frame to `outbox`,
    in one step. Everything else is for the one thread that owns the wire,
    which writes what `outbox` holds with `flush` and reads with `receive`.
    `returns` keeps, beside each frame still to write, what goes back to its
    queue if the reader goes away before it is all written (see `_Child.end`).
    """

    def __init__(self, fd: int, sock: socket.socket | None = None) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.sock = sock  # to pass file descriptors with a frame (the fork server's socket)
        self.outbox: collections.deque[tuple[list[memoryview], list[int], Any]] = collections.deque()
        self.unsent: list[memoryview] = []
        self.unsent_fds: list[int] = []
        self.unsent_returns: list[Any] = []  # what goes back if the frames in `unsent` never arrive
        self.buffer = bytearray()  # what has been read of the frames not yet whole
        self.large: tuple[int, int, bytearray, int] | None = None  # tag, index, payload, bytes read
        self.fds: collections.deque[int] = collections.deque()  # file descriptors received (sockets)
        self.closed = False  # the other end has closed (or we did)

    def send(
        self,
        tag: int,
        index: int,
        payload: bytes | bytearray = b"",
        fds: list[int] | None = None,
        returns: Any = None,
    ) -> None:
        """Queue a frame (any thread may call this); the owner writes it (`flush`).

        File descriptors in `fds` go beside it (on a socket): the wire closes them once sent.
        """
        head = memoryview(_HEAD.pack(len(payload), tag, index))
        self.outbox.append(([head, memoryview(payload)] if payload else [head], fds or [], returns))

    def pending(self) -> bool:
        return bool(self.unsent or self.outbox)

    def flush(self) -> bool:
        """Write what the pipe takes now; `True` once all is written.

        Raises:
            OSError: the other end has gone (BrokenPipeError).
        """
        while True:
            if not self.unsent:
                if not self.outbox:
                    return True
                self._take()
            try:
                if self.unsent_fds:
                    fds = self.unsent_fds
                    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
                    count = cast(socket.socket, self.sock).sendmsg(self.unsent, rights)
                    self.unsent_fds = []
                    _close_all(fds)
                else:
                    count = os.writev(self.fd, self.unsent)
            except BlockingIOError:
                return False
            self.unsent = _skip(self.unsent, count)
            if not self.unsent:
                for sent in self.unsent_returns:
                    if type(sent) is _Sent:
                        sent.done = True
                self.unsent_returns = []

    def _take(self) -> None:
        """Move frames from `outbox` to `unsent`: several small ones for one write."""
        views, fds, returns = self.outbox.popleft()
        self.unsent, self.unsent_fds, self.unsent_returns = views, fds, [returns]
        size = sum(len(view) for view in views)
        while not fds and self.outbox and len(self.unsent) < _COALESCE and size < _LARGE_FRAME:
            views, fds, returns = self.outbox[0]
            if fds:
                break
            self.outbox.popleft()
            self.unsent += views
            self.unsent_returns.append(returns)
            size += sum(len(view) for view in views)

    def unwritten(self) -> list[Any]:
        """What goes back of the frames not all written (the reader has gone); empties the wire."""
        returns = [*self.unsent_returns, *(entry[2] for entry in self.outbox)]
        _close_all([*self.unsent_fds, *(fd for entry in self.outbox for fd in entry[1])])
        self.outbox.clear()
        self.unsent, self.unsent_fds, self.unsent_returns = [], [], []
        return [item for item in returns if item is not None]

    def receive(self) -> list[_Frame]:
        """The frames that have arrived whole; `closed` is set once the other end has closed.

        A read that leaves room in the buffer has emptied the pipe: we stop
        there rather than read again to be told so (that read would give up
        the GIL, often to the thread we just handed a message, and wait to
        get it back).
        """
        frames: list[_Frame] = []
        while not self.closed:
            try:
                if self.large is not None:
                    tag, index, payload, got = self.large
                    view = memoryview(payload)[got:]
                    count = os.readv(self.fd, [view])
                    if count:
                        got += count
                        self.large = None if got == len(payload) else (tag, index, payload, got)
                        if self.large is None:
                            frames.append((tag, index, payload))
                        elif count < len(view):
                            break
                        continue
                else:
                    count = self._read()
                    if count:
                        self._parse(frames)
                        if count < len(_SCRATCH):
                            break
                        continue
            except BlockingIOError:
                break
            except OSError:  # (ECONNRESET on a socket)
                pass
            self.closed = True  # end of file
        return frames

    def _read(self) -> int:
        if self.sock is None:
            count = os.readv(self.fd, [_SCRATCH])
            self.buffer += _SCRATCH[:count]
            return count
        data, fds, _, _ = socket.recv_fds(self.sock, len(_SCRATCH), 64)
        self.fds.extend(fds)
        self.buffer += data
        return len(data)

    def _parse(self, frames: list[_Frame]) -> None:
        """Take the whole frames in `buffer`; start reading a large one."""
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

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            if self.sock is not None:
                self.sock.close()
            else:
                os.close(self.fd)


class _Sent:
    """Set `done` once its frame is all written (see `_Pump.send`)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


_SCRATCH = bytearray(1 << 16)
"""What a wire reads into. One for the process: only one thread in a process owns wires
that it reads (the hub in the parent, the pump in a worker, the fork server's only one)."""


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


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
# (`_Server.prepare`), and a lambda raises a TypeError that asks for dill.

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
) -> type:
    """A class sent by value: the copy this process has, or a new one (the rest of its dict comes next).

    The class is made as it is, not made again: without its metaclass's own
    `__new__` and `__init__`, nor its bases' `__init_subclass__` (which may
    want keywords of the class statement that are gone): what they did is in
    the dict, which comes as it is (see `_make_class`). Only an enum is made
    by its metaclass, which makes its `members`.
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
        cls = _make_class(meta, name, bases, namespace)
    _remember(cls, token)
    _UNFINISHED.add(cls)
    return cls


class _Quiet:
    """A first base that keeps the real bases' `__init_subclass__` from running (see `_make_class`)."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        pass


class _QuietWithDict:
    """`_Quiet`, for bases whose instances have a `__dict__` (their layout must match)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        pass


def _make_class(meta: type, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
    """Make a class as `type` does, without its metaclass's `__new__` and its bases' `__init_subclass__`.

    A base's `__init_subclass__` runs when a class is made; `_Quiet`, put
    first, takes the call, then the real bases take its place, where their
    layout allows it.
    """
    if any("__init_subclass__" in vars(b) for base in bases for b in base.__mro__[:-1]):
        for quiet in (_Quiet, _QuietWithDict):
            with contextlib.suppress(TypeError):
                cls = cast(type, type.__new__(meta, name, (quiet, *bases), dict(namespace)))
                cls.__bases__ = bases
                return cls
    try:
        return cast(type, type.__new__(meta, name, bases, dict(namespace)))
    except TypeError:  # a metaclass in C that type.__new__ can't make (ctypes')
        return cast(type, meta(name, bases, dict(namespace)))


_ClassState = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
"""The rest of a class's dict; and names for the script's namespace (see `_Reducers._class`)
with the namespace they go in (it has one key: the namespace, as a `_Space`, pickles as)."""


def _finish_class(cls: type, state: _ClassState) -> None:
    """Set the rest of the dict of a class that `_script_class` made (what making it made stays)."""
    if cls not in _UNFINISHED:
        return
    _UNFINISHED.discard(cls)
    attributes, space, names = state
    for name, value in attributes.items():
        if name not in cls.__dict__:
            type.__setattr__(cls, name, value)
    for (
        name,
        value,
    ) in names.items():  # as under fork: the class under its name, and what its annotations name
        space.setdefault(name, value)
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


def _names_in(annotations: object) -> set[str]:
    """Names that string annotations use (`"list[Tag]"`: list, Tag), for `typing.get_type_hints`."""
    if not isinstance(annotations, dict):
        return set()
    texts = [value for value in cast(dict[str, object], annotations).values() if isinstance(value, str)]
    return {name for text in texts for name in re.findall(r"[A-Za-z_]\w*", text)}


_LAZY = sys.version_info >= (3, 14)
"""Annotations are evaluated lazily (PEP 649): they travel evaluated, or as strings."""


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
            _Attach.uses(obj.__name__)
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
        """`True` if the function or class `obj` travels by value (else its module, see `_Attach`)."""
        if self.mode == "by value" and obj.__module__ == "__main__":
            return True
        if self.mode != "by name" and not _found(obj, name):
            return True
        _Attach.uses(obj.__module__)
        return False

    def _function(self, func: types.FunctionType) -> Any:
        if not self._by_value(func):
            return NotImplemented
        code = func.__code__
        globals_ = func.__globals__
        annotations = _annotations(func)
        space = self._space(globals_)
        values: dict[str, Any] = {}
        if not (
            isinstance(space, _Space) and space.kind == "module"
        ):  # (a module has its own, where it arrives)
            names = {*_global_names(code), *_names_in(annotations)}
            values = {name: globals_[name] for name in names if name in globals_}
            if (
                "globals" in names
            ):  # globals()[name] finds what the code doesn't name: its functions and classes
                kin = (types.FunctionType, type)
                values.update(
                    (k, v)
                    for k, v in globals_.items()
                    if isinstance(v, kin) and v.__module__ == func.__module__
                )
        closure = func.__closure__
        attributes: dict[str, Any] = {
            "__defaults__": func.__defaults__,
            "__kwdefaults__": func.__kwdefaults__,
            "__qualname__": func.__qualname__,
            "__module__": func.__module__,
            "__doc__": func.__doc__,
            "__annotations__": annotations,
        }
        if func.__dict__:
            attributes["__dict__"] = dict(func.__dict__)
        if getattr(func, "__type_params__", ()):
            attributes["__type_params__"] = getattr(func, "__type_params__")  # noqa: B009 (3.12+)
        contents = [_cell_contents(cell) for cell in closure or ()]
        state: _FunctionState = (values, contents, attributes, _submodules(values.values(), code))
        cells = None if closure is None else len(closure)
        args = (_token(func), code, space, func.__name__, cells)
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
            if type(value) is types.FunctionType or type(value) in _DESCRIPTORS or name == "__orig_bases__":
                namespace[name] = (
                    value  # at hand as the class is made (for __init_subclass__: Generic's, say)
                )
            elif _plain(value) and (members is None or name in ("__module__", "__qualname__", "__doc__")):
                namespace[name] = value
            else:
                state[name] = value
        if _LAZY:
            state["__annotations__"] = _annotations(cls)
        names: dict[str, Any] = {}
        space: Any = {}
        if cls.__module__ == "__main__":
            main = vars(sys.modules["__main__"])
            annotations = state.get("__annotations__", namespace.get("__annotations__", {}))
            names = {name: main[name] for name in _names_in(annotations) if name in main}
            if main.get(cls.__name__) is cls:
                names[cls.__name__] = cls
            space = _Space("script", _state.script)
        args = (_token(cls), type(cls), cls.__name__, cls.__bases__, namespace, members)
        state_: _ClassState = (state, space, names)
        return (_script_class, args, state_, None, None, _finish_class)


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
    var_tuple = getattr(typing, "TypeVarTuple", None)  # (3.11+)
    if kind not in (typing.TypeVar, typing.ParamSpec, typing.NewType, var_tuple):
        return NotImplemented
    if not reducers._by_value(obj, obj.__name__):  # pyright: ignore[reportPrivateUsage]
        return (getattr, (sys.modules[obj.__module__], obj.__name__))
    kwargs: dict[str, Any] = {}
    if kind is typing.NewType:
        args: tuple[Any, ...] = (obj.__name__, obj.__supertype__)
    else:
        args = (obj.__name__, *getattr(obj, "__constraints__", ()))
        for name in ("bound", "covariant", "contravariant", "infer_variance"):
            if hasattr(obj, f"__{name}__") and (name != "bound" or kind is not var_tuple):
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


def _reduce_lock(reducers: _Reducers, obj: Any) -> Any:
    """A lock travels as a new one, unlocked: one held at the call would stay held where it arrives.

    (dill copies a lock with its state, and an RLock as held.)
    """
    kind = cast(Any, type(obj))
    if kind is type(threading.RLock()):
        return (threading.RLock, ())
    if kind is _thread.LockType:
        return (_thread.allocate_lock, ())
    return NotImplemented


_SPECIAL: dict[str, Callable[[_Reducers, Any], Any]] = {
    "_thread": _reduce_lock,
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
    """`True` if workers can import the user's script, as spawn does (see `_Server.prepare`)."""
    main = sys.modules.get("__main__")
    return os.path.isfile(getattr(main, "__file__", None) or "") or bool(getattr(main, "__spec__", None))


class _Attach:
    """Collects the process queues met while pickling what a worker gets (see `Q.__reduce__`).

    Each gets a place among the worker's queues: the index of its frames on
    the worker's pipes. Use as `with _Attach() as attach:`. It also collects
    the modules that what it pickles names, which the fork server imports
    once for all its workers (else each would import them at its start).
    """

    _local = threading.local()

    def __init__(self) -> None:
        self.homes: list[_Home] = []
        self.modules: set[str] = set()

    @classmethod
    def uses(cls, module: object) -> None:
        """What is being pickled names `module` (a module's name)."""
        attach = cls.current()
        if (
            attach is not None
            and isinstance(module, str)
            and module not in ("__main__", "builtins", __name__)
        ):
            attach.modules.add(module)

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
        for place, known in enumerate(self.homes):
            if known is home:
                return place
        home.check_home()
        self.homes.append(home)
        return len(self.homes) - 1


_ATTACHED: list[Q[Any]] = []  # in a worker: its queues, while its task is unpickled


def _attached_q(place: int) -> Q[Any]:
    """Rebuild a pickled `Q` in a worker (see `Q.__reduce__`)."""
    return _ATTACHED[place]


@dataclass
class _Settings:
    """The process-wide settings that a fork carries to a worker, taken at the call.

    Under spawn and forkserver a worker starts from a fresh interpreter, so
    what the script set at its top has to come along; under fork too, for
    the decimal context (the calling thread's) and logging (see `_forward_logs`).
    """

    recursion_limit: int
    int_max_str_digits: int | None  # 3.11+
    decimal_context: Any  # the calling thread's, where decimal is in use
    warnings_filters: list[Any]
    log_levels: dict[str, int] | None  # where logging is in use: each logger's level ("": the root's)
    log_disable: int  # logging.disable()'s level
    log_forward: bool  # the script has configured handlers: workers' records go to them

    @classmethod
    def now(cls) -> _Settings:
        decimal = sys.modules.get("decimal")
        logging = sys.modules.get("logging")
        levels = None
        forward = False
        disable = 0
        if logging is not None:
            root = logging.getLogger()
            levels = {"": root.level}
            forward = bool(root.handlers)
            for name, logger in list(root.manager.loggerDict.items()):
                if isinstance(logger, logging.Logger):
                    levels[name] = logging.CRITICAL + 1 if logger.disabled else logger.level
                    forward = forward or bool(logger.handlers)
            disable = root.manager.disable
        return cls(
            sys.getrecursionlimit(),
            getattr(sys, "get_int_max_str_digits", lambda: None)(),
            None if decimal is None else decimal.getcontext(),
            list(warnings.filters),
            levels,
            disable,
            forward,
        )

    def modules(self) -> set[str]:
        """The modules that `apply` uses (the fork server imports them once, not each worker)."""
        used = {"decimal": self.decimal_context is not None, "logging": self.log_levels is not None}
        return {name for name, uses in used.items() if uses}

    def apply(self) -> None:
        """Take these settings (in a new worker, before its task runs)."""
        sys.setrecursionlimit(self.recursion_limit)
        if self.int_max_str_digits is not None:
            sys.set_int_max_str_digits(self.int_max_str_digits)
        if self.decimal_context is not None:
            importlib.import_module("decimal").setcontext(self.decimal_context)
        cast(list[Any], warnings.filters)[:] = self.warnings_filters
        _filters_changed()
        if self.log_levels is not None:
            _forward_logs(self.log_levels, self.log_disable, self.log_forward)


def _forward_logs(levels: dict[str, int], disable: int, forward: bool) -> None:
    """In a worker: log at the script's levels, and hand each record to the script's handlers.

    A record goes up the worker's pipe, and the hub gives it to the logger
    of its name in the parent, which handles it as the parent's own (its
    handlers, their levels and formats; `processName` and `process` say
    which worker). Under fork too: a handler the worker inherited (a file's,
    say) would otherwise write from several processes at once. Records come
    in the order of the worker's other frames, so a record logged before a
    result is handled before the result is yielded.
    """
    logging = importlib.import_module("logging")
    root = logging.getLogger()
    for logger in [root, *root.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()  # inherited under fork: the parent's handle the records
            logger.propagate = True  # to the one that sends them up (the parent's loggers decide)
    for name, level in levels.items():
        logger = logging.getLogger(name or None)
        logger.disabled = level > logging.CRITICAL
        logger.setLevel(min(level, logging.CRITICAL))
    logging.disable(disable)
    if forward:
        handler = logging.Handler()
        handler.emit = _forward_record
        handler.name = "ezq"
        root.addHandler(handler)


def _forward_record(record: Any) -> None:
    """Send a log record up the worker's pipe (the `emit` of its handler, see `_forward_logs`)."""
    pump = _state.pump
    if pump is None:  # (a process forked from the worker)
        return
    logging = sys.modules["logging"]
    record.msg = record.getMessage()  # as logging.handlers.QueueHandler.prepare does
    record.args = None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    try:
        data = pickle.dumps(record, protocol=5)
    except Exception:  # an attribute given in `extra=` that won't pickle: the record goes without it
        standard = cast(dict[str, Any], vars(logging.makeLogRecord({})))
        kept = {name: value for name, value in cast(dict[str, Any], vars(record)).items() if name in standard}
        data = pickle.dumps(logging.makeLogRecord(kept), protocol=5)
    pump.send(_LOG, 0, data)


def _handle_log(data: bytes | bytearray) -> None:
    """In the parent (the hub): handle a worker's log record as our own (see `_forward_logs`)."""
    logging = importlib.import_module("logging")
    try:
        record = pickle.loads(data)
        logging.getLogger(record.name).handle(record)
    except Exception:  # a handler's own failure is the handler's to report
        traceback.print_exc()


def _filters_changed() -> None:
    """Tell `warnings` that its filters changed (as `warnings.filterwarnings` does)."""
    cast(Callable[[], None], getattr(warnings, "_filters_mutated"))()  # noqa: B009 (private)


_FORK_WARNING = re.compile(r".*use of fork\(\) may lead to deadlocks", re.I)


class _Payload:
    """What a new process worker runs: its settings and task, pickled, and the queues they mention."""

    def __init__(self, data: bytes, homes: list[_Home], modules: list[str]) -> None:
        self.data = data
        self.homes = homes
        self.modules = modules  # that it names (see _Attach)

    @classmethod
    def dump(cls, obj: Any, what: str) -> _Payload:
        _calls[0] += 1  # a new call: a class's pickle carries its globals' values now (see _blob)
        settings = _Settings.now()
        with _Attach() as attach:
            data = _dumps((settings, obj), what)
        return cls(data, attach.homes, sorted(attach.modules | settings.modules()))

    def frame(self) -> bytes:
        """The worker's first frame (`_TASK`): its queues' sizes now, then `data`."""
        sizes = struct.pack(
            f"<I{len(self.homes)}Q", len(self.homes), *(len(home.frames) for home in self.homes)
        )
        return sizes + self.data

    @staticmethod
    def load(frame: bytes | bytearray, pump: _Pump) -> Any:
        """In a worker: take the settings, and unpickle the task, connecting its queues to their homes."""
        (count,) = struct.unpack_from("<I", frame)
        sizes = struct.unpack_from(f"<{count}Q", frame, 4)
        _ATTACHED[:] = [Q._away(_Away(pump, place, size)) for place, size in enumerate(sizes)]  # pyright: ignore[reportPrivateUsage]
        try:
            settings, obj = pickle.loads(memoryview(frame)[4 + 8 * count :])
        finally:
            _ATTACHED.clear()
        settings.apply()
        return obj


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

    The traceback starts below the ezq functions that called the task, so it
    shows the user's code, not ours.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is globals():
        tb = tb.tb_next
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


## Queues' messages ##
#
# In its home, a message is kept as a "frame": the pickled (data, kind,
# order) tuple, with _END_TAG in front for an end marker (a pickle starts
# with b"\x80", so the two can't be confused).

_END_TAG = b"E"

_BATCH_BYTES = 1 << 20
"""A batch sent to a reader stops growing after this many bytes."""

_BATCH_MAX = 4096
"""Most messages a reader asks for at once."""

_BATCH_SECONDS = 0.002
"""Readers size their requests so that one batch takes about this long to read."""

_PLAIN = frozenset({int, float, bool, type(None), str, bytes})
"""Types of message data that `pickle.dumps` takes as they are (see `_encode`)."""

_SMALL = 1 << 16
"""A str or bytes shorter than this is pickled by `pickle.dumps` faster than by the kept
pickler (see `_pickle`); from about 1 MiB on, `pickle.dumps` takes 7x longer."""


def _encode(data: Any, kind: str, order: int) -> bytes:
    """A message as its home keeps it (see "Queues' messages")."""
    # Small plain data skips `_dumps`'s checks and kept pickler, which cost
    # more than the pickling itself (a round trip to a worker pays it twice).
    plain = type(data) in _PLAIN and (type(data) not in (str, bytes) or len(data) < _SMALL)
    if plain and type(kind) is str and type(order) is int:  # (an IntEnum of the script is not plain)
        frame = pickle.dumps((data, kind, order), protocol=5)
    else:
        frame = _dumps((data, kind, order), what="the message data")
    return _END_TAG + frame if kind == _END else frame


def _take(frames: _Frames, queue: _Home | _Away, reader: object) -> Msg[Any] | None:
    """The first of `frames`, decoded and taken off, for `reader` of `queue`; `None` if none.

    Taken off last: an exception before that (raised by a signal handler of
    the program's, say) leaves it in place, not lost. An end marker ends the
    reader's loop, so the loop's last step (`release`) comes before it is
    taken off (`resume` undoes it if another reader took the marker
    meanwhile). A frame another reader took is taken as an equal frame (the
    same message), if one is left.
    """
    while True:
        try:
            frame = frames[0]
        except IndexError:
            return None
        end = frame[:1] == _END_TAG
        if end:
            queue.release(reader)
        msg = END_MSG if end else _decode(frame)
        try:
            frames.remove(frame)  # (it is first, unless another reader took it)
        except ValueError:
            if end:
                queue.resume(reader)
            continue
        return msg


def _decode(frame: bytes | bytearray) -> Msg[Any]:
    if frame[:1] == _END_TAG:
        return Msg(*pickle.loads(memoryview(frame)[1:]))
    return Msg(*pickle.loads(frame))


class _Local:
    """The messages of a thread queue: `Msg` objects in a `queue.SimpleQueue`."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Msg[Any]] = queue.SimpleQueue()

    def put(self, data: Any, kind: str, order: int, copies: int = 1) -> None:
        for _ in range(copies):
            self._q.put(Msg(data, kind, order))

    def get(self, reader: object) -> Msg[Any]:
        return self._q.get()

    def reader(self) -> object:
        return None

    def release(self, reader: object) -> None:
        pass

    def qsize(self) -> int:
        return self._q.qsize()


class _Home:
    """The messages of a process queue, in the process that made it.

    Any thread may append to `frames` or take from it, one frame at a time
    (each one step, so no lock is needed and none can be left held). The
    hub alone keeps `readers` and sends their batches (`dispatch`).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.forked = False  # set in a forked child: this copy is not the home
        self.frames: _Frames = collections.deque()
        self.changed = _Event()  # notified when frames come
        # Readers in workers that asked for a batch: the worker, the queue's
        # place among its queues, and how many frames it wants (hub only).
        self.readers: collections.deque[tuple[_Child, int, int]] = collections.deque()
        self.workers = 0  # workers given this queue (the hub counts; others only look)
        _HOMES.add(self)

    def check_home(self) -> None:
        if self.forked:
            raise RuntimeError(
                f"this Q belongs to process {self.pid}; to use it in a worker, "
                "pass it to ezq.run() as an argument instead of using a global"
            )

    def put(self, data: Any, kind: str, order: int, copies: int = 1) -> None:
        self.check_home()
        frame = _encode(data, kind, order)
        if kind == _END and self.workers:
            # Messages that workers wrote before must come first, even those the
            # hub has not read yet: it reads them, then the marker goes in.
            _hub().ask(_Hub.drain)
        self.frames.extend([frame] * copies)  # the hand-off
        self.changed.notify()
        if self.readers:  # a reader in a worker waits: the hub sends it a batch
            _hub().poke()

    def get(self, reader: object) -> Msg[Any]:
        self.check_home()
        frames = self.frames
        while (msg := _take(frames, self, reader)) is None:
            _wait(lambda: frames, [self.changed])
        return msg

    def reader(self) -> object:
        return None

    def release(self, reader: object) -> None:
        pass

    def resume(self, reader: object) -> None:
        pass

    def qsize(self) -> int:
        return len(self.frames)

    def dispatch(self, hub: _Hub) -> None:
        """Send a batch to each reader that waits, while there are frames (in the hub).

        A batch never holds more than one end marker, so each reader stops
        at its own.
        """
        frames = self.frames
        while frames and self.readers:
            child, place, want = self.readers.popleft()
            batch: list[bytes | bytearray] = []
            size = 0
            while frames and len(batch) < want and size < _BATCH_BYTES:
                try:
                    frame = frames.popleft()
                except IndexError:  # a thread of ours took the last one
                    break
                batch.append(frame)
                size += len(frame)
                if frame[:1] == _END_TAG:
                    break
            if batch:
                hub.post_to(
                    child, _BATCH, place, pickle.dumps((len(frames), batch), protocol=5), (self, batch)
                )
            else:
                self.readers.appendleft((child, place, want))

    def give_back(self, batch: list[bytes | bytearray]) -> None:
        """Frames a reader never had, or did not read: they go first in line (in the hub)."""
        self.frames.extendleft(reversed(batch))
        self.changed.notify()


_HOMES: weakref.WeakSet[_Home] = weakref.WeakSet()


## Workers, as the parent keeps them ##


class _ThreadRun:
    """A thread worker: its thread, and how its function ended."""

    def __init__(self, task: Callable[..., Any], args: Any, kwargs: Any, name: str) -> None:
        self.done = False
        self.error: BaseException | None = None
        self.changed = _Event()
        threading.Thread(target=self._run, args=(task, args, kwargs), name=name, daemon=True).start()

    def _run(self, task: Callable[..., Any], args: Any, kwargs: Any) -> None:
        try:
            task(*args, **kwargs)
        except BaseException as exc:  # reported by join() / stop()
            self.error = exc
        finally:
            self.done = True
            self.changed.notify()


class _Child:
    """A worker process, as the hub keeps it (only the hub changes it; others look).

    Its life: started (`pid`), its task done (`report`: `_DONE` came), then
    `ended`: its up pipe closed and its exit code known (or known to be
    lost: a fork server that died, SIGCHLD ignored). Its pipes are `up`
    (its frames to us) and `down` (ours to it); `homes` are its queues, by
    their place on those pipes.
    """

    def __init__(self, name: str, homes: list[_Home], pool: _ProcessPool | None) -> None:
        self.name = name
        self.homes = homes
        self.pool = pool  # the map it works for, if any: its results and its end go there
        self.pid: int | None = None
        self.up: _Wire | None = None
        self.down: _Wire | None = None
        self.server: _Server | None = None  # the fork server that started it, if one did
        self.escrow: list[int] = []  # its ends of its pipes, until the caller that forks it has forked
        self.report: bytes | None = None
        self.lingers = False  # it has reported, and waits for threads its task left running
        self.hung_up = False  # its up pipe has closed: it is ending
        self.exitcode: int | None = None
        self.lost = ""  # why its exit code is not known, if it is not
        self.start_error: BaseException | None = None  # why it never started
        self.ended = False
        self.changed = _Event()

    def who(self) -> str:
        return f"{'map worker' if self.pool else 'worker'} {self.name} (pid {self.pid})"

    def error(self) -> BaseException | None:
        """The error it ended with: its task's exception, or a `WorkerError` if it died (else `None`)."""
        if self.start_error is not None:
            return self.start_error
        if self.report:
            return _unpack_exception(self.report, f"raised in {self.who()}")
        code = self.exitcode
        if code == 0 or (code is None and self.report is not None):
            return None
        return WorkerError(f"{self.who()} {_describe_exit(code, self.lost)}", self.name, code)


def _describe_exit(code: int | None, lost: str = "") -> str:
    if code is None:
        return f"ended, and its exit code is lost ({lost})"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


## The hub ##

_GRACE = 1.0
"""Seconds a worker gets to stop (after SIGTERM, or after its map call was interrupted
for running out of time) before it is killed. Shorter, and its `finally` blocks are
cut short; longer, and a worker stuck in C code, which no signal interrupts, delays
the error (or the end of the program) that long."""

_START_SECONDS = 30.0
"""Longest a start may wait for ezq's fork server to answer. A server that doesn't
(stopped by a debugger, say) is left to its workers and another one starts."""


class _Hub:
    """The thread that owns every pipe to a worker, every worker process and every timer.

    Other threads hand it requests (`call`, `ask`, `send`, `signal`,
    `end_child`, `start`), each one step onto `inbox`, and take answers from
    a `_Future`. It polls every pipe and never blocks on one, notices every
    worker's end, and runs timers; no signal handler runs in it (it blocks
    them all), so nothing it does can be cut in two by an exception.
    """

    def __init__(self) -> None:
        self.inbox: collections.deque[tuple[Callable[..., Any], tuple[Any, ...], _Future[Any] | None]] = (
            collections.deque()
        )
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.poller = select.poll()
        self.poller.register(self.wake_r, select.POLLIN)
        self.children: set[_Child] = set()
        self.hungry: set[_Home] = set()  # queues with readers in workers that wait for a batch
        self.reading: dict[int, Callable[[], None]] = {}  # fd: what to do when it is readable
        self.writing: dict[int, _Wire] = {}  # by fd: wires with frames still to write
        self.watched: dict[int, int] = {}  # fd: the events we poll it for
        self.timers: list[tuple[float, int, Callable[[], None]]] = []  # a heap of (when, order, what)
        self.timer_order = itertools.count()
        self.servers: list[_Server] = []  # the last one starts workers; others only report exits
        self.failed: BaseException | None = None  # what ended the thread, if anything did
        self.ident: int | None = None  # the thread's
        self.answering: _Future[Any] | None = None  # the future of the request being taken
        # A bare thread: threading.Thread.start() waits on an Event, and
        # threading's shutdown would wait for it.
        _thread.start_new_thread(self._run, ())

    ## Verbs: any thread may call these ##

    def poke(self) -> None:
        """Wake the hub, to look at its inbox and its queues' readers."""
        with contextlib.suppress(BlockingIOError):  # else a wake-up is pending already
            os.write(self.wake_w, b"!")

    def call(self, verb: Callable[..., Any], *args: Any) -> _Future[Any]:
        """Have the hub run `verb(hub, *args)`; its return value (or exception) is the future's."""
        future: _Future[Any] = _Future()
        self.inbox.append((verb, args, future))  # the hand-off
        self.poke()
        return future

    def ask(self, verb: Callable[..., R], *args: Any) -> R:
        """`call`, and wait for the answer."""
        return cast(R, self.call(verb, *args).result())

    def tell(self, verb: Callable[..., Any], *args: Any) -> None:
        """Have the hub run `verb(hub, *args)`, without waiting (nor an answer)."""
        self.inbox.append((verb, args, None))  # the hand-off
        self.poke()

    def start(
        self, payload: _Payload, name: str, pool: _ProcessPool | None = None, clock: _SharedInts | None = None
    ) -> _Child:
        """Start a worker process that runs `payload` (for `pool`, a map, if given).

        Under fork, the main thread forks the worker itself, so that it is a
        fork of the caller, with its thread's own state too (its thread-local
        data, an sqlite3 connection it made); another thread has the hub fork
        it, as the hub lives as long as the process and a worker's
        PR_SET_PDEATHSIG fires when the thread that forked it ends. For a map,
        this returns at once (its pid comes later, and a failed start ends it
        with `start_error`); else once the worker runs.
        """
        child = _Child(name, payload.homes, pool)
        here = _start_method() == "fork" and threading.current_thread() is threading.main_thread()
        future = self.call(_Hub._start, child, payload, clock, here)
        if here:
            child.pid = pid = _fork(cast(_Start, future.result()))
            self.tell(_Hub._forked, child, pid)
        elif pool is None:
            future.result()
        return child

    def send(self, child: _Child, tag: int, index: int = 0, payload: bytes = b"") -> None:
        """Send a frame down `child`'s pipe."""
        self.tell(_Hub.post_to, child, tag, index, payload)

    def signal(self, child: _Child, signum: int) -> None:
        """Send `signum` to `child`'s process, unless it has ended (its pid may be another's by then)."""
        self.tell(_Hub._signal, child, signum)

    def end_child(self, child: _Child) -> None:
        """Terminate `child` (SIGTERM), and kill it (SIGKILL) if it hasn't ended `_GRACE` seconds later."""
        self.tell(_Hub._end_child, child)

    ## In the hub thread ##

    def _run(self) -> None:
        self.ident = _thread.get_ident()
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # they go to other threads
        try:
            while (
                _state.hub is self or _state.hub is None or self.children
            ):  # (another won the race: see _hub)
                self._turn()
        except BaseException as exc:  # a MemoryError for a huge frame, say: callers must hear of it
            self.failed = exc

    def _turn(self) -> None:
        """One turn of the hub's loop: wait for something to happen, then see to everything."""
        timeout = _TICK if not self.timers else max(0.0, min(_TICK, self.timers[0][0] - time.monotonic()))
        events = self.poller.poll(timeout * 1000)
        for fd, _ in events:
            if fd == self.wake_r:
                # Before taking requests: a request made after this read
                # leaves its wake-up for the next poll.
                os.read(self.wake_r, 4096)
            elif (handler := self.reading.get(fd)) is not None:
                handler()
        while self.inbox:
            verb, args, future = self.inbox.popleft()
            self.answering = future
            try:
                value = verb(self, *args)
            except Exception as exc:  # the asker's to handle
                if future is None:
                    raise
                future.set(error=exc)
            else:
                if future is not None and value is not _LATER:
                    future.set(value)
        while self.timers and self.timers[0][0] <= time.monotonic():
            heapq.heappop(self.timers)[2]()
        for home in list(self.hungry):
            home.dispatch(self)
            if not home.readers:
                self.hungry.discard(home)
        self._flush()

    def _flush(self) -> None:
        """Write what each wire holds, as far as its pipe takes it; poll for room where it didn't."""
        for wire in list(self.writing.values()):
            try:
                done = wire.flush()
            except OSError:  # its reader has gone: what it never had goes back (its end comes too)
                for home, batch in wire.unwritten():
                    home.give_back(batch)
                done = True
            if done:
                del self.writing[wire.fd]
            self._watch(wire.fd)

    def _watch(self, fd: int) -> None:
        """Poll `fd` for what we wait for of it: data to read, room to write."""
        want = (select.POLLIN if fd in self.reading else 0) | (select.POLLOUT if fd in self.writing else 0)
        have = self.watched.get(fd, 0)
        if want == have:
            return
        if not want:
            del self.watched[fd]
            self.poller.unregister(fd)
        else:
            self.watched[fd] = want
            self.poller.register(fd, want)  # (or changes what it was registered for)

    def _read(self, fd: int, handler: Callable[[], None] | None) -> None:
        """Call `handler` when `fd` is readable (`None`: stop)."""
        if handler is None:
            self.reading.pop(fd, None)
        else:
            self.reading[fd] = handler
        self._watch(fd)

    def post_to(
        self, child: _Child, tag: int, index: int = 0, payload: bytes = b"", returns: Any = None
    ) -> None:
        """Send a frame down `child`'s pipe (in the hub); dropped if it has ended, or never started."""
        if child.down is not None and not child.ended:
            self.post(child.down, tag, index, payload, returns)
        elif returns is not None:
            home, batch = returns
            home.give_back(batch)

    def post(
        self,
        wire: _Wire,
        tag: int,
        index: int = 0,
        payload: bytes = b"",
        returns: Any = None,
        fds: list[int] | None = None,
    ) -> None:
        """Queue a frame on `wire` (in the hub): written at the end of the turn, or once its pipe takes it."""
        wire.send(tag, index, payload, fds, returns)
        self.writing[wire.fd] = wire

    def after(self, seconds: float, what: Callable[[], None]) -> None:
        """Call `what` in `seconds` (a timer)."""
        heapq.heappush(self.timers, (time.monotonic() + seconds, next(self.timer_order), what))

    def _start(self, child: _Child, payload: _Payload, clock: _SharedInts | None, here: bool) -> object:
        """Start `child`: make its pipes, then fork it here, or ask the fork server (or, `here`, leave
        the fork to the caller: its ends of its pipes wait in `escrow` until it has them)."""
        up_r, up_w = os.pipe()
        try:
            down_r, down_w = os.pipe()
        except OSError:
            _close_all([up_r, up_w])
            raise
        _grow_pipe(down_w)
        _grow_pipe(up_w)
        child.up, child.down = _Wire(up_r), _Wire(down_w)
        for home in child.homes:
            home.workers += 1
        self.children.add(child)
        self._read(up_r, lambda: self._receive(child))
        kind: Literal["run", "map"] = "map" if child.pool else "run"
        start = _Start(child.name, kind, up_w, down_r, None if clock is None else clock.fd, payload.modules)
        if _start_method() != "fork":
            self.post(child.down, _TASK, 0, payload.frame())
            return self._server().start(child, start)  # (which closes up_w and down_r once sent)
        start.task = payload.frame()  # (a fork has it in memory: no need to read it from the pipe)
        child.escrow = [up_w, down_r]
        if here:
            return start
        try:
            pid = _fork(start)
        except OSError as exc:  # (EAGAIN: too many processes) this start fails, and nothing else
            self._gone(child, exc)
            raise
        self._forked(child, pid)
        return child

    def _forked(self, child: _Child, pid: int) -> None:
        """`child` runs as `pid`, with its ends of its pipes: ours close (else the pipes would never end)."""
        child.pid = pid
        _close_all(child.escrow)
        child.escrow = []

    def _server(self) -> _Server:
        if not self.servers or self.servers[-1].stalled or self.servers[-1].wire.closed:
            self.servers.append(_Server(self))
        return self.servers[-1]

    def _receive(self, child: _Child) -> None:
        """Take the frames that `child` has written; note when its up pipe closes."""
        assert child.up is not None
        for tag, index, payload in child.up.receive():
            if tag == _PUT:
                home = child.homes[index]
                home.frames.append(payload)
                home.changed.notify()
            elif tag == _ASK:
                self._ask(child, index, _QUEUE.unpack(payload)[0])
            elif tag == _GIVE_BACK:
                child.homes[index].give_back(pickle.loads(payload))
            elif tag == _RESULT and child.pool is not None:
                child.pool.deliver(child, payload)
            elif tag == _DONE:
                child.report = bytes(payload)
                child.lingers = index > 0
            elif tag == _LOG:
                _handle_log(payload)
            elif tag == _HELLO and child.escrow:  # (the caller that forked it was cut short)
                self._forked(child, _PID.unpack(payload)[0])
        if child.up.closed and not child.hung_up:
            child.hung_up = True
            self._read(child.up.fd, None)
            child.up.close()
            self._reap(child, 0.001)

    def _ask(self, child: _Child, place: int, want: int) -> None:
        """A reader in `child` wants up to `want` frames of its queue `place` (0: it doesn't any more).

        Each request gets one answer, a batch: one taken back before it had
        frames gets an empty batch, so that the worker knows none is to come.
        """
        home = child.homes[place]
        for entry in list(home.readers):
            if entry[0] is child and entry[1] == place:
                home.readers.remove(entry)
                self.post_to(child, _BATCH, place, pickle.dumps((len(home.frames), []), protocol=5))
        if want and not child.ended:
            home.readers.append((child, place, want))
            self.hungry.add(home)

    def _reap(self, child: _Child, delay: float) -> None:
        """Take the exit code of a child whose up pipe has closed (forked here; the server says its own)."""
        if child.server is not None:
            child.server.exited(child)
            return
        try:
            pid, status = os.waitpid(cast(int, child.pid), os.WNOHANG)
        except ChildProcessError:  # SIGCHLD is ignored: the kernel reaped it
            self._gone(child, None, "SIGCHLD is ignored")
            return
        if pid == 0:  # it closed the pipe a moment before it exits: look again once it has
            if _LINUX:  # (a pid file descriptor is readable then)
                with contextlib.suppress(OSError):
                    fd = os.pidfd_open(cast(int, child.pid))

                    def exited() -> None:
                        self._read(fd, None)
                        os.close(fd)
                        self._reap(child, delay)

                    self._read(fd, exited)
                    return
            self.after(delay, lambda: self._reap(child, min(2 * delay, _TICK)))
            return
        self._gone(child, os.waitstatus_to_exitcode(status))

    def _gone(self, child: _Child, code: int | BaseException | None, lost: str = "") -> None:
        """`child` has ended (its exit code, or why it never started): let go of it, tell who waits."""
        if child.ended:
            return
        if isinstance(code, BaseException):
            child.start_error = code
        else:
            child.exitcode, child.lost = code, lost
        for wire in (child.up, child.down):
            if wire is not None and not wire.closed:
                self.writing.pop(wire.fd, None)
                self._read(wire.fd, None)
                for home, batch in wire.unwritten():  # a reader that has gone never had these
                    home.give_back(batch)
                wire.close()
        for home in child.homes:
            home.workers -= 1
            for entry in [e for e in home.readers if e[0] is child]:
                home.readers.remove(entry)
        self.children.discard(child)
        _close_all(child.escrow)
        child.escrow = []
        child.ended = True
        child.changed.notify()
        if child.pool is not None:
            child.pool.deliver(child, None)

    def _signal(self, child: _Child, signum: int) -> None:
        if child.pid is not None and not child.hung_up:  # (until then it lives, so its pid is its own)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def _end_child(self, child: _Child) -> None:
        self._signal(child, signal.SIGTERM)
        self.after(_GRACE, lambda: self._signal(child, signal.SIGKILL))

    def drain(self) -> None:
        """Take what every worker has written so far (for an end marker, which comes after it)."""
        for child in list(self.children):
            if not child.hung_up:
                self._receive(child)

    def end_all(self) -> object:
        """Terminate every worker (at exit); answer once all have ended, or after `_GRACE` and a little."""
        future = cast(_Future[Any], self.answering)
        for child in list(self.children):
            self._end_child(child)

        def check(tries: int) -> None:
            if not self.children or tries == 0:
                future.set()
            else:
                self.after(0.02, lambda: check(tries - 1))

        check(int((_GRACE + 0.5) / 0.02))
        return _LATER


_LATER = object()
"""What a hub verb returns when it answers later (it keeps the future, see `_Server.start`)."""


def _check_hub() -> None:
    """Raise if ezq's thread for the pipes (the hub, or a worker's pump) has failed."""
    for owner in (_state.hub, _state.pump):
        if owner is not None and owner.failed is not None:
            raise RuntimeError(
                f"ezq's thread that reads and writes the workers' pipes failed: {owner.failed!r}"
            ) from owner.failed


def _hub() -> _Hub:
    """This process's hub, started on first use.

    No lock: two threads that start one at once each make one, and the
    first to be set (one step, dict.setdefault) is the hub; the other's
    thread sees that it lost and ends.
    """
    hub = _state.hub
    if hub is None:
        hub = cast(_Hub, vars(_state).setdefault("hub", _Hub()))
    return hub


## How process workers start ##
#
# Under "fork", the hub forks a worker, which sees the caller's state at the
# call. Under "spawn" and "forkserver", multiprocessing would import the
# user's script again in every worker (spawn), or once in a server that
# forks workers (CPython 3.14's forkserver preloads `__main__`): either way
# the script's top level runs again, and without an `if __name__ ==
# "__main__":` guard it starts workers of its own. So ezq keeps its own fork
# server instead: a fresh interpreter, started once per parent process on
# first use, that has imported ezq and nothing of the user's, and forks a
# worker on each request. What a task needs from the script travels with it
# (see "Serialization"); where dill is missing, workers import the script as
# spawn does (`_Server.prepare`).
#
# Hub and server talk over a socket, in frames: `_START` (a request's number,
# the worker's `_Start` record, and its file descriptors beside it), then
# `_STARTED` (its pid) or `_FAILED`, and `_EXITED` (a pid and its exit code)
# when a worker ends. The worker's task goes down its own pipe, so no user
# data passes through the server. The server exits when the parent closes
# its end of the socket (it exits or dies).


@dataclass
class _Boot:
    """What a worker of the fork server takes on of its parent, as it is at the start."""

    cwd: str
    path: list[str]
    argv: list[str]
    environ: dict[str, str] | None  # None: as the server has it
    script: str  # stands for the parent's script (see `_State.script`)
    prepare: dict[str, Any]  # how to import the script (only without dill, see `_Server.prepare`)
    stdio: bool  # the parent's stdout and stderr come as the last two file descriptors


@dataclass
class _Start:
    """What a new worker process begins with, from ezq's launcher (a fork, or the fork server)."""

    name: str
    kind: Literal["run", "map"]
    up: int  # file descriptors: its end of its up pipe,
    down: int  # of its down pipe,
    clock: int | None  # and shared memory where a map worker says what it runs (with a time limit)
    modules: list[str]  # that its task names: the fork server imports them, once for all its workers
    boot: _Boot | None = None  # under the fork server
    task: bytes | None = None  # its task (a `_Payload` frame), under fork; else it comes down its pipe

    def fds(self) -> list[int]:
        return [self.up, self.down] if self.clock is None else [self.up, self.down, self.clock]

    def take(self, fds: list[int]) -> None:
        """Take `fds` (as `fds()` lists them), as the fork server received them."""
        self.up, self.down = fds[0], fds[1]
        self.clock = fds[2] if self.clock is not None else None


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
    """The hub's end of a fork server (see "How process workers start" above)."""

    def __init__(self, hub: _Hub) -> None:
        self.hub = hub
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
        try:
            self.process = subprocess.Popen(
                command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
        finally:
            theirs.close()
        self.wire = _Wire(ours.fileno(), ours)
        hub._read(self.wire.fd, self._receive)  # pyright: ignore[reportPrivateUsage]
        self.numbers = itertools.count(1)
        self.starting: dict[int, tuple[_Child, _Future[Any]]] = {}  # by request number
        self.running: dict[int, _Child] = {}  # by pid
        self.exits: dict[int, int] = {}  # exit codes of workers whose up pipe has not closed yet, by pid
        self.stalled = False  # it did not answer a start in time: the next start takes another server
        self.environ = dict(os.environ)  # what the server has; workers get changes made since
        self.prepare: dict[str, Any] = {}  # how workers import the script (only without dill)
        if not _have_dill() and _main_importable():
            data = multiprocessing.spawn.get_preparation_data("ezq")
            self.prepare = {k: v for k, v in data.items() if k.startswith("init_main_from_")}

    def start(self, child: _Child, start: _Start) -> object:
        """Ask for `child` (in the hub); its `_STARTED` answers the request later."""
        stdio = all(_is_open(fd) for fd in (1, 2))
        environ = None if os.environ == self.environ else dict(os.environ)
        try:
            cwd = os.getcwd()
        except FileNotFoundError:  # it was deleted: the worker starts in the server's
            cwd = ""
        start.boot = _Boot(
            cwd,
            [
                os.fsdecode(cast(Any, p))
                for p in cast(list[object], sys.path)
                if isinstance(p, (str, os.PathLike))
            ],
            list(sys.argv),
            environ,
            _state.script,
            self.prepare,
            stdio,
        )
        fds = [start.up, start.down, *([os.dup(start.clock)] if start.clock is not None else [])]
        fds += [os.dup(1), os.dup(2)] if stdio else []
        number = next(self.numbers) % 2**32  # (the wire carries 32 bits: wraps after 4 billion starts)
        self.hub.post(
            self.wire, _START, number, pickle.dumps(start, protocol=5), fds=fds
        )  # (it closes fds once sent)
        future = cast(_Future[Any], self.hub.answering)
        self.starting[number] = (child, future)
        child.server = self
        self.hub.after(_START_SECONDS, lambda: self._late(number))
        return _LATER

    def _late(self, number: int) -> None:
        if number in self.starting:  # no answer: leave this server to its workers
            self.stalled = True
            child, future = self.starting.pop(number)
            error = TimeoutError(
                f"ezq's fork server (pid {self.process.pid}) did not answer in {_START_SECONDS} s"
            )
            self.hub._gone(child, error)  # pyright: ignore[reportPrivateUsage]
            future.set(error=error)

    def _receive(self) -> None:
        for tag, index, payload in self.wire.receive():
            if tag in (_STARTED, _FAILED) and index in self.starting:
                child, future = self.starting.pop(index)
                if tag == _STARTED:
                    child.pid = pid = _PID.unpack(payload)[0]
                    self.running[pid] = child
                    future.set(child)
                else:
                    error = OSError(f"ezq's fork server could not start a worker: {bytes(payload).decode()}")
                    self.hub._gone(child, error)  # pyright: ignore[reportPrivateUsage]
                    future.set(error=error)
            elif tag == _EXITED:
                pid, code = _PID.unpack(payload)
                self.exits[pid] = code
                if pid in self.running and self.running[pid].hung_up:
                    self.exited(self.running[pid])
        if self.wire.closed:  # it has gone (killed?): the next start takes another
            self.hub._read(self.wire.fd, None)  # pyright: ignore[reportPrivateUsage]
            self.hub.writing.pop(self.wire.fd, None)
            self.wire.close()
            for child, future in self.starting.values():
                error = OSError("ezq's fork server has gone")
                self.hub._gone(child, error)  # pyright: ignore[reportPrivateUsage]
                future.set(error=error)
            self.starting.clear()
            for child in list(self.running.values()):
                if child.hung_up:
                    self.exited(child)

    def exited(self, child: _Child) -> None:
        """`child`'s up pipe has closed (in the hub): it has ended once the server says how."""
        pid = cast(int, child.pid)
        if pid in self.exits:
            self.running.pop(pid, None)
            self.hub._gone(child, self.exits.pop(pid))  # pyright: ignore[reportPrivateUsage]
        elif self.wire.closed:  # it died before it could tell: it took its workers with it (PDEATHSIG)
            self.running.pop(pid, None)
            self.hub._gone(child, -signal.SIGKILL)  # pyright: ignore[reportPrivateUsage]
        else:  # it tells soon (or is stopped, and never will)
            self.hub.after(_GRACE, lambda: self._untold(child))

    def _untold(self, child: _Child) -> None:
        if not child.ended:
            self.running.pop(cast(int, child.pid), None)
            self.hub._gone(child, None, "ezq's fork server did not say")  # pyright: ignore[reportPrivateUsage]

    def close(self) -> None:
        self.wire.close()
        self.process.kill()
        self.process.wait()


def _fork(start: _Start) -> int:
    """Fork the worker that `start` describes (in the caller's thread, or the hub's: see `_Hub.start`)."""
    _tokenize_script()
    if _LINUX:
        _prctl()  # for _die_with_parent in the child: looked up here once
    parent = os.getpid()
    # 3.12+ warns of a fork beside threads (the hub is one), after the fork,
    # in the parent: with warnings as errors (simplefilter("error")), the
    # pid would be lost. A filter just for that warning, for the moment.
    quiet = ("ignore", _FORK_WARNING, DeprecationWarning, None, 0)
    filters = cast(list[Any], warnings.filters)
    filters.insert(0, quiet)
    _filters_changed()
    _forking.keep = (start.up, start.down)  # its own ends of its pipes (see _after_fork_in_child)
    try:
        pid = os.fork()
    finally:
        _forking.keep = ()
        with contextlib.suppress(ValueError):
            filters.remove(quiet)
        _filters_changed()
    if pid == 0:  # the new worker: this thread is its only one
        _state.die_with = parent
        _worker_main(start)
    return pid


_forking = threading.local()  # `keep`: the file descriptors that a worker being forked keeps


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _serve(sock_fd: int) -> None:  # pyright: ignore[reportUnusedFunction] (see _SERVER_CODE)
    """Main loop of the fork server: fork a worker per request, report each one's exit."""
    wire = _Wire(sock_fd, socket.socket(fileno=sock_fd))
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # (started by the hub, which blocks every signal)
    if _LINUX:
        _prctl()  # for _die_with_parent in every worker: look it up once
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so that it wakes the poll
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    while not wire.closed or wire.pending():
        poller.register(sock_fd, select.POLLIN | (select.POLLOUT if wire.pending() else 0))
        poller.poll()
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 4096)
        _report_exits(wire)
        for tag, number, payload in wire.receive():
            if tag == _START:
                start = cast(_Start, pickle.loads(payload))
                for name in start.modules:  # here once, not in every worker
                    if name not in sys.modules:
                        with contextlib.suppress(
                            BaseException
                        ):  # (the worker then fails to import it, and says so)
                            importlib.import_module(name)
                fds = [
                    wire.fds.popleft()
                    for _ in range(len(start.fds()) + (2 if cast(_Boot, start.boot).stdio else 0))
                ]
                try:
                    pid = os.fork()
                except OSError as exc:  # (EAGAIN: too many processes) this start fails, and nothing else
                    wire.send(_FAILED, number, str(exc).encode())
                    pid = -1
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd in (sock_fd, wake_r, wake_w):
                        os.close(fd)
                    _served_child(start, fds)
                for fd in fds:
                    os.close(fd)
                if pid > 0:
                    wire.send(_STARTED, number, _PID.pack(pid, 0))
        with contextlib.suppress(OSError):  # (the parent has gone)
            wire.flush()
        if wire.closed:
            return  # the parent has gone; its workers see that on their own


def _report_exits(wire: _Wire) -> None:
    """In the fork server: tell the parent the exit code of every worker that has exited."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        wire.send(_EXITED, 0, _PID.pack(pid, os.waitstatus_to_exitcode(status)))


def _served_child(start: _Start, fds: list[int]) -> NoReturn:
    """In a worker just forked by the server: take on the parent's state, then be its worker."""
    boot = cast(_Boot, start.boot)
    if boot.stdio:
        for target, fd in zip((1, 2), fds[-2:], strict=True):
            os.dup2(fd, target)  # the parent's stdout and stderr as they are now
            os.close(fd)
        del fds[-2:]
    start.take(fds)
    _state.served = True
    _state.die_with = os.getppid()  # the server
    _state.script = boot.script
    sys.modules["__main__"] = types.ModuleType("__main__")  # not the server's script
    try:
        if boot.cwd:
            os.chdir(boot.cwd)
        sys.path[:], sys.argv[:] = boot.path, boot.argv
        if boot.environ is not None:
            os.environ.clear()
            os.environ.update(boot.environ)
        _state.in_worker = True  # a script imported below must not start workers
        multiprocessing.spawn.prepare(boot.prepare)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    _worker_main(start)


## Inside a worker ##

_INTERRUPT = signal.SIGUSR2
"""The signal that interrupts a map worker's call that ran out of time (see `_on_interrupt`)."""


class _Inbox:
    """A worker's messages of one queue, fetched from home, and its requests for more (the pump keeps it)."""

    def __init__(self, size: int) -> None:
        self.frames: _Frames = collections.deque()
        self.changed = _Event()
        self.size = size  # frames at home, as of the last batch: for qsize()
        self.asked = False  # a request for a batch is out: its answer (a batch, maybe empty) is to come
        self.readers: list[object] = []  # one per loop reading it: with none, a batch goes straight back
        self.batch = 1  # frames to ask for next time
        self.received = 0.0  # when the last batch came


class _Pump:
    """A worker's own thread for its two pipes: the hub's counterpart in a worker.

    The worker's threads hand it frames (`send`) and requests (`give back`,
    `finish`), each one step onto a deque, and take what it
    received from deques (`jobs`, each queue's `_Inbox`). It blocks every
    signal, so the task's signal handlers run only in the worker's other
    threads and can't cut a read or a write in two.
    """

    def __init__(self, up: int, down: int) -> None:
        self.up = _Wire(up)
        self.down = _Wire(down)
        self.pid = os.getpid()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.requests: collections.deque[tuple[str, int]] = collections.deque()
        self.inboxes: dict[int, _Inbox] = {}
        self.jobs: collections.deque[bytes | bytearray | None] = (
            collections.deque()
        )  # the task, then chunks (None: stop)
        self.changed = _Event()  # notified when jobs come, or the pump is done
        self.wrote = _Event()  # notified when frames have been written
        self.finishing = False
        self.done = False  # finished: all written
        self.failed: BaseException | None = None
        self.up.send(_HELLO, 0, _PID.pack(self.pid, 0))
        _thread.start_new_thread(self._run, ())

    ## Any thread of the worker ##

    def poke(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"!")

    def send(self, tag: int, index: int, payload: bytes | bytearray = b"") -> None:
        """Send a frame up to the parent; return once it is in the pipe.

        (So a message put just before the worker dies, killed say, reaches its
        queue, and a map's results reach the parent before news of a crash.)
        """
        self.check_owner()
        sent = _Sent()
        self.up.send(tag, index, payload, None, sent)  # the hand-off
        self.poke()
        _wait(lambda: sent.done or self.done, [self.wrote])

    def request(self, verb: str, place: int = 0) -> None:
        self.requests.append((verb, place))  # the hand-off
        self.poke()

    def inbox(self, place: int, size: int = 0) -> _Inbox:
        return self.inboxes.setdefault(place, _Inbox(size))

    def next_job(self) -> bytes | bytearray | None:
        jobs = self.jobs
        _wait(lambda: jobs, [self.changed])
        return jobs.popleft()

    def finish(self) -> None:
        """Give back what the queues hold unread, write all out, and stop: the worker ends."""
        self.request("finish")
        _wait(lambda: self.done, [self.changed])

    def check_owner(self) -> None:
        """Refuse a process forked from the worker: its frames would mix with the worker's."""
        if _state.pid != self.pid:
            raise RuntimeError(
                f"this Q was given to worker process {self.pid}; a process forked from it can't "
                "use it (pass the Q to ezq.run() to give it to another worker)"
            )

    ## The pump's thread ##

    def _run(self) -> None:  # (with every signal blocked: see _worker_main)
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        poller.register(self.down.fd, select.POLLIN)
        try:
            while not self.done:
                poller.register(self.up.fd, select.POLLOUT if self.up.pending() else 0)
                ready = {fd for fd, _ in poller.poll(_TICK * 1000)}
                if self.wake_r in ready:
                    os.read(self.wake_r, 4096)
                if self.down.fd in ready:
                    self._take_frames()
                while self.requests:
                    self._do(*self.requests.popleft())
                self._ask_again()
                flushed = self.up.flush()
                self.wrote.notify()
                if flushed and self.finishing and not any(inbox.asked for inbox in self.inboxes.values()):
                    self.done = True
                    self.changed.notify()
                    self.wrote.notify()
        except OSError:  # the parent has gone (a broken pipe): so do we
            os._exit(1)
        except BaseException as exc:
            self.failed = exc
            self.done = True
            self.changed.notify()

    def _take_frames(self) -> None:
        for tag, place, payload in self.down.receive():
            if tag == _BATCH:
                inbox = self.inbox(place)
                inbox.asked = False
                inbox.size, batch = pickle.loads(payload)
                inbox.received = time.perf_counter()
                if inbox.readers and not self.finishing:
                    inbox.frames.extend(batch)
                    inbox.changed.notify()
                elif batch:  # nobody reads it any more
                    self.up.send(_GIVE_BACK, place, pickle.dumps(batch, protocol=5))
            elif tag in (_TASK, _JOB):
                self.jobs.append(payload)
                self.changed.notify()
            elif tag == _STOP:
                self.jobs.append(None)
                self.changed.notify()
        if self.down.closed:  # the parent has gone (or closed our pipe as it died): so do we
            os._exit(1)

    def _do(self, verb: str, place: int) -> None:
        if verb == "give back":
            if not self.inbox(place).readers:  # (else a reader has started since)
                self._give_back(place)
        elif verb == "finish":
            for place in list(self.inboxes):
                self._give_back(place)
            self.finishing = True

    def _ask_again(self) -> None:
        """Ask for a batch of each queue being read whose last batch has been read.

        Not only when a reader says it waits: also when the worker sends
        something (its reply, usually), so that the request goes up with it.
        """
        if self.finishing:
            return
        for place, inbox in self.inboxes.items():
            if inbox.readers and not inbox.asked and not inbox.frames:
                inbox.asked = True
                self.up.send(_ASK, place, _QUEUE.pack(self._batch_size(inbox)))

    def _give_back(self, place: int) -> None:
        """The readers of queue `place` have stopped: what they fetched goes back home, and so
        does a batch still to come (its request is taken back, if it has not been answered)."""
        inbox = self.inbox(place)
        frames: list[bytes | bytearray] = []
        with contextlib.suppress(IndexError):
            while True:
                frames.append(inbox.frames.popleft())
        if frames:
            self.up.send(_GIVE_BACK, place, pickle.dumps(frames, protocol=5))
        if inbox.asked:  # take the request back: its answer comes, a batch that goes straight back, or none
            self.up.send(_ASK, place, _QUEUE.pack(0))

    def _batch_size(self, inbox: _Inbox) -> int:
        # Ask for more while batches are read quickly, for fewer round trips;
        # for one at a time when each message takes long, so that other
        # readers get a fair share of slow work.
        took = time.perf_counter() - inbox.received
        if took < _BATCH_SECONDS:
            inbox.batch = min(_BATCH_MAX, inbox.batch * 2)
        else:
            inbox.batch = max(1, int(inbox.batch * _BATCH_SECONDS / took))
        return inbox.batch


class _Away:
    """A worker's side of a process queue: its messages are at home, in the parent."""

    def __init__(self, pump: _Pump, place: int, size: int) -> None:
        self.pump = pump
        self.place = place
        self.inbox = pump.inbox(place, size)

    def put(self, data: Any, kind: str, order: int, copies: int = 1) -> None:
        frame = _encode(data, kind, order)
        for _ in range(copies):
            self.pump.send(_PUT, self.place, frame)

    def get(self, reader: object) -> Msg[Any]:
        self.pump.check_owner()
        inbox = self.inbox
        frames = inbox.frames
        while (msg := _take(frames, self, reader)) is None:
            if not inbox.asked:  # (else a batch is on its way) the pump asks for one as it wakes
                self.pump.poke()
            _wait(lambda: frames, [inbox.changed])
        return msg

    def reader(self) -> object:
        """Count a loop that reads the queue: while one does, the pump fetches its messages."""
        reader = object()
        self.inbox.readers.append(reader)
        return reader

    def release(self, reader: object) -> None:
        """A loop has stopped reading: once none reads, what was fetched goes back home."""
        if _state.pid == self.pump.pid:
            with contextlib.suppress(ValueError):
                self.inbox.readers.remove(reader)
            if not self.inbox.readers:
                self.pump.request("give back", self.place)

    def resume(self, reader: object) -> None:
        self.inbox.readers.append(reader)

    def qsize(self) -> int:
        return self.inbox.size + len(self.inbox.frames)


def _worker_main(start: _Start) -> NoReturn:
    """A worker process, from its first step to its exit: run its task, or a map's chunks.

    The task's exception (or a map call's) goes up as its report; the exit
    code says the rest (0: it returned; 1: it raised, or ezq failed).
    """
    code = 1
    pump = None
    ended: list[BaseException | None] = []  # how the task ended (run): None if it returned
    failure: BaseException | None = None  # what else ended it
    try:
        try:
            # The pump's thread, started below, keeps every signal blocked, as a new
            # thread takes its creator's mask: a signal (the task's timer's, say)
            # goes to this thread alone, and can't be taken after it has blocked them.
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
            # Ctrl-C in a terminal signals the whole process group; the parent
            # decides what happens, and workers don't print a traceback each.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _state.in_worker = True
            multiprocessing.current_process().name = start.name  # (as logging's processName, say)
            cast(Any, multiprocessing.current_process())._config["daemon"] = True
            if _state.die_with:
                _die_with_parent(_state.die_with)
            pump = _state.pump = _Pump(start.up, start.down)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            work = _Payload.load(start.task or cast(bytes, pump.next_job()), pump)
            if start.kind == "map":
                _run_chunks(pump, work, None if start.clock is None else _SharedInts(3, start.clock))
                code = 0
            else:
                error = _run_task(*work)
                if isinstance(error, SystemExit):
                    raise error
                ended.append(error)
                code = 0 if error is None else 1
        except SystemExit as exc:  # as multiprocessing reports it
            if isinstance(exc.code, int) or exc.code is None:
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException as exc:  # ezq's failure, or a handler a map's task left raised between calls
            failure = exc
    except BaseException as exc:  # (Python 3.10 runs a due handler as it enters an `except` clause)
        failure = exc
    finally:
        try:
            try:  # First, so that no handler of a task (a map's) can cut the rest short
                _sigmask(signal.SIG_BLOCK, _SIGNALS)  # (see `_ignore_task_signals`)
            except BaseException:  # (blocked, then a handler that was due raised)
                pass
            _ignore_task_signals(())
            if failure is not None:  # (the task's own error went up as its report)
                traceback.print_exception(type(failure), failure, failure.__traceback__)
            if ended:  # (its last frame: `finish` writes it)
                cast(_Pump, pump).up.send(_DONE, 0, b"" if ended[0] is None else _pack_exception(ended[0]))
            if pump is not None:
                pump.finish()
            for thread in threading.enumerate():  # as a normal exit would, wait for non-daemon threads
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
        finally:
            os._exit(code)


def _run_task(
    task: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> BaseException | None:
    """Call a run's task; once none of its handlers can run, return what it raised (None: it returned).

    A signal handler the task leaves behind (its timer's, say) can still run,
    and raise, in the steps that follow, until `_ignore_task_signals` has
    taken them all: what it raises is not how the task ended, and is dropped.
    The task's own exception is the one that came through `_call_task`: one
    of those caught, or what one of them was raised over (its `__context__`:
    Python 3.10 can run a handler as it enters an `except` clause).

    Python runs a due handler as a function starts, as a call returns and at
    a loop's jump back: between the task's end and the step that blocks every
    signal there is none of these (`caught` grows without a call, and that step
    is a C function: see `_ignore_task_signals`).
    """
    returned: list[object] = []
    caught: tuple[BaseException, ...] = ()
    try:
        try:
            _call_task(task, args, kwargs, returned)
        except BaseException as exc:
            caught += (exc,)
    except BaseException as exc:  # (a handler, as the clause above was entered)
        caught += (exc,)
    try:
        _sigmask(signal.SIG_BLOCK, _SIGNALS)  # (see `_ignore_task_signals`)
    except BaseException as exc:  # (blocked, then a handler that was due raised)
        caught += (exc,)
    caught = _ignore_task_signals(caught)
    if returned:
        return None
    for error in caught:
        seen: BaseException | None = error
        while seen is not None:
            if any(frame.f_code is _call_task.__code__ for frame, _ in traceback.walk_tb(seen.__traceback__)):
                return seen
            seen = seen.__context__
    return caught[0]  # (can't be reached: the task raised, and it came through `_call_task`)


def _call_task(
    task: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any], returned: list[object]
) -> None:
    """Call a run's task; if it returns, note it in `returned`.

    Noted in C: as the task returns, its value goes to `returned.extend`
    without a step of Python code, where a handler could run first and raise
    in its place. In an exception's traceback, this frame marks it as the
    task's (see `_run_task`).
    """
    returned.extend(itertools.starmap(functools.partial(task, *args, **kwargs), [()]))


def _ignore_task_signals(caught: tuple[BaseException, ...]) -> tuple[BaseException, ...]:
    """The task has ended: ignore the signals it handles (a timer it left running, say).

    Return `caught` with what their handlers raised meanwhile. The first step
    blocks every signal, in C (`_sigmask`), and from then on only a
    handler that was already due can run, once; if it raises, the steps are
    taken again. Once they are done, no handler of the task runs. (Not SIG_IGN:
    Python would print a warning for a signal that was due.)
    """
    while True:
        try:
            _sigmask(signal.SIG_BLOCK, _SIGNALS)
            for signum in _SIGNALS:
                with contextlib.suppress(OSError, ValueError):
                    if callable(signal.getsignal(signum)):
                        signal.signal(signum, _ignore_signal)
            _sigmask(signal.SIG_SETMASK, [])
            return caught
        except BaseException as exc:
            caught += (exc,)


def _ignore_signal(signum: int, frame: types.FrameType | None) -> None:
    pass


def _die_with_parent(parent: int) -> None:
    """In a new worker (Linux): have the kernel kill it when `parent` (its launcher) exits.

    Its down pipe's end of file ends a worker whose parent has gone, but not
    while a long C call holds the GIL; PR_SET_PDEATHSIG does. It fires when
    the *thread* that forked the worker ends: the hub's (which lives as long
    as the process), or the fork server's only one.
    """
    if _LINUX:
        _prctl()(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it exited before we asked
            os._exit(1)


@functools.cache
def _prctl() -> Callable[[int, int], int]:
    """Linux's prctl(2)."""
    import ctypes

    return cast(Callable[[int, int], int], ctypes.CDLL(None, use_errno=True).prctl)


class _SharedInts:
    """64-bit ints in memory shared with workers: what a map worker runs now (for timeouts, see `_Clock`)."""

    def __init__(self, count: int = 1, fd: int | None = None) -> None:
        if fd is None:
            if _LINUX and hasattr(os, "memfd_create"):
                fd = os.memfd_create("ezq-shared")
            else:  # macOS
                with tempfile.TemporaryFile() as file:
                    fd = os.dup(file.fileno())
            os.ftruncate(fd, 8 * count)
        self.fd = fd
        self.view = memoryview(mmap.mmap(fd, 0)).cast("q")  # 0: the whole file
        weakref.finalize(self, os.close, fd).atexit = False

    def __getitem__(self, index: int) -> int:
        return int(self.view[index])

    def __setitem__(self, index: int, value: int) -> None:
        self.view[index] = value


## The process's state ##


class _State:
    """What ezq knows about the process it runs in."""

    in_worker = False  # inside a process worker
    served = False  # inside a process worker that ezq's fork server started
    die_with = 0  # in a new worker: the pid whose exit should kill it (see _die_with_parent)
    hub: _Hub | None = None  # owns this process's workers and their pipes (see _hub)
    pump: _Pump | None = None  # in a worker: its pipes' thread
    pid = os.getpid()  # kept up to date at a fork: os.getpid() is a system call
    script = os.urandom(6).hex()  # stands for the user's script (see _namespace); workers get the parent's
    mint = os.urandom(6).hex()  # this process's prefix for new tokens (see _token); a fork takes another


_state = _State()
_LINUX = sys.platform == "linux" and not os.environ.get("EZQ_POSIX_ONLY")
"""Use Linux's own calls (PR_SET_PDEATHSIG, memfd_create, F_SETPIPE_SZ). The environment
variable EZQ_POSIX_ONLY=1 makes ezq take the way it takes on macOS (to test that way on Linux)."""

_worker_count = itertools.count(1)


def _after_fork_in_child() -> None:
    # A forked child (a worker the hub forks, or a fork of the user's) gets
    # copies of this process's queues and pipes. Its copies of our queues
    # are not their home, so using them is an error (_Home.check_home). It
    # must not hold our ends of the workers' pipes: a worker sees its parent
    # gone only once every copy of its down pipe's write end has closed.
    _state.pid = os.getpid()
    _state.mint = os.urandom(6).hex()
    for home in list(_HOMES):
        home.forked = True
    hub, _state.hub = _state.hub, None  # its thread did not come along
    if hub is not None:
        keep = getattr(_forking, "keep", ())  # (a worker being forked: its own ends of its pipes)
        escrow = [fd for child in list(hub.children) for fd in child.escrow]
        _close_all([fd for fd in [hub.wake_r, hub.wake_w, *hub.watched, *escrow] if fd not in keep])
    pump, _state.pump = _state.pump, None  # (a fork of a worker: the worker's, not ours)
    if pump is not None:
        for fd in (pump.up.fd, pump.down.fd, pump.wake_r, pump.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        _state.pump = None


def _stop_workers_at_exit() -> None:
    """At exit, terminate (then kill) the process workers still running."""
    hub = _state.hub
    if hub is not None and hub.failed is None and hub.children:
        with contextlib.suppress(Exception):
            hub.ask(_Hub.end_all)


atexit.register(_stop_workers_at_exit)


def _raise_ctrl_c_again(previous: Callable[[Any], object], unraisable: Any) -> None:
    """`sys.unraisablehook`: a Ctrl-C that CPython would print and drop is raised again.

    An exception can't leave a finalizer (a `__del__` method, a weakref
    callback): CPython prints "Exception ignored" and goes on. A Ctrl-C whose
    handler ran while one ran in the main thread would be lost, and the
    program would wait on as if it had not been pressed. So a thread signals
    the main thread again, as a second press would, once the finalizer has
    returned. (Not from here: the handler would run at once, inside this
    hook, and its exception would be dropped again; should the signal still
    come too early, this hook sends another.) Anything else goes to the hook
    that was there.
    """
    in_main = threading.current_thread() is threading.main_thread()
    handled = callable(signal.getsignal(signal.SIGINT))  # else SIGINT would end the program
    if in_main and handled and issubclass(unraisable.exc_type, KeyboardInterrupt):
        with contextlib.suppress(RuntimeError):  # no new thread at interpreter shutdown: nothing waits then
            _thread.start_new_thread(signal.pthread_kill, (threading.get_ident(), signal.SIGINT))
            return
    previous(unraisable)


sys.unraisablehook = functools.partial(_raise_ctrl_c_again, sys.unraisablehook)
os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_can_start_processes() -> None:
    if _state.in_worker:
        raise RuntimeError(
            "a process worker can't start process workers (they are daemonic processes); "
            "start thread workers instead: ezq.run_thread() or ezq.map(..., kind='thread')"
        )


def _worker_name(task: Callable[..., Any]) -> str:
    return f"{getattr(task, '__name__', type(task).__name__)}-{next(_worker_count)}"


def _start_method() -> str:
    return multiprocessing.get_start_method()


def _grow_pipe(fd: int) -> None:
    """Give a pipe a 1 MiB buffer (Linux): fewer wake-ups for large messages and chunks."""
    if _LINUX:
        import fcntl

        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ"), _CHUNK_BYTES)  # noqa: B009 (Linux only)


def _add_note(error: BaseException, note: str) -> None:
    """`error.add_note(note)` where Python has it (3.11+)."""
    if hasattr(error, "add_note"):
        error.add_note(note)


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
        per_item = max(seconds / items, 1e-7)  # (a clock's resolution, about)
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


_Chunk = Sequence[Any]
"""Items of a map's input sent to a worker at once (a range's come as a range: see `_Input`)."""


@dataclass
class _Job:
    """A chunk of a map's input, from its sending to its results: one record for every pool."""

    number: int  # its place among the map's chunks: results are yielded in this order
    first: int  # its first input item
    count: int  # how many items it holds
    where: str = ""  # where it ran, for errors ("in map worker map-3 (pid 42)")
    results: list[Any] = field(default_factory=list[Any])
    error: BaseException | None = None  # what stopped it, after `results`
    seconds: float = 0.0  # how long its calls took

    def items(self) -> str:
        """Its input items, for error messages."""
        return (
            f"input item {self.first}"
            if self.count == 1
            else f"input items {self.first}-{self.first + self.count - 1}"
        )

    def failed(self, index: int | None, error: BaseException | bytes, limit: float | None) -> None:
        """Set `error`: what its call `index` raised (packed, if in a process), or unpickling it (`None`).

        The one place where a failure becomes the error the caller sees,
        naming the input item and where it ran.
        """
        if isinstance(error, bytes):
            if index is None:
                error = _unpack_exception(error, f"raised {self.where} while unpickling {self.items()}")
            else:
                error = _unpack_exception(
                    error, f"raised {self.where} by input item {self.first + (index or 0)}"
                )
        if isinstance(error, _TimedOut) and limit is not None:
            timeout = _timeout_error(limit, self.first + (index or 0), self.where)
            timeout.__cause__ = error.__cause__  # the worker's traceback: where the call was stuck
            error = timeout
        self.error = error


class _TimedOut(BaseException):
    """Raised in a process worker's call that ran out of time (a `BaseException`, so
    that the task's `except Exception:` doesn't swallow it)."""


def _timeout_error(limit: float, item: int, where: str) -> TimeoutError:
    return TimeoutError(f"task took longer than {limit} s on input item {item} {where}")


class _Clock:
    """What a map worker runs now, for time limits: in a list (threads) or shared memory (processes).

    [0]: the input item running + 1 (0: none); [1]: since when
    (`time.monotonic_ns()`); [2]: the item + 1 that the parent asks to
    interrupt (see `_on_interrupt`).
    """

    def __init__(self, ints: list[int] | _SharedInts) -> None:
        self.ints = ints

    def running(self) -> tuple[int, float] | None:
        """The input item that runs now, and since when (monotonic seconds); `None` if none.

        The worker writes the start, then the item (see `_call_each`): if the
        item read before and after the start is the same, the start is that
        item's.
        """
        ints = self.ints
        item = ints[0]
        since = ints[1]
        if item == 0 or ints[0] != item:
            return None
        return item - 1, since / 1e9


_interrupted = [0]  # in a map worker: the item + 1 whose call `_on_interrupt` interrupted


def _on_interrupt(clock: _Clock, signum: int, frame: object) -> None:
    """In a map process worker: the parent's signal to stop the call that ran out of time.

    Only that call is interrupted: if the worker has moved on (the call
    returned as the signal came), the signal is ignored. A call that swallows
    the exception (a bare `except:`) still ends as timed out (see `_call_each`).
    """
    ints = clock.ints
    if ints[2] and ints[2] == ints[0]:
        _interrupted[0] = ints[2]
        ints[2] = 0
        raise _TimedOut("the call ran out of time here (see map's timeout)")


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

    Finished chunks come to `finished` (from any thread: the hub, a thread
    worker, an executor's callback), which `wait` takes. With a time limit
    per call (`limit`), `wait` also looks at the workers' clocks and reports
    a call that ran out of time as its chunk's error (a `TimeoutError`).
    """

    seconds_per_chunk = 0.01
    num = 1
    limit: float | None = None

    def __init__(self) -> None:
        self.finished: collections.deque[_Job] = collections.deque()
        self.changed = _Event()

    def free(self) -> bool:
        """`True` if another chunk can be sent now."""
        raise NotImplementedError

    def submit(self, job: _Job, chunk: _Chunk) -> int:
        """Send a chunk to a worker; return its size in bytes (0 if not pickled)."""
        raise NotImplementedError

    def wait(self, timeout: float) -> list[_Job]:
        """Wait at most `timeout` seconds for chunks to finish; return those that did (maybe none)."""
        late, next_check = self.timed_out()
        _wait(lambda: self.finished, [self.changed], 0 if late else min(timeout, next_check))
        done: list[_Job] = []
        with contextlib.suppress(IndexError):
            while True:
                done.append(self.finished.popleft())
        return late + [job for job in done if job.error is not _ABANDONED]

    def timed_out(self) -> tuple[list[_Job], float]:
        """Chunks whose call ran out of time, and the seconds until the next deadline, at most."""
        return [], _TICK

    def close(self, abort: bool) -> None:
        """Stop the workers: let them finish, or (abort) stop them now."""
        raise NotImplementedError

    def use(self, workers: int) -> None:
        """Feed only this many workers from now on (a hint; see `_Chunker.workers_needed`)."""

    def no_more_input(self) -> None:
        """All chunks have been sent: workers left with nothing to do may stop now."""


_ABANDONED = _TimedOut("reported already")
"""The error of a chunk whose result comes after it was reported as timed out: it is dropped."""


def _overdue(started: Iterable[tuple[_Key, float]], limit: float) -> tuple[list[tuple[_Key, float]], float]:
    """Of calls started at these times (monotonic seconds), those that ran longer than
    `limit`, each with its start; and the seconds until the next deadline, at most."""
    now = time.monotonic()
    late: list[tuple[_Key, float]] = []
    next_check = min(_TICK, limit / 2)  # a call is seen running within this time of its start
    for key, since in started:
        if now < since + limit:
            next_check = min(next_check, since + limit - now)
        else:
            late.append((key, since))
    return late, next_check


_Key = TypeVar("_Key")


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
    done: dict[int, _Job] = {}
    sent = 0  # chunks sent
    next_out = 0  # the next chunk whose results are yielded (in order)
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
            while not exhausted and not failed and pool.free() and sent - next_out < window:
                chunk = items.take(chunker.size)
                if not chunk:
                    exhausted = True
                    pool.no_more_input()
                    break
                job = _Job(sent, items_sent, len(chunk))
                chunker.sent(len(chunk), pool.submit(job, chunk))
                items_sent += len(chunk)
                sent += 1
            if exhausted and next_out == sent:
                finished = True
                return
            start = time.perf_counter()
            results = pool.wait(_TICK)
            waited += time.perf_counter() - start
            if not results:
                continue
            if not clock:
                clock, waited = time.perf_counter(), 0.0
            for job in results:
                chunker.record(job.count, job.seconds)
            if yielded >= _ADAPT_AFTER and not failed:
                busy = time.perf_counter() - clock - waited
                pool.use(chunker.workers_needed(max(busy, 1e-9) / yielded))
            for job in results:
                failed = failed or job.error is not None
                if ordered:
                    done[job.number] = job
                else:
                    next_out += 1
                    yield job.results
                    yielded += len(job.results)
                    if job.error is not None:
                        raise job.error
            while next_out in done:
                job = done.pop(next_out)
                next_out += 1
                yield job.results
                yielded += len(job.results)
                if job.error is not None:
                    raise job.error
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
        super().__init__()
        self.num = num
        self.task = task
        self.star = star
        self.limit = limit
        self.todo: queue.SimpleQueue[tuple[_Job, _Chunk] | None] = queue.SimpleQueue()
        self.in_flight = 0
        self.cancelled = False
        self.clocks = [_Clock([0, 0, 0]) for _ in range(num)]
        self.running: list[_Job | None] = [None] * num  # per thread
        self.lost: set[int] = set()  # threads whose call ran out of time
        self.exits: collections.deque[int] = collections.deque()  # threads that have ended
        for me in range(num):
            threading.Thread(target=self._work, args=(me,), name=f"ezq-map-{me}", daemon=True).start()

    def _work(self, me: int) -> None:
        task, star = self.task, self.star
        clock = self.clocks[me] if self.limit else None
        try:
            while (todo := self.todo.get()) is not None:
                job, chunk = todo
                if self.cancelled:
                    continue
                job.where = f"in map thread {threading.current_thread().name}"
                self.running[me] = job
                error, job.seconds = _call_each(task, star, chunk, job.first, clock, job.results)
                if error is not None:
                    job.failed(len(job.results), error, self.limit)
                if me in self.lost:  # reported as timed out already
                    job.error = _ABANDONED
                self.finished.append(job)
                self.changed.notify()
        finally:
            self.exits.append(me)
            self.changed.notify()

    def free(self) -> bool:
        return self.in_flight < _DEPTH * self.num

    def submit(self, job: _Job, chunk: _Chunk) -> int:
        self.todo.put((job, chunk))
        self.in_flight += 1
        return 0

    def wait(self, timeout: float) -> list[_Job]:
        done = super().wait(timeout)
        self.in_flight -= len(done)
        return done

    def timed_out(self) -> tuple[list[_Job], float]:
        limit = self.limit
        if limit is None:
            return [], _TICK
        calls = ((me, clock.running()) for me, clock in enumerate(self.clocks) if me not in self.lost)
        late, next_check = _overdue((((me, run[0]), run[1]) for me, run in calls if run), limit)
        jobs: list[_Job] = []
        for (me, item), since in late:
            job = cast(_Job, self.running[me])
            self.lost.add(me)
            stopped = _Job(job.number, job.first, job.count, job.where, job.results[: item - job.first])
            stopped.seconds = time.monotonic() - since
            stopped.error = _timeout_error(limit, item, job.where)
            _add_note(
                stopped.error, "a thread can't be stopped: it runs on as a daemon, and its result is dropped"
            )
            jobs.append(stopped)
        return jobs, next_check

    def close(self, abort: bool) -> None:
        self.cancelled = abort
        for _ in range(self.num):
            self.todo.put(None)
        if not abort:
            _wait(lambda: len(self.exits) + len(self.lost) >= self.num, [self.changed])


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
        super().__init__()
        self.num = num
        self.executor = executor
        self.task = task
        self.star = star
        self.limit = limit
        self.futures: dict[int, tuple[Future[Any], _Job]] = {}  # by chunk number
        self.queued: collections.deque[int] = collections.deque()  # chunks not started yet (with a limit)
        self.since: dict[int, float] = {}  # chunk number: when it started (with a limit)

    def free(self) -> bool:
        return len(self.futures) < _DEPTH * self.num

    def submit(self, job: _Job, chunk: _Chunk) -> int:
        job.where = "on the executor"
        future = self.executor.submit(_run_chunk, self.task, self.star, chunk)
        self.futures[job.number] = (future, job)
        if self.limit is not None:
            self.queued.append(job.number)
            self._start_queued()
        future.add_done_callback(functools.partial(self._done, job))
        try:  # the executor pickles the chunk; one item tells about how big it is
            return len(pickle.dumps(chunk[0], protocol=5)) * len(chunk)
        except Exception:
            return 0

    def _done(self, job: _Job, future: Future[Any]) -> None:
        """The chunk's future is done (called by the executor, in any thread)."""
        if self.futures.pop(job.number, None) is None:
            return  # reported as timed out already
        if self.since.pop(job.number, None) is None and self.limit is not None:
            with contextlib.suppress(ValueError):
                self.queued.remove(job.number)  # it ran before we counted it as started
        try:  # an engine's own failure (a lost worker, say) raises here
            job.results, failure, job.seconds = cast("tuple[list[Any], Any, float]", future.result())
            if failure is not None:
                index, packed = failure
                job.failed(index, packed, self.limit)
        except BaseException as exc:
            job.error = exc
        self.finished.append(job)
        self.changed.notify()

    def _start_queued(self) -> None:
        while self.queued and len(self.since) < self.num:
            self.since[self.queued.popleft()] = time.monotonic()

    def wait(self, timeout: float) -> list[_Job]:
        done = super().wait(timeout)
        self._start_queued()
        return done

    def timed_out(self) -> tuple[list[_Job], float]:
        limit = self.limit
        if limit is None:
            return [], _TICK
        late, next_check = _overdue(list(self.since.items()), limit)
        jobs: list[_Job] = []
        for number, since in late:
            entry = self.futures.pop(number, None)
            self.since.pop(number, None)
            if entry is None:
                continue
            future, job = entry
            future.cancel()
            job.seconds = time.monotonic() - since
            job.error = _timeout_error(limit, job.first, job.where)
            _add_note(
                job.error, "a call that runs on an executor runs on unless the executor's cancel() stops it"
            )
            jobs.append(job)
        return jobs, next_check

    def close(self, abort: bool) -> None:
        for future, _ in list(self.futures.values()):
            future.cancel()  # only what has not started; nobody waits for the rest
        self.futures.clear()


def _run_chunk(task: bytes, star: bool, chunk: _Chunk) -> tuple[list[Any], Any, float]:
    """Run one chunk of a map on an executor's worker (see `_ExecutorPool`)."""
    results: list[Any] = []
    failure, seconds = _call_each(_load_task(task), star, chunk, 0, None, results)
    return results, None if failure is None else (len(results), _pack_exception(failure)), seconds


_TASKS: dict[bytes, Callable[..., Any]] = {}  # on an executor's worker: tasks already unpickled


def _load_task(task: bytes) -> Callable[..., Any]:
    func = _TASKS.get(task)
    if func is None:
        if len(_TASKS) > 16:
            _TASKS.clear()
        func = _TASKS[task] = pickle.loads(task)
    return func


class _Member:
    """One process worker of a map, as the map keeps it: the chunks it has, and its clock."""

    def __init__(self, child: _Child, clock: _SharedInts | None) -> None:
        self.child = child
        self.jobs: collections.deque[_Job] = collections.deque()  # sent, not answered (it runs them in order)
        self.clock = None if clock is None else _Clock(clock)
        self.shared = clock  # (kept alive while the worker may write it)
        self.interrupted = 0.0  # when we interrupted its call that ran out of time
        self.late_item = 0  # and that call's input item
        self.stopped = False  # told that there are no more chunks (see `_ProcessPool.no_more_input`)
        self.gone = False  # ended, or left behind (killed for a call that ran out of time)

    def where(self) -> str:
        return f"in {self.child.who()}"

    def running(self) -> _Job:
        """The chunk it runs now (it runs them in order)."""
        return self.jobs[0]


class _ProcessPool(_Pool):
    """Process workers, each sent chunks down its own pipe; chunks go to the least busy one.

    Workers start as they are needed. The first chunk is a probe: if its
    answer takes longer than `_PROBE` seconds (slow tasks, or a slow start
    under spawn), all the workers start; if it comes quickly, the scheduler
    decides from what it measures (see `_Chunker.workers_needed`). A tiny
    task on a small machine then runs in one worker and leaves the other
    CPUs to the caller's loop.

    The hub hands it what the workers send (`deliver`). With a time limit, a
    call that runs out of time is interrupted (the worker raises `_TimedOut`
    in it and reports its chunk as usual), and its worker killed; one that
    doesn't stop within `_GRACE` seconds is killed with its worker.
    """

    def __init__(self, payload: _Payload, num: int, limit: float | None) -> None:
        super().__init__()
        self.num = num
        self.payload = payload
        self.limit = limit
        self.members: list[_Member] = []  # in the order they started
        self.by_child: dict[_Child, _Member] = {}
        self.delivered: collections.deque[tuple[_Child, bytes | bytearray | None]] = collections.deque()
        self.active = 1  # the first `active` members get new chunks
        self.probe_sent = 0.0  # when the probe went; 0 when there is no probe (any more)
        self.input_done = False
        self._start_worker()

    def deliver(self, child: _Child, payload: bytes | bytearray | None) -> None:
        """A chunk's results from `child`, or (`None`) its end (in the hub)."""
        self.delivered.append((child, payload))  # the hand-off
        self.changed.notify()

    def _start_worker(self) -> None:
        clock = None if self.limit is None else _SharedInts(3)
        try:
            child = _hub().start(self.payload, f"map-{next(_worker_count)}", self, clock)
        except BaseException:
            self.close(abort=True)
            raise
        member = _Member(child, clock)
        self.members.append(member)
        self.by_child[child] = member

    def use(self, workers: int) -> None:
        self.active = max(1, min(workers, self.num))
        while len(self.members) < self.active and not self.input_done:
            self._start_worker()

    def no_more_input(self) -> None:
        self.input_done = True
        self._stop_idle()

    def _stop_idle(self) -> None:
        """Tell the workers that have no chunk left that there are no more, so that they
        exit while the caller reads the last results, not when it is done with them."""
        for member in self.members:
            if not member.jobs and not member.stopped and not member.gone:
                _hub().send(member.child, _STOP)
                member.stopped = True

    def _feeding(self) -> list[_Member]:
        return [m for m in self.members[: self.active] if not m.gone]

    def free(self) -> bool:
        depth = 1 if self.probe_sent else _DEPTH  # a probe waits alone: it may be slow
        return any(len(m.jobs) < depth for m in self._feeding())

    def submit(self, job: _Job, chunk: _Chunk) -> int:
        member = min(self._feeding(), key=lambda m: len(m.jobs))
        data = _dumps_chunk(job, chunk)
        _hub().send(member.child, _JOB, 0, data)
        member.jobs.append(job)
        if job.first == 0:
            self.probe_sent = time.monotonic()
        return len(data)

    def wait(self, timeout: float) -> list[_Job]:
        late, next_check = self.timed_out()
        timeout = 0 if late else min(timeout, next_check)
        if self.probe_sent:
            timeout = min(timeout, max(0.0, self.probe_sent + _PROBE - time.monotonic()))
        _wait(lambda: self.delivered, [self.changed], timeout)
        done = late
        with contextlib.suppress(IndexError):
            while True:
                child, payload = self.delivered.popleft()
                member = self.by_child[child]
                if member.gone and payload is not None:
                    continue  # left behind: what it still sends is not wanted
                if payload is not None:
                    done.append(self._result(member, payload))
                elif member.interrupted:  # it died, having been interrupted: the timeout says why
                    done += self._abandon(member)
                elif not member.gone:
                    self._ended(member)
        if self.probe_sent and (done or time.monotonic() >= self.probe_sent + _PROBE):
            probe = done[0] if done else None
            if probe is None or probe.seconds / max(len(probe.results), 1) >= _WORTH_A_WORKER:
                self.use(self.num)  # slow tasks, or slow to start: use every worker
            self.probe_sent = 0.0
        if self.input_done and done:
            self._stop_idle()
        return done

    def _result(self, member: _Member, payload: bytes | bytearray) -> _Job:
        results, failure, seconds = pickle.loads(payload)
        job = member.jobs.popleft()  # (it answers in the order it was sent)
        job.where, job.results, job.seconds = member.where(), results, seconds
        if failure is not None:
            index, packed = failure
            job.failed(index, packed, self.limit)
            if member.interrupted:
                self._leave(member)  # it stopped the call that ran out of time; it goes too
        return job

    def _ended(self, member: _Member) -> None:
        """Raise for a worker that ended before its chunks were done (or check it ended well)."""
        member.gone = True
        child = member.child
        if child.start_error is not None:
            raise child.start_error
        if child.report and not member.jobs and child.exitcode:
            raise _unpack_exception(child.report, f"raised in {child.who()} while loading the task")
        if member.jobs or (child.exitcode and not member.stopped):
            running = f" while running {member.running().items()}" if member.jobs else ""
            code = child.exitcode
            raise WorkerError(f"{child.who()} {_describe_exit(code, child.lost)}{running}", child.name, code)

    def timed_out(self) -> tuple[list[_Job], float]:
        """Interrupt calls that ran out of time, and kill the workers that don't stop them in
        time (returning their chunks); also return the seconds until the next deadline."""
        limit = self.limit
        if limit is None:
            return [], _TICK
        calls: list[tuple[tuple[_Member, int], float]] = []  # (member, item), since
        interrupted: list[tuple[_Member, float]] = []  # member, since when
        for member in self.members:
            if member.gone:
                continue
            running = cast(_Clock, member.clock).running()
            if not member.interrupted:
                if running is not None:
                    calls.append(((member, running[0]), running[1]))
            elif running is None or running[0] != member.late_item:
                member.interrupted = 0.0  # it returned as it was interrupted; it goes on
            else:
                interrupted.append((member, member.interrupted))
        late, next_check = _overdue(calls, limit)
        stubborn, next_grace = _overdue(interrupted, _GRACE)
        jobs: list[_Job] = []
        for member, _ in stubborn:
            jobs += self._abandon(member)
        for (member, item), _ in late:
            cast(_Clock, member.clock).ints[2] = item + 1
            member.interrupted, member.late_item = time.monotonic(), item
            _hub().signal(member.child, _INTERRUPT)
            next_grace = min(next_grace, _GRACE)
        return jobs, min(next_check, next_grace)

    def _abandon(self, member: _Member) -> list[_Job]:
        """Report the chunk of a worker whose call ran out of time and didn't stop (or died); kill it."""
        job = member.running()
        item = member.late_item
        self._leave(member)
        stopped = _Job(job.number, job.first, job.count, member.where())
        stopped.failed(item - job.first, _timeout_error(cast(float, self.limit), item, member.where()), None)
        lost = f"; the results of input items {job.first}-{item - 1} went with it" if item > job.first else ""
        _add_note(
            cast(BaseException, stopped.error),
            f"the call did not stop within {_GRACE} s of an interrupt: ezq killed the worker{lost}",
        )
        return [stopped]

    def _leave(self, member: _Member) -> None:
        """Kill a worker in the middle of a map and stop feeding it."""
        member.gone = True
        _hub().signal(member.child, signal.SIGKILL)

    def close(self, abort: bool) -> None:
        """Stop the workers: tell them there are no more chunks, or (abort) terminate them.

        Then wait for them to end, but not for a worker's own threads: one
        that has said it is done and lingers (a non-daemon thread its task
        left) is left to run out; it is terminated at exit if it hasn't.
        """
        hub = _hub()
        for member in self.members:
            if abort:
                hub.end_child(member.child)
            elif not member.stopped and not member.child.ended:
                hub.send(member.child, _STOP)
        children = [m.child for m in self.members]
        events = [child.changed for child in children]
        if not abort:
            _wait(lambda: all(c.ended or c.report is not None for c in children), events)
        # Then they exit: at once, or by SIGKILL after _GRACE (terminated). The
        # bound is for a machine too busy to run them; one whose task left
        # threads running gets _GRACE, then is left to them.
        _wait(lambda: all(c.ended or (c.lingers and not abort) for c in children), events, _START_SECONDS)
        _wait(lambda: all(c.ended for c in children), events, _GRACE)


def _dumps_chunk(job: _Job, chunk: _Chunk) -> bytes:
    """Pickle a chunk of map input, or raise naming the item that can't go."""
    try:
        return _dumps((job.first, chunk), what="a chunk of map input")
    except Exception:
        for index, item in enumerate(chunk):
            _dumps(item, what=f"map input item {job.first + index}")
        raise


def _run_chunks(pump: _Pump, work: tuple[Callable[..., Any], bool], shared: _SharedInts | None) -> None:
    """In a map worker: run chunks until the parent says there are no more (`_STOP`).

    With a time limit, it keeps a `_Clock` and stops a call when the parent
    signals that it ran out of time.
    """
    task, star = work
    clock = None if shared is None else _Clock(shared)
    if clock is not None:
        signal.signal(_INTERRUPT, functools.partial(_on_interrupt, clock))
    while (frame := pump.next_job()) is not None:
        results: list[Any] = []
        try:
            first, chunk = pickle.loads(frame)
        except BaseException as exc:  # an item's class can't be imported here, say
            pump.send(_RESULT, 0, pickle.dumps(([], (None, _pack_exception(exc)), 0.0), protocol=5))
            continue
        failure, seconds = _call_each(task, star, chunk, first, clock, results)
        error = None if failure is None else (len(results), _pack_exception(failure))
        try:
            reply = _dumps((results, error, seconds), "map results", travels=False)
        except Exception:  # (the SIGUSR2 handler raises a BaseException, never this)
            reply = _dumps_results(results, error, seconds)
        pump.send(_RESULT, 0, reply)
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    pump.up.send(_DONE, len(others))  # (its last frame: `finish` writes it)


def _dumps_results(out: list[Any], error: Any, seconds: float) -> bytes:
    """Report the first result of a chunk that can't be pickled, as its error."""
    for index, result in enumerate(out):
        try:
            _dumps(result, what=f"the result of map item {index} of its chunk", travels=False)
        except Exception as exc:
            return pickle.dumps((out[:index], (index, _pack_exception(exc)), seconds), protocol=5)
    raise TypeError("cannot pickle the results of a chunk")  # (each alone can: not seen so far)


def _call_each(
    task: Callable[..., Any],
    star: bool,
    chunk: _Chunk,
    first: int,
    clock: _Clock | None,
    results: list[Any],
) -> tuple[BaseException | None, float]:
    """Run a chunk of a map into `results`: the exception that stopped it (if any), and how long it took.

    On an exception, the results of the items before it are kept, so that
    they can be yielded before the exception is raised. With a `clock`
    (for a time limit), it says which input item (`first` + index) runs
    since when.
    """
    append = results.append
    start = time.perf_counter()
    try:
        if clock is not None:
            ints = clock.ints
            for item, arg in enumerate(chunk, first + 1):
                ints[1] = time.monotonic_ns()  # the start first: see _Clock.running
                ints[0] = item
                append(task(*arg) if star else task(arg))
                if _interrupted[0] == item:  # the call swallowed the interrupt (a bare except:)
                    del results[-1]
                    raise _TimedOut("the call ran out of time, and its code caught the interrupt")
            ints[0] = 0
        elif star:
            for args in chunk:
                append(task(*args))
        else:
            for arg in chunk:
                append(task(arg))
    except BaseException as exc:
        if clock is not None and clock.ints[0]:
            del results[clock.ints[0] - 1 - first :]  # an interrupt may land just after the call returned
            clock.ints[0] = 0
        error = exc
        if isinstance(exc, SystemExit):  # raised in the caller, it would end the program without a word
            error = WorkerError(f"the task called sys.exit({exc.code!r})").with_traceback(exc.__traceback__)
            error.__cause__ = exc
        return error, time.perf_counter() - start
    return None, time.perf_counter() - start


## Checks ##


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
