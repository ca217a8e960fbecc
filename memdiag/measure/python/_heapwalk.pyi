"""The compiled loops of `memdiag leaks` (`_heapwalk.c`): see its header for what they give."""

from collections.abc import Callable, Sequence
from typing import Any

def count(
    objects: list[Any], large_bytes: int, /
) -> tuple[dict[type, list[int]], list[list[int]], bytes]: ...

class Newness:
    def __init__(
        self, new_tracked: Any, old_untracked: Any | None, traced: Callable[[Any], Any]
    ) -> None: ...
    def __call__(self, obj: Any) -> bool: ...
    def select(self, objects: Sequence[Any], claimed: set[int], seen: set[int], /) -> list[Any]: ...
    def walk(
        self, starts: list[Any], claimed: set[int], seen: set[int], limit: int, /
    ) -> tuple[list[Any], list[Any], dict[type, list[Any]], bool]: ...
