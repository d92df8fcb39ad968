"""Clean shutdown: SIGTERM/SIGINT stop training at a step boundary; workers die with their parent.

- :func:`handle_signals` (a context manager, main thread only) turns SIGTERM and SIGINT into a
  *request*: :func:`requested` returns the signal number. The training loop
  (:meth:`heatbath.engine.Trainer.run`) checks it before every step; when set, it writes its
  checkpoint (the last good state, at a step boundary) and raises :class:`Interrupted`. A second
  SIGINT raises ``KeyboardInterrupt`` at once (an escape hatch for a stuck process).
- :func:`worker_init` is the initializer of every worker process: the same signal handling, and
  the worker dies with its parent. On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel
  kill it the moment its parent dies (``kill -9`` included); elsewhere, and as a second guard, a
  daemon thread polls the parent's PID. A worker killed this way writes nothing more: the run's
  last checkpoint is its last periodic one, which was written atomically. So no orphan keeps
  writing into a folder whose lock its parent no longer holds, and none can block forever on a
  pipe nobody reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Interrupted", "handle_signals", "requested", "request", "reset", "worker_init",
           "die_with_parent"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"signum": 0}


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing its checkpoint.

    Attributes:
        signum: the signal (``signal.SIGTERM`` or ``signal.SIGINT``); the conventional exit
            status is ``128 + signum``.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")

    def __reduce__(self) -> tuple[Any, ...]:  # survives the trip back from a worker process
        return (Interrupted, (self.signum,))


def requested() -> int:
    """The signal that asked the process to stop, or 0."""
    return _state["signum"]


def request(signum: int = signal.SIGTERM) -> None:
    """Ask the training loop to stop (what the signal handler does)."""
    _state["signum"] = int(signum)


def reset() -> None:
    """Forget an earlier request."""
    _state["signum"] = 0


def _handler(signum: int, _frame: Any) -> None:
    if _state["signum"] and signum == signal.SIGINT:
        raise KeyboardInterrupt  # the second Ctrl-C: stop now
    request(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT set the stop request (see the module doc).

    Outside the main thread (where Python cannot install handlers) the block runs unchanged.
    The previous handlers are restored and the request is cleared on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()
    before = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        reset()


def die_with_parent(parent_pid: int) -> None:
    """Make this process die when ``parent_pid`` (its parent) does (see the module doc)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="heatbath-parent-watch", daemon=True).start()


def worker_init(parent_pid: int) -> None:
    """Initializer of a worker process: die with the parent; signals request a stop."""
    die_with_parent(parent_pid)
    reset()
    for s in _SIGNALS:
        signal.signal(s, _handler)
