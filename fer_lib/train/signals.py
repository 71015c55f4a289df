"""Stopping a run cleanly on SIGTERM: :func:`fer_lib.train.train` checks :class:`StopOnSignal` after every step.

SIGTERM is what Colab, Slurm and Kubernetes send before they kill a process. The handler only records it; the loop
(``fer_lib/train/engine.py``) raises :class:`TrainingStopped` at the next step boundary, so ``last.pt`` holds the
last finished epoch and ``resume`` continues exactly. The CLI exits 143 on it (128 + SIGTERM).
"""

from __future__ import annotations

import signal
import threading


class TrainingStopped(RuntimeError):
    """Training was stopped by a signal (SIGTERM) at a step boundary; ``last.pt`` holds the last finished epoch."""


class StopOnSignal:
    """Turns SIGTERM (what Colab, Slurm and Kubernetes send before a kill) into a stop at the next step boundary.

    Only the main thread can install signal handlers; elsewhere (a notebook's worker thread) this does nothing.
    SIGINT keeps Python's default: a ``KeyboardInterrupt`` at once (Jupyter's stop button), which leaves the same
    checkpoints behind.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous = None

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    @property
    def name(self) -> str:
        """The received signal's name (``"SIGTERM"``); only once :attr:`signal` is set."""
        return signal.Signals(self.signal).name
