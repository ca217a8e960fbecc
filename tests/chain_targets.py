"""Small jobs that leak through the holders users meet: a bus, a closure, a logger, an
lru_cache, atexit, a thread's stack, weakref finalizers and signal handlers. Each call leaks
one holder of ~300 records."""

from __future__ import annotations

import atexit
import functools
import logging
import queue
import signal
import threading
import weakref
from collections.abc import Callable
from typing import Any


def _rows(tag: str, records: int) -> list[str]:
    return [f"{tag} {i} " + "x" * 300 for i in range(records)]


class EventBus:
    """Handlers per event name; subscribers are never removed."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def subscribe(self, event: str, handler: Callable[..., Any]) -> None:
        self._handlers.setdefault(event, []).append(handler)


EVENT_BUS = EventBus()


class BatchProcessor:
    def __init__(self, records: int) -> None:
        self.records = _rows("record", records)

    def on_progress(self, done: int) -> None:
        pass


def listener(records: int = 300) -> int:
    """A per-batch processor subscribed to the global bus by a bound method."""
    processor = BatchProcessor(records)
    EVENT_BUS.subscribe("progress", processor.on_progress)
    return records


def _make_counter() -> Callable[[str], int]:
    seen: list[str] = []

    def count(item: str) -> int:
        seen.append(item)
        return len(seen)

    return count


COUNT = _make_counter()


def closure(records: int = 300) -> int:
    """Every row kept in a closure's cell."""
    for row in _rows("seen", records):
        COUNT(row)
    return records


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + " " + "x" * 300)


def handlers(records: int = 300) -> int:
    """A logging handler added per call and never removed."""
    log = logging.getLogger("jobs.sync")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = ListHandler()
    log.addHandler(handler)
    for i in range(records):
        log.info("synced %d", i)
    return records


class PriceService:
    def __init__(self, records: int) -> None:
        self.table = _rows("price", records)

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - the leak under test
    def price(self, key: int) -> int:
        return len(self.table) + key


def cached(records: int = 300) -> int:
    """An lru_cache on a method: each call's service stays in the cache's keys."""
    return PriceService(records).price(1)


class Exporter:
    def __init__(self, records: int) -> None:
        self.rows = _rows("export", records)

    def flush(self) -> None:
        pass


def exit_hooks(records: int = 300) -> int:
    """An exit hook per call: only atexit (C) holds the exporters."""
    atexit.register(Exporter(records).flush)
    return records


_WORK: queue.Queue[str] = queue.Queue()
_WORKERS: list[threading.Thread] = []


def _worker() -> None:
    kept: list[str] = []
    while True:
        kept.append(_WORK.get())
        _WORK.task_done()


def threaded(records: int = 300) -> int:
    """A worker thread keeps every item in a local list: only its stack holds them."""
    if not _WORKERS:
        _WORKERS.append(threading.Thread(target=_worker, daemon=True))
        _WORKERS[0].start()
    for row in _rows("queued", records):
        _WORK.put(row)
    _WORK.join()
    return records


class Session:
    """Lives for the whole process: its finalizers never run."""


SESSION = Session()


def _close(rows: list[str]) -> None:
    pass


def finalizers(records: int = 300) -> int:
    """A finalizer per call on a long-lived object, each holding the call's rows."""
    weakref.finalize(SESSION, _close, _rows("final", records))
    return records


def _on_signal(previous: Any, rows: list[str], signum: int, frame: Any) -> None:
    if callable(previous):
        previous(signum, frame)


def signals(records: int = 300) -> int:
    """A signal handler per call that chains to the previous one, each with its rows."""
    previous = signal.getsignal(signal.SIGUSR2)
    signal.signal(signal.SIGUSR2, functools.partial(_on_signal, previous, _rows("sig", records)))
    return records


# The same holders, used as intended: each call's rows are let go. None of these leaks.


def listener_fixed(records: int = 300) -> int:
    """The processor unsubscribes when its batch is done."""
    processor = BatchProcessor(records)
    EVENT_BUS.subscribe("done", processor.on_progress)
    EVENT_BUS._handlers["done"].remove(processor.on_progress)
    return records


def _make_bounded() -> Callable[[str], int]:
    seen: list[str] = []

    def count(item: str) -> int:
        seen.append(item)
        del seen[:-100]  # a window of the last 100 items
        return len(seen)

    return count


BOUNDED = _make_bounded()


def closure_fixed(records: int = 300) -> int:
    """The closure keeps a window of the last 100 items only."""
    for row in _rows("counted", records):
        BOUNDED(row)
    return records


def handlers_fixed(records: int = 300) -> int:
    """The handler is removed and closed after the call."""
    log = logging.getLogger("jobs.sync.fixed")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = ListHandler()
    log.addHandler(handler)
    try:
        for i in range(records):
            log.info("synced %d", i)
    finally:
        log.removeHandler(handler)
        handler.close()
    return records


@functools.lru_cache(maxsize=1024)
def _price(key: int) -> int:
    return key * 2


def cached_fixed(records: int = 300) -> int:
    """The cache is on a function of the key alone: it holds no service."""
    service = PriceService(records)
    return _price(1) + len(service.table)


def exit_hooks_fixed(records: int = 300) -> int:
    """The exit hook is unregistered once the export is flushed."""
    exporter = Exporter(records)
    atexit.register(exporter.flush)
    exporter.flush()
    atexit.unregister(exporter.flush)
    return records


def finalizers_fixed(records: int = 300) -> int:
    """The finalizer is detached when the rows are closed by hand."""
    rows = _rows("final", records)
    finalizer = weakref.finalize(SESSION, _close, rows)
    _close(rows)
    finalizer.detach()
    return records


def signals_fixed(records: int = 300) -> int:
    """The handler is put back when the call ends."""
    previous = signal.getsignal(signal.SIGUSR2)
    signal.signal(signal.SIGUSR2, functools.partial(_on_signal, previous, _rows("sig", records)))
    signal.signal(signal.SIGUSR2, previous)
    return records
