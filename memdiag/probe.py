"""Label a measured run's timeline from inside the job: phases and progress.

Outside a measured run every call is a no-op. Inside one, memdiag sets the environment
variable `MEMDIAG_PROBE` to a file, and each call appends one JSON line to it, so programs in
any language can do the same (`echo '{"phase": "write"}' >> "$MEMDIAG_PROBE"`). Lines carry
`t`, seconds since the epoch; lines are written with O_APPEND, so worker processes may share
the file. Importing this module costs nothing beyond the standard library's `json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["phase", "progress", "records"]

# Called with the new phase's name at every phase boundary, before it is written: how
# `memdiag snapshot --at-phase` snapshots the job at each boundary. Empty outside it.
phase_hooks: list[Callable[[str | None], None]] = []

# Progress lines are throttled: a job may report every record, 220k times.
_PROGRESS_EVERY_S = 0.05

_fd: int | None = None
_opened = False
_current: str | None = None
_last_progress = 0.0


def _emit(event: dict[str, object]) -> None:
    global _fd, _opened
    if not _opened:
        _opened = True
        path = os.environ.get("MEMDIAG_PROBE")
        if path:
            try:
                _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError:
                _fd = None
    if _fd is None:
        return
    event["t"] = time.time()
    try:
        os.write(_fd, (json.dumps(event) + "\n").encode())
    except OSError:
        pass


class _Phase:
    """Returned by `phase()`: usable as a plain call or as a context manager."""

    def __init__(self, name: str, previous: str | None) -> None:
        self.name = name
        self.previous = previous

    def __enter__(self) -> _Phase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _current
        _current = self.previous
        for hook in phase_hooks:
            hook(self.previous)
        _emit({"phase": self.previous})


def phase(name: str) -> _Phase:
    """Mark the start of phase `name`; as a context manager, restore the previous on exit."""
    global _current
    previous, _current = _current, str(name)
    for hook in phase_hooks:
        hook(_current)
    _emit({"phase": _current})
    return _Phase(_current, previous)


def progress(done: int, total: int | None = None) -> None:
    """Report `done` of `total` records; written at most every 50 ms (and always at the end)."""
    global _last_progress
    now = time.monotonic()
    if now - _last_progress < _PROGRESS_EVERY_S and (total is None or done < total):
        return
    _last_progress = now
    _emit({"done": int(done), "total": None if total is None else int(total)})


def records(count: int) -> None:
    """Report the number of records processed, for targets that cannot return it."""
    _emit({"records": int(count)})
