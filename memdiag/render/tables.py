"""The pieces every table of display strings is made of: the table itself and its cell formats.

Shared by the `*_view` builders and the renderers; nothing here knows a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TableView:
    """A table to show: its title, column names, rows, one CSS-ish tone per row, a note."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    tones: list[str] = field(default_factory=list)
    note: str = ""


def params_text(params: dict[str, Any] | None) -> str:
    """Return `batch=50 concurrency=2`, or `(defaults)` for no params."""
    if not params:
        return "(defaults)"
    return " ".join(f"{k}={value_text(k, v)}" for k, v in params.items())


def value_text(name: str, value: Any) -> str:
    """Return a parameter's value for display: `true`, `50`, a heap limit as `128MB`."""
    if isinstance(value, bool):
        return str(value).lower()
    if name == "heap_limit" and isinstance(value, int) and value % 1024**2 == 0:
        return f"{value // 1024**2}MB"  # as --heap-limit and --max-old-space-size take it
    return str(value)


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.0%}" if signed else f"{value:.0%}"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def spread(values: list[Any] | None, fmt: Any) -> str:
    return "-" if not values else f"{fmt(values[0])} – {fmt(values[1])}"
