"""Matching configurations by their parameters' values, not by how the values were written.

A baseline written from `--param batch=50` holds the int 50; a pytest report or a
hand-edited file may hold the string "50", and a JSON round trip may turn 50 into 50.0.
They are the same configuration. Every comparison of parameters goes through `params_key`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from memdiag.units import parse_value

ValueKey = tuple[str, Any]
ParamsKey = tuple[tuple[str, ValueKey], ...]


def value_key(value: Any) -> ValueKey:
    """Return a hashable key equal for equal values: 50, 50.0 and "50" give one key,
    "true" and True another (never equal to 1), other strings themselves."""
    if isinstance(value, str):
        parsed = parse_value(value)
        return ("str", value) if isinstance(parsed, str) else value_key(parsed)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("number", value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return ("number", int(value))
        return ("number", value)
    if value is None:
        return ("none", None)
    return ("json", json.dumps(value, sort_keys=True, default=str))


def params_key(params: Mapping[str, Any], ignore: Iterable[str] = ()) -> ParamsKey:
    """Return the parameters (less the `ignore`d names) as a hashable key, by value."""
    skip = set(ignore)
    return tuple(sorted((name, value_key(v)) for name, v in params.items() if name not in skip))


def same_params(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Iterable[str] = ()) -> bool:
    """Return True when `a` and `b` hold the same names with equal values (see value_key)."""
    return params_key(a, ignore) == params_key(b, ignore)


def has_params(params: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Return True when `params` holds every name of `wanted` with an equal value."""
    return all(
        name in params and value_key(params[name]) == value_key(value)
        for name, value in wanted.items()
    )


def same_value(a: Any, b: Any) -> bool:
    """Return True when `a` and `b` are the same parameter value (see value_key)."""
    return value_key(a) == value_key(b)


def index_of(values: Iterable[Any], value: Any) -> int | None:
    """Return the position of `value` among `values` by value (None when absent)."""
    wanted = value_key(value)
    return next((i for i, v in enumerate(values) if value_key(v) == wanted), None)
