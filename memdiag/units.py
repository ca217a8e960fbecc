"""Parsing and formatting of sizes, percentages and parameter values, shared by every command.

Sizes follow container limits and Node's `--max-old-space-size`: MB and GB are binary
(1 MB = 1,048,576 bytes), and so are MiB and GiB. A bare number is bytes.
"""

from __future__ import annotations

import math
import re

from memdiag.errors import MemdiagError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ParamValue = int | float | bool | str


def parse_size(text: str) -> int:
    """Return the number of bytes in `512MB`, `1.5GB`, `256MiB` or `1048576`."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise MemdiagError(f"not a size: {text!r} (examples: 512MB, 1.5GB, 256MiB, 1048576)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise MemdiagError(f"a size must be above zero: {text!r}")
    return size


def format_size(size: float | None) -> str:
    """Return `size` bytes as a short human string: `312.4 MB`, `1.50 GB`, `820 KB`."""
    if size is None or (isinstance(size, float) and math.isnan(size)):
        return "-"
    sign = "-" if size < 0 else ""
    size = abs(size)
    if size >= 1024**3:
        return f"{sign}{size / 1024**3:.2f} GB"
    if size >= 1024**2:
        return f"{sign}{size / 1024**2:.1f} MB"
    if size >= 1024:
        return f"{sign}{size / 1024:.0f} KB"
    return f"{sign}{size:.0f} B"


def parse_percent(text: str, *, name: str = "", upper: float = 1.0) -> float:
    """Return `80%` or the fraction `0.8` as the fraction 0.8, above 0 and at most `upper`
    (1.0 = 100%). Every percentage of the command line goes through here.

    A bare number above 1 is an error with a hint, never a multiple: `--tolerance 10` would
    otherwise silently mean 1000%. `name` (an option such as `--warn`) starts the message.
    """
    raw = str(text).strip()
    lead = f"{name} {raw}: " if name else f"{raw!r}: "
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise MemdiagError(f"{lead}not a percentage (examples: 80%, 0.8)") from None
    if not raw.endswith("%") and value > 1:
        raise MemdiagError(f"{lead}a bare number is a fraction; write {raw}% or {value / 100:g}")
    if not 0 < value <= upper:
        raise MemdiagError(f"{lead}a percentage must be above 0% and at most {upper:.0%}")
    return value


def parse_value(text: str) -> ParamValue:
    """Return `text` as int, float or bool when it reads as one, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_param(text: str) -> tuple[str, str]:
    """Split `name=value` into its name and raw value; a bad shape is a MemdiagError."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise MemdiagError(f"--param takes name=value, got {text!r}")
    return name, value


def parse_params(items: tuple[str, ...] | list[str]) -> dict[str, ParamValue]:
    """Return `--param name=value` options as a dict of parsed values (a name once only)."""
    params: dict[str, ParamValue] = {}
    for item in items:
        name, raw = parse_param(item)
        if name in params:
            raise MemdiagError(f"--param {name} given twice")
        params[name] = parse_value(raw)
    return params
