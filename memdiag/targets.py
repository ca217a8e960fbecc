"""The four target forms: engine name, module:function, file.py:function, `-- CMD ARGS`."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from memdiag.errors import MemdiagError

Kind = Literal["engine", "module", "file", "command"]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Target:
    """A parsed target. Python targets have `location` and `function`; commands have `argv`."""

    kind: Kind
    text: str
    location: str = ""
    function: str = ""
    argv: tuple[str, ...] = ()

    @property
    def is_python(self) -> bool:
        return self.kind != "command"


def parse_target(text: str | None, command: tuple[str, ...] | list[str] = ()) -> Target:
    """Return the Target for a TARGET argument or an external command after `--`."""
    if command:
        if text:
            raise MemdiagError(f"give a TARGET or a command after --, not both ({text!r})")
        return _command_target(tuple(command))
    if not text:
        raise MemdiagError(
            "missing TARGET: an engine name, module:function, file.py:function or -- CMD"
        )
    location, sep, function = text.rpartition(":")
    if not sep:
        from memdiag.engines import resolve_engine  # importlib.metadata: only for engines

        module, _, function = resolve_engine(text).partition(":")
        return Target("engine", text, module, function)
    if not function.isidentifier():
        raise MemdiagError(f"{text!r}: {function!r} is not a function name")
    if location.endswith(".py") or "/" in location:
        path = Path(location).expanduser()
        if not path.is_file():
            raise MemdiagError(f"{text!r}: no such file {location}")
        return Target("file", text, str(path.resolve()), function)
    if not _DOTTED.match(location):
        raise MemdiagError(f"{text!r}: {location!r} is not a module name or a .py file")
    return Target("module", text, location, function)


def _command_target(argv: tuple[str, ...]) -> Target:
    program = argv[0]
    if "/" in program:
        if not Path(program).is_file():
            raise MemdiagError(f"cannot start {program!r}: no such file")
    elif shutil.which(program) is None:
        raise MemdiagError(f"cannot start {program!r}: not found on PATH")
    return Target("command", "-- " + " ".join(argv), argv=argv)


def fill_command(argv: tuple[str, ...], params: dict[str, Any]) -> list[str]:
    """Return `argv` with each `{name}` replaced by the parameter's value, per argument.

    No shell is involved; an unknown placeholder is a MemdiagError.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            known = ", ".join(sorted(params)) or "none given"
            raise MemdiagError(f"placeholder {{{name}}} has no --param (parameters: {known})")
        raw = params[name]
        return str(raw).lower() if isinstance(raw, bool) else str(raw)

    return [_PLACEHOLDER.sub(value, arg) for arg in argv]
