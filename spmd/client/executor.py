"""spmd.Executor: a concurrent.futures.Executor whose calls run as spmd tasks in containers.

    submit(fn, *a, **kw) ──> buffer ──(dispatcher thread: every batch_window seconds)──>
        one Knot.map of every buffered call ──> job futures ──(done callbacks)──> your futures
    map(fn, *iterables, timeout, chunksize) ──> one Knot(fn).map ──> results in order, lazily

Calls submitted together share one job (and its containers): a task holds up to
``ceil(calls / max_workers)`` of them. A future is RUNNING once its call was sent, so
``cancel()`` succeeds only before that, as with the standard library's pools; a future
whose task was cancelled remotely raises CancelledError. Exceptions come back as themselves
with the remote traceback as ``__cause__``.
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from .args import Args

log = logging.getLogger("spmd")

#: how long the dispatcher gathers submits into one job (seconds)
BATCH_WINDOW = 0.05


def _invoke(fn: Callable, /, *args: Any, **kwargs: Any) -> Any:
    """The function of a submit batch's job: each item carries its own callable."""
    return fn(*args, **kwargs)


def _copy(source: concurrent.futures.Future, target: concurrent.futures.Future) -> None:
    """Move a job future's outcome onto an executor future (which is RUNNING)."""
    if source.cancelled():
        target.set_exception(concurrent.futures.CancelledError("its task was cancelled"))
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class Executor(concurrent.futures.Executor):
    """Runs calls in containers on a backend, with concurrent.futures' interface.

    Takes Knot's keyword arguments (``backend``, ``requirements``, ``vcpus``, ``memory``,
    ``timeout``, ``retries``, ``profile``, ``config``, ...). ``max_workers`` splits each batch
    of calls into at most that many tasks (default: spmd chooses from the backend's capacity).
    """

    def __init__(self, max_workers: int | None = None, *, batch_window: float = BATCH_WINDOW,
                 **knot_options: Any):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        from .knot import Knot
        knot_options.setdefault("name", "executor")
        self._options = knot_options
        self._knot = Knot(_invoke, **knot_options)  # checks the arguments and configuration now
        self._max_workers = max_workers
        self._window = batch_window
        self._lock = threading.Condition()
        self._buffer: list[tuple[concurrent.futures.Future, Callable, tuple, dict]] = []
        self._outstanding = 0
        self._shutdown = False
        self._dispatcher: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<spmd.Executor on {self._knot.settings.backend}>"

    # -- submit -------------------------------------------------------------------

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Schedule ``fn(*args, **kwargs)``; returns its Future at once."""
        if not callable(fn):
            raise TypeError(f"submit needs a callable, got {type(fn).__name__}")
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future = concurrent.futures.Future()
            self._buffer.append((future, fn, args, kwargs))
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(target=self._dispatch_loop, daemon=True,
                                                    name="spmd-executor")
                self._dispatcher.start()
            self._lock.notify_all()
            return future

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                while not self._buffer and not self._shutdown:
                    self._lock.wait()
                if not self._buffer and self._shutdown:
                    return
            with self._lock:  # let the calls submitted together arrive (shutdown: go now)
                self._lock.wait_for(lambda: self._shutdown, timeout=self._window)
                batch, self._buffer = self._buffer, []
            # Claim each future; one cancelled meanwhile is dropped (and its waiters told).
            batch = [entry for entry in batch if entry[0].set_running_or_notify_cancel()]
            if batch:
                self._send(batch)
            del batch  # hold no reference to the calls once they are sent

    def _send(self, batch: list) -> None:
        from ..errors import SerializationError
        chunksize = math.ceil(len(batch) / self._max_workers) if self._max_workers else None
        try:
            job = self._knot.map([Args(fn, *args, **kwargs) for _, fn, args, kwargs in batch],
                                 chunksize=chunksize)
        except SerializationError as exc:
            if len(batch) > 1:  # find the call that cannot travel; send the others
                for entry in batch:
                    self._send([entry])
            else:
                batch[0][0].set_exception(exc)
            return
        except Exception as exc:
            for future, *_ in batch:
                future.set_exception(exc)
            return
        for (future, *_), job_future in zip(batch, job.futures):
            self._track(job_future)
            job_future.add_done_callback(lambda done, target=future: _copy(done, target))

    def _track(self, future: concurrent.futures.Future) -> None:
        """Count a sent future until it is done, for shutdown(wait=True)."""
        with self._lock:
            self._outstanding += 1

        def finished(_):
            with self._lock:
                self._outstanding -= 1
                self._lock.notify_all()
        future.add_done_callback(finished)

    # -- map ----------------------------------------------------------------------

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """``fn`` over the iterables' items as one job; results in order, as they are asked for.

        ``chunksize=1`` (the default) lets spmd choose how many items a task holds; another
        value sets it. ``timeout`` counts from this call, as in concurrent.futures. Leaving
        the iterator early cancels the job's remaining tasks.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end_time = None if timeout is None else timeout + time.monotonic()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        from .knot import Knot
        calls = list(zip(*iterables))
        if not calls:
            return iter(())
        knot = Knot(fn, **{**self._options, "name": getattr(fn, "__name__", None) or "map"})
        job = knot.map(calls, starmap=True, chunksize=None if chunksize == 1 else chunksize)
        futures = list(job.futures)
        for future in futures:
            self._track(future)
        backend, handle = job.backend, job.handle
        del job, calls
        return self._results(futures, end_time, lambda: backend.queue.cancel(handle))

    @staticmethod
    def _results(futures: list, end_time: float | None, cancel: Callable[[], None]) -> Iterator[Any]:
        futures.reverse()
        try:
            while futures:
                if end_time is None:
                    yield futures.pop().result()
                else:
                    yield futures.pop().result(end_time - time.monotonic())
        finally:
            if any(not f.done() for f in futures):
                for future in futures:
                    future.cancel()
                cancel()

    # -- shutdown -----------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; ``cancel_futures`` cancels calls not sent yet; ``wait`` waits for
        every sent call to finish."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for future, *_ in self._buffer:
                    future.cancel()
            self._lock.notify_all()
            dispatcher = self._dispatcher
        if wait:
            if dispatcher is not None:
                dispatcher.join()
            with self._lock:
                while self._outstanding:
                    self._lock.wait()

