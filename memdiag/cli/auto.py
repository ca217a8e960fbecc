"""`--batch auto`, `--param NAME=auto[:START]` and `--max NAME=VALUE`: the sweep's search.

The axis searched must be numeric. That is known for batch and concurrency; for any other
parameter of a Python target it is read from the function's default or annotation in its
source, without importing it (a job's module may be heavy or have side effects).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from memdiag.errors import MemdiagError
from memdiag.model import TUNING_AXES
from memdiag.targets import Target
from memdiag.units import parse_param, parse_value

DEFAULT_START = 1
DEFAULT_MAX = 65536
_NUMERIC = {"int", "float"}


def split_auto(
    params: tuple[str, ...], batch: str | None, concurrency: str | None
) -> tuple[tuple[str, ...], str | None, str | None, dict[str, int]]:
    """Return the options without their `auto` values, and {name: start} of those."""
    auto: dict[str, int] = {}

    def take(name: str, value: str, option: str) -> bool:
        text = value.strip()
        if text != "auto" and not text.startswith("auto:"):
            return False
        raw = text.partition(":")[2] or str(DEFAULT_START)
        start = parse_value(raw)
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise MemdiagError(f"{option}: auto:{raw} needs a positive whole start value")
        auto[name] = start
        return True

    kept = []
    for item in params:
        name, value = parse_param(item)
        if not take(name, value, f"--param {name}"):
            kept.append(item)
    batch = None if batch is not None and take("batch", batch, "--batch") else batch
    conc = concurrency
    conc = None if conc is not None and take("concurrency", conc, "--concurrency") else conc
    if len(auto) > 1:
        raise MemdiagError(f"auto: one axis at a time, got {', '.join(auto)}")
    return tuple(kept), batch, conc, auto


def parse_max(items: tuple[str, ...], auto: dict[str, int]) -> dict[str, dict[str, int]]:
    """Return {name: {"start", "max"}} for the auto axis; --max must name it and be >= start."""
    limits: dict[str, int] = {}
    for item in items:
        name, raw = parse_param(item)
        value = parse_value(raw)
        if name not in auto:
            raise MemdiagError(f"--max {name}: not an auto axis (use --param {name}=auto)")
        if isinstance(value, bool) or not isinstance(value, int):
            raise MemdiagError(f"--max {name}: {raw!r} is not a whole number")
        if value < auto[name]:
            raise MemdiagError(f"--max {name}={value} is below the start value {auto[name]}")
        limits[name] = value
    return {
        name: {"start": start, "max": limits.get(name, max(DEFAULT_MAX, start))}
        for name, start in auto.items()
    }


def check_numeric(target: Target, name: str) -> None:
    """Refuse `auto` on a parameter whose default or annotation in the source is not numeric."""
    if name in TUNING_AXES or not target.is_python:
        return
    kind = _declared_kind(target, name)
    if kind is not None and kind not in _NUMERIC:
        raise MemdiagError(
            f"--param {name}=auto: {name} is not numeric in {target.text} ({kind}); "
            "auto searches a whole number"
        )


def _declared_kind(target: Target, name: str) -> str | None:
    """Return the type name of `name`'s default (or annotation) in the target's source."""
    source = _source(target)
    if source is None:
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == target.function:
            return _param_kind(node.args, name)
    return None


def _param_kind(args: ast.arguments, name: str) -> str | None:
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = list(zip(positional, [*defaults, *args.defaults], strict=True))
    pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    for arg, default in pairs:
        if arg.arg != name:
            continue
        if isinstance(default, ast.Constant) and default.value is not None:
            return type(default.value).__name__
        if isinstance(arg.annotation, ast.Name):
            return arg.annotation.id
        return None
    return None


def _source(target: Target) -> str | None:
    try:
        if target.kind == "file":
            return Path(target.location).read_text()
        spec = importlib.util.find_spec(target.location)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            return None
        return Path(spec.origin).read_text()
    except (OSError, ImportError, ValueError):
        return None


def auto_axes(auto: dict[str, dict[str, int]]) -> dict[str, list[Any]]:
    """Return the auto axes as sweep axes: no values yet, the probes add them."""
    return {name: [] for name in auto}
