"""spmd.Future: a real concurrent.futures.Future for one input item.

The public face is concurrent.futures' own (``result``, ``exception``, ``done``,
``add_done_callback``, ``cancel``). The underscored setters are for the job machinery.
"""
from __future__ import annotations

import concurrent.futures
from concurrent.futures._base import CANCELLED, PENDING, RUNNING


class Future(concurrent.futures.Future):
    """The result of one item of a job; ``job_id`` and ``index`` say which."""

    def __init__(self, job_id: str, index: int):
        super().__init__()
        self.job_id = job_id
        self.index = index

    def __repr__(self) -> str:
        return f"<spmd.Future job={self.job_id} item={self.index} state={self._state}>"

    def _mark_running(self) -> None:
        if self._state == PENDING:
            self.set_running_or_notify_cancel()
        else:
            self._notify_if_cancelled()

    def _notify_if_cancelled(self) -> None:
        """Tell waiters (as_completed, wait) about a cancel the user made with cancel()."""
        if self._state == CANCELLED:
            self.set_running_or_notify_cancel()

    def _set(self, ok: bool, value) -> None:
        if self.done():
            self._notify_if_cancelled()
            return
        if ok:
            self.set_result(value)
        else:
            self.set_exception(value)

    def _cancel_remote(self) -> None:
        """The task was cancelled by the queue: cancel even a running future, notify waiters."""
        with self._condition:
            if self._state == RUNNING:
                # concurrent.futures only cancels PENDING futures; the task really is gone.
                self._state = PENDING
        if self.cancel():
            self._notify_if_cancelled()
