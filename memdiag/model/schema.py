"""Checking a saved file field by field against its model's type hints, as it is loaded.

Every model is a dataclass whose annotations are its schema: `build(Run, data)` checks each
field of `data` against `Run`'s hints (nested dataclasses, lists, dicts, `X | None`,
`Literal`, and `Annotated[T, rule]` for a rule of its own, such as `Frames`), and returns
the Run, or raises SchemaError naming the field as a path (`runs[3].peak_rss_bytes:
expected an integer, got a string`). Fields the model does not know are left out, so a
newer writer's extra fields do not stop an older reader.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Annotated, Any, Literal, TypeVar, Union

Model = TypeVar("Model")
# A larger integer is no size or count memdiag wrote, and would overflow a float when shown.
INT_LIMIT = 2**63


class SchemaError(ValueError):
    """A value that does not fit its model: `where` is the field's path, `problem` why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where, self.problem = where, problem


def build(cls: type[Model], data: Any, where: str = "") -> Model:
    """Return an instance of the dataclass `cls` from its JSON form, every field checked.

    A dataclass with `JSON_ROW = True` is also read from an array of its fields in order
    (a timeline row). Raises SchemaError on the first field that does not fit.
    """
    if isinstance(data, list) and getattr(cls, "JSON_ROW", False):
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        if len(data) > len(names):
            raise SchemaError(where, f"expected at most {len(names)} values, got {len(data)}")
        data = dict(zip(names, data, strict=False))
    if not isinstance(data, dict):
        raise SchemaError(where, f"expected an object, got {describe(data)}")
    values = {}
    for name, (hint, required) in _fields(typing.cast(type, cls)).items():
        path = f"{where}.{name}" if where else name
        if name not in data:
            if required:
                raise SchemaError(path, "missing")
            continue
        values[name] = check(hint, data[name], path)
    return cls(**values)


def check(hint: Any, value: Any, where: str) -> Any:
    """Return `value` as type `hint` (a dataclass built, containers checked item by item)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _finite(value, where)
    if origin is Annotated:
        checked = check(args[0], value, where)
        for rule in hint.__metadata__:
            rule(checked, where)
        return checked
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return check(kinds[0], value, where)
        for kind in kinds:
            try:
                return check(kind, value, where)
            except SchemaError:
                continue
        raise SchemaError(where, f"expected {_name(hint)}, got {describe(value)}")
    if origin is Literal:
        if value in args and isinstance(value, str | int):
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise SchemaError(where, f"expected one of {allowed}, got {describe(value, True)}")
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(where, f"expected a list, got {describe(value)}")
        item = args[0] if args else Any
        return [check(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(where, f"expected an object, got {describe(value)}")
        item = args[1] if args else Any
        return {k: check(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type, hint), value, where)
    return _scalar(hint, value, where)


def describe(value: Any, show: bool = False) -> str:
    """Return what a JSON value is, in words: "a string", "null", "NaN" (`show`: with it)."""
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("nan", "NaN").replace("inf", "Infinity")
    words = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    words |= {list: "a list", dict: "an object"}
    word = words.get(type(value), type(value).__name__)
    return f"{word} {value!r}"[:60] if show and isinstance(value, str | int | float) else word


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise SchemaError(where, f"expected true or false, got {describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= INT_LIMIT:
                raise SchemaError(where, "expected an integer below 2**63, got a larger one")
            return value
        raise SchemaError(where, f"expected an integer, got {describe(value)}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(_finite(value, where))
        raise SchemaError(where, f"expected a number, got {describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise SchemaError(where, f"expected a string, got {describe(value)}")
    raise TypeError(f"{where}: no check for {hint!r}")  # a model's hint, not a file's fault


def _finite(value: Any, where: str) -> Any:
    """Return `value` when it holds no NaN, infinity or oversized integer at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(where, f"expected a finite number, got {describe(value)}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT_LIMIT:
        raise SchemaError(where, "expected an integer below 2**63, got a larger one")
    if isinstance(value, list):
        return [_finite(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _name(hint: Any) -> str:
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return " or ".join(
        words.get(a, "an object" if dataclasses.is_dataclass(a) else "a list") for a in args
    )


def _frames(value: list[list[Any]], where: str) -> None:
    for i, frame in enumerate(value):
        ok = len(frame) == 2 and isinstance(frame[0], str) and type(frame[1]) is int
        if not ok:
            raise SchemaError(f"{where}[{i}]", "expected [filename, line number]")


class Shape:
    """A rule for `Annotated[dict[str, Any] | None, Shape(cls)]`: the object must fit the
    dataclass `cls` field by field, and stays a plain dict for the code that reads it."""

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def __call__(self, value: dict[str, Any] | None, where: str) -> None:
        if value is not None:
            build(self.cls, value, where)


# A traceback: [[filename, lineno], ...] from the oldest frame to the newest.
Frames = Annotated[list[list[Any]], _frames]


@functools.cache
def _fields(cls: type) -> dict[str, tuple[Any, bool]]:
    """Return each init field's resolved type hint and whether the JSON must have it."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {
        f.name: (hints[f.name], f.default is f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
        if f.init
    }
