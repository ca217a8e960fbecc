"""Options shared by `sweep` and `report`: the budgets, headroom, reference and predictions
that turn measured configurations into a decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from memdiag.errors import MemdiagError
from memdiag.units import parse_param, parse_percent, parse_size, parse_value

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_BUDGETS = "512MB,1GB,2GB,8GB"
DEFAULT_HEADROOM = "80%"


def decision_options(defaults: bool) -> Callable[[F], F]:
    """--budget, --headroom, --reference, --at; without `defaults` they are optional."""

    def apply(func: F) -> F:
        decorators = [
            click.option(
                "--budget",
                default=DEFAULT_BUDGETS if defaults else None,
                show_default=defaults,
                metavar="SIZES",
                help="Memory budgets to decide for, comma-separated (512MB, 1GB, ...).",
            ),
            click.option(
                "--headroom",
                default=DEFAULT_HEADROOM if defaults else None,
                show_default=defaults,
                metavar="PERCENT",
                help="A config fits a budget when its worst case is at most this share of it.",
            ),
            click.option(
                "--reference",
                default=None,
                metavar="K=V,...",
                help="The config to compare against (default: the first), e.g. batch=100.",
            ),
            click.option(
                "--at",
                "--predict",
                "predict",
                multiple=True,
                metavar="AXIS=VALUE",
                help="Decide at this production input size, from each configuration's fit "
                "(--predict is an alias).",
            ),
        ]
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def parse_budgets(text: str) -> list[int]:
    """Return `512MB,1GB` as sorted, distinct byte counts; an empty item is an error."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise MemdiagError(f"--budget: empty value in {text!r} (example: 512MB,1GB,2GB)")
    return sorted({parse_size(item) for item in items})


def parse_headroom(text: str) -> float:
    """Return `80%` as 0.8; above 100% is an error (a budget cannot be exceeded)."""
    return parse_percent(text, name="--headroom")


def parse_reference(text: str | None) -> dict[str, Any] | None:
    """Return `batch=100,concurrency=3` as a dict of parsed values, or None."""
    if text is None:
        return None
    reference: dict[str, Any] = {}
    for item in text.split(","):
        name, value = parse_param(item.strip())
        if not value.strip():
            raise MemdiagError(f"--reference: empty value for {name}")
        reference[name] = parse_value(value)
    return reference


def parse_predict(items: tuple[str, ...], size_axes: list[str]) -> dict[str, float]:
    """Return `records=220000` options as {axis: value}; the axis must be a swept size axis.

    One axis only: each configuration's fit runs along one size axis, the others held at
    their largest measured value.
    """
    predict: dict[str, float] = {}
    for item in items:
        name, raw = parse_param(item)
        value = parse_value(raw)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise MemdiagError(f"--at {name}: {raw!r} is not a positive number")
        if name not in size_axes:
            known = ", ".join(size_axes) or "none (sweep a numeric input size, e.g. records)"
            raise MemdiagError(f"--at {name}: not a swept size axis (size axes: {known})")
        predict[name] = float(value)
    if len(predict) > 1:
        raise MemdiagError(f"--at: one size axis at a time, got {', '.join(predict)}")
    return predict
