"""Ctrl-C during a series of measurements, in memdiag's own process: the first asks the
series to stop at its next boundary and report what it has, the second stops it at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any


class StopOnInterrupt:
    """The first Ctrl-C sets `requested` (waking whoever waits on it), calls `on_first` and
    says on stderr that the series stops after the current `step`; the next one raises
    KeyboardInterrupt. Installed in the main thread only, and only when `enabled`."""

    def __init__(
        self, step: str, on_first: Callable[[], object] | None = None, enabled: bool = True
    ) -> None:
        self.step = step
        self.on_first = on_first
        self.enabled = enabled
        self.requested = threading.Event()
        self.previous: Any = None

    def __enter__(self) -> StopOnInterrupt:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        if self.on_first is not None:
            self.on_first()
        print(
            f"memdiag leaks: stopping after the current {self.step} (Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )
