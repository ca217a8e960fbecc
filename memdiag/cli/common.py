"""Options and argument handling shared by the measuring commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from memdiag.errors import MemdiagError
from memdiag.units import ParamValue, parse_params, parse_size

F = TypeVar("F", bound=Callable[..., Any])


class TargetCommand(click.Command):
    """A command whose arguments after `--` are an external command, kept apart from TARGET."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["memdiag.command"] = tuple(args[cut + 1 :])
            if not ctx.meta["memdiag.command"]:
                raise MemdiagError("nothing after --: give the command to run")
            args = args[:cut]
        return super().parse_args(ctx, args)


def external_command(ctx: click.Context) -> tuple[str, ...]:
    """Return the external command given after `--`, or () when there was none."""
    command: tuple[str, ...] = ctx.meta.get("memdiag.command", ())
    return command


def target_options(func: F) -> F:
    """TARGET plus --param, --batch and --concurrency."""
    decorators = [
        click.argument("target", required=False),
        click.option(
            "--param",
            "-p",
            "params",
            multiple=True,
            metavar="NAME=VALUE",
            help="A parameter for the target (repeatable); values parse as int, float, bool, str.",
        ),
        click.option("--batch", type=str, default=None, help="Shorthand for --param batch=N."),
        click.option(
            "--concurrency", type=str, default=None, help="Shorthand for --param concurrency=N."
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def collect_params(
    params: tuple[str, ...], batch: str | None, concurrency: str | None
) -> dict[str, ParamValue]:
    """Return --param values merged with the --batch/--concurrency shorthands."""
    items = list(params)
    for name, value in (("batch", batch), ("concurrency", concurrency)):
        if value is not None:
            items.append(f"{name}={value}")
    return parse_params(items)


def size_option(value: str | None) -> int | None:
    """Return a size option in bytes, or None when not given."""
    return None if value is None else parse_size(value)


def positive(name: str, value: float | None) -> float | None:
    """Return `value`, or raise a MemdiagError naming option `name` when it is not above 0."""
    if value is not None and value <= 0:
        raise MemdiagError(f"{name} must be above 0, got {value:g}")
    return value


def load_comparable(path: str) -> list[dict[str, Any]]:
    """Return the comparable entries of a saved run, sweep, pytest report or baseline."""
    from memdiag.analysis.gate import COMPARABLE_KINDS, comparable
    from memdiag.model.baseline import load_comparable_document

    data = load_comparable_document(path, COMPARABLE_KINDS)
    try:
        return comparable(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise MemdiagError(f"{path}: damaged {data['kind']} file ({exc})") from None
