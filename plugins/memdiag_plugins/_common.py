"""What every reference engine shares: parameter checks, bounded concurrency, a paged source.

Bad parameters raise ValueError with the parameter's name and the accepted values, before any
work starts, so a measured run ends at once as `error` with a message a user can act on.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return `value` when it is an int >= `minimum`; ValueError naming the parameter if not."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (got {value})")
    return value


def check_fraction(name: str, value: object) -> float:
    """Return `value` as a float in [0, 1]; ValueError naming the parameter if it is not."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1 (got {value!r})")
    return float(value)


def check_seconds(name: str, value: object) -> float:
    """Return `value` as a non-negative float number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 (got {value!r})")
    return float(value)


def check_variant(value: object, choices: Sequence[str]) -> str:
    """Return `value` when it is one of `choices` (the first is the bad variant)."""
    if value not in choices:
        known = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown variant {value!r}: choose one of {known}")
    return str(value)


def check_bool(name: str, value: object) -> bool:
    """Return `value` when it is a bool (`--param resume=true` arrives parsed as one)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false (got {value!r})")
    return value


def seeded(seed: int, kind: str, number: int) -> random.Random:
    """Return the generator for one record (or page) `number` of one data kind.

    Seeded per record, not per run: concurrent fetch workers, another page size and a
    resumed run all see exactly the data a single sequential run sees.
    """
    return random.Random(f"{seed}:{kind}:{number}")


def pages(total: int, size: int, start: int = 0) -> Iterator[tuple[int, range]]:
    """Yield (page number, record ids) for `total` records in pages of `size` from `start`."""
    for number in range(start, -(-total // size)):
        yield number, range(number * size, min(total, (number + 1) * size))


def fetch_delay(latency: float) -> None:
    """Stand in for the network round trip of a remote source (sleeping releases the GIL)."""
    if latency > 0:
        time.sleep(latency)


def map_bounded(func: Callable[[T], R], items: Iterable[T], concurrency: int) -> Iterator[R]:
    """Yield `func(item)` for each item in input order, `concurrency` calls at a time.

    At most twice `concurrency` results wait to be consumed: a fast fetcher must not fill
    memory ahead of a slow writer, which would hide the effect of the batch size.
    """
    if concurrency <= 1:
        yield from map(func, items)
        return
    waiting: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="engine-worker")
    try:
        for item in items:
            waiting.append(pool.submit(func, item))
            if len(waiting) >= 2 * concurrency:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        for future in waiting:
            future.cancel()
        pool.shutdown(wait=True)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of `items` of at most `size` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
